"""An aiohttp.web service that awards tokens when an order is paid.

Run against the sandbox (in another terminal: ``shakesco-async sandbox``):

    SHAKESCO_API_KEY=sk_sandbox_demo SHAKESCO_BASE_URL=http://127.0.0.1:8787 \
        python examples/aiohttp_app.py
    curl -X POST localhost:8080/orders/1001/paid -H 'content-type: application/json' \
        -d '{"customer_ref": "user-7421"}'

It listens on 127.0.0.1 and ``PORT`` (default 8080). At startup it configures the
"purchase" event it awards (5 tokens, repeatable), so the first request works on a fresh
sandbox. A body that is not ``{"customer_ref": "..."}`` gets 400.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import web

from shakesco_async import EventAlreadyClaimed, OutcomeUnknown, ValidationError
from shakesco_async.integrations.aiohttp import SHAKESCO_CLIENT, shakesco_context

EVENT, ALLOCATION = "purchase", 5


def _bad(detail: str) -> web.Response:
    return web.json_response({"status": "invalid", "detail": detail}, status=400)


async def order_paid(request: web.Request) -> web.Response:
    client = request.app[SHAKESCO_CLIENT]
    order_id = request.match_info["order_id"]
    try:
        body = await request.json()
    except ValueError:
        return _bad("the body is not JSON")
    customer_ref = body.get("customer_ref") if isinstance(body, dict) else None
    if not isinstance(customer_ref, str):
        return _bad('expected {"customer_ref": "..."}')
    try:
        receipt = await client.claim_tokens(EVENT, customer_ref, idempotency_key=f"order:{order_id}")
    except ValidationError as exc:
        return _bad(str(exc))
    except EventAlreadyClaimed:
        return web.json_response({"status": "already_awarded"})
    except OutcomeUnknown as exc:
        return web.json_response({"status": "pending", "idempotency_key": exc.idempotency_key}, status=202)
    balance = await client.balance(customer_ref)
    return web.json_response({"status": "awarded", "tx_hash": receipt.tx_hash, "balance": str(balance)})


async def _configure(app: web.Application) -> AsyncIterator[None]:
    # Setting an event to the same values again is harmless: done at every start.
    await app[SHAKESCO_CLIENT].set_event_details(EVENT, ALLOCATION, should_not_claim_twice=False)
    yield


def make_app(**client_options: object) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(shakesco_context(reconcile_interval=60, **client_options))
    app.cleanup_ctx.append(_configure)
    app.router.add_post("/orders/{order_id}/paid", order_paid)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
