"""A FastAPI service that awards tokens when an order is paid.

Run against the sandbox (in another terminal: ``shakesco-async sandbox``):

    SHAKESCO_API_KEY=sk_sandbox_demo SHAKESCO_BASE_URL=http://127.0.0.1:8787 \
        uvicorn examples.fastapi_app:app
    curl -X POST localhost:8000/orders/1001/paid -H 'content-type: application/json' \
        -d '{"customer_ref": "user-7421"}'

At startup it configures the "purchase" event it awards (5 tokens, repeatable), so the
first request works on a fresh sandbox. A body that is not ``{"customer_ref": "..."}``
gets 422; a customer ref the SDK refuses, 400.

``POST /orders/{order_id}`` is the staged pattern: the order row and the credit it owes
commit in one transaction of the service's own database (here the ledger's SQLite file,
with an ``orders`` table beside the ledger's), so a crash between "order stored" and
"tokens credited" loses nothing; the sender delivers the credit once:

    curl -X POST localhost:8000/orders/1002 -H 'content-type: application/json' \
        -d '{"customer_ref": "user-7421"}'
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import aiosqlite
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shakesco_async import EventAlreadyClaimed, OutcomeUnknown, ShakescoClient, SQLiteLedger, ValidationError
from shakesco_async.integrations.fastapi import shakesco_client, shakesco_lifespan

EVENT, ALLOCATION = "purchase", 5


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with shakesco_lifespan(reconcile_interval=60)(app):
        client: ShakescoClient = app.state.shakesco
        # Setting an event to the same values again is harmless: done at every start.
        await client.set_event_details(EVENT, ALLOCATION, should_not_claim_twice=False)
        # The service's own tables live in the ledger's file, so that one commit covers both.
        ledger = client.ledger
        assert isinstance(ledger, SQLiteLedger)
        await ledger.open()  # before any transaction of ours: opening may need the file's write lock
        async with aiosqlite.connect(ledger.path, isolation_level=None) as db:
            await db.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer_ref TEXT NOT NULL)")
            app.state.db = db
            client.start_sender(poll=0.5)  # delivers what the orders owe
            yield


app = FastAPI(lifespan=lifespan)
Shakesco = Annotated[ShakescoClient, Depends(shakesco_client)]


class Paid(BaseModel):
    customer_ref: str


@app.post("/orders/{order_id}/paid")
async def order_paid(order_id: str, body: Paid, client: Shakesco) -> JSONResponse:
    try:
        # The order id makes the award idempotent: webhook redeliveries and retries apply once.
        receipt = await client.claim_tokens(EVENT, body.customer_ref, idempotency_key=f"order:{order_id}")
    except ValidationError as exc:
        return JSONResponse({"status": "invalid", "detail": str(exc)}, status_code=400)
    except EventAlreadyClaimed:
        return JSONResponse({"status": "already_awarded"})
    except OutcomeUnknown as exc:
        # Maybe applied, maybe not: show "pending"; the reconciler settles it.
        return JSONResponse({"status": "pending", "idempotency_key": exc.idempotency_key}, status_code=202)
    balance = await client.balance(body.customer_ref)
    return JSONResponse({"status": "awarded", "tx_hash": receipt.tx_hash, "balance": str(balance)})


@app.post("/orders/{order_id}")
async def place_order(order_id: str, body: Paid, client: Shakesco) -> JSONResponse:
    db: aiosqlite.Connection = app.state.db
    key = f"order:{order_id}"
    try:
        # One transaction (the SDK's turns on the file's one write lock keep them one at a
        # time): committed at the end of the block, rolled back if it raises.
        async with client.transaction(db) as staged:
            await db.execute("INSERT INTO orders (id, customer_ref) VALUES (?, ?)", (order_id, body.customer_ref))
            # Recorded in this transaction: owed if it commits, never if it rolls back.
            await staged.claim_tokens(EVENT, body.customer_ref, idempotency_key=key)
    except sqlite3.IntegrityError:
        pass  # placed before: its credit was staged then
    except ValidationError as exc:
        return JSONResponse({"status": "invalid", "detail": str(exc)}, status_code=400)
    try:
        # Answering with the outcome is optional: the order is stored, and the credit owed.
        receipt = await client.result_of(key, wait=5)
    except OutcomeUnknown:
        return JSONResponse({"status": "pending", "idempotency_key": key}, status_code=202)
    return JSONResponse({"status": "awarded", "tx_hash": receipt.tx_hash})
