"""A FastAPI service that awards tokens when an order is paid.

Run against the sandbox (in another terminal: ``shakesco-async sandbox``):

    SHAKESCO_API_KEY=sk_sandbox_demo SHAKESCO_BASE_URL=http://127.0.0.1:8787 \
        uvicorn examples.fastapi_app:app
    curl -X POST localhost:8000/orders/1001/paid -H 'content-type: application/json' \
        -d '{"customer_ref": "user-7421"}'
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shakesco_async import EventAlreadyClaimed, OutcomeUnknown, ShakescoClient
from shakesco_async.integrations.fastapi import shakesco_client, shakesco_lifespan

app = FastAPI(lifespan=shakesco_lifespan(reconcile_interval=60))
Shakesco = Annotated[ShakescoClient, Depends(shakesco_client)]


class Paid(BaseModel):
    customer_ref: str


@app.post("/orders/{order_id}/paid")
async def order_paid(order_id: str, body: Paid, client: Shakesco) -> JSONResponse:
    try:
        # The order id makes the award idempotent: webhook redeliveries and retries apply once.
        receipt = await client.claim_tokens("purchase", body.customer_ref, idempotency_key=f"order:{order_id}")
    except EventAlreadyClaimed:
        return JSONResponse({"status": "already_awarded"})
    except OutcomeUnknown as exc:
        # Maybe applied, maybe not: show "pending"; the reconciler settles it.
        return JSONResponse({"status": "pending", "idempotency_key": exc.idempotency_key}, status_code=202)
    balance = await client.balance(body.customer_ref)
    return JSONResponse({"status": "awarded", "tx_hash": receipt.tx_hash, "balance": str(balance)})
