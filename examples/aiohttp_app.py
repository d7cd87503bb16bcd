"""An aiohttp.web service that awards tokens when an order is paid.

SHAKESCO_API_KEY=sk_sandbox_demo SHAKESCO_BASE_URL=http://127.0.0.1:8787 python examples/aiohttp_app.py
"""

from __future__ import annotations

from aiohttp import web

from shakesco_async import EventAlreadyClaimed, OutcomeUnknown
from shakesco_async.integrations.aiohttp import SHAKESCO_CLIENT, shakesco_context


async def order_paid(request: web.Request) -> web.Response:
    client = request.app[SHAKESCO_CLIENT]
    order_id = request.match_info["order_id"]
    customer_ref = (await request.json())["customer_ref"]
    try:
        receipt = await client.claim_tokens("purchase", customer_ref, idempotency_key=f"order:{order_id}")
    except EventAlreadyClaimed:
        return web.json_response({"status": "already_awarded"})
    except OutcomeUnknown as exc:
        return web.json_response({"status": "pending", "idempotency_key": exc.idempotency_key}, status=202)
    balance = await client.balance(customer_ref)
    return web.json_response({"status": "awarded", "tx_hash": receipt.tx_hash, "balance": str(balance)})


def make_app(**client_options: object) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(shakesco_context(reconcile_interval=60, **client_options))
    app.router.add_post("/orders/{order_id}/paid", order_paid)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080)
