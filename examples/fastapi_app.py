"""A FastAPI service that awards tokens when an order is paid.

Run against the sandbox (in another terminal: ``shakesco-async sandbox``):

    SHAKESCO_API_KEY=sk_sandbox_demo SHAKESCO_BASE_URL=http://127.0.0.1:8787 \
        uvicorn examples.fastapi_app:app
    curl -X POST localhost:8000/orders/1001/paid -H 'content-type: application/json' \
        -d '{"customer_ref": "user-7421"}'

At startup it configures the "purchase" event it awards (5 tokens, repeatable), so the
first request works on a fresh sandbox. A body that is not ``{"customer_ref": "..."}``
gets 422; a customer ref the SDK refuses, 400.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shakesco_async import EventAlreadyClaimed, OutcomeUnknown, ShakescoClient, ValidationError
from shakesco_async.integrations.fastapi import shakesco_client, shakesco_lifespan

EVENT, ALLOCATION = "purchase", 5


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with shakesco_lifespan(reconcile_interval=60)(app):
        # Setting an event to the same values again is harmless: done at every start.
        await app.state.shakesco.set_event_details(EVENT, ALLOCATION, should_not_claim_twice=False)
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
