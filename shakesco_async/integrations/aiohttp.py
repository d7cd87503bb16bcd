"""aiohttp.web: one client per app through ``cleanup_ctx``.

app = web.Application()
app.cleanup_ctx.append(shakesco_context(reconcile_interval=60))
... request.app[SHAKESCO_CLIENT] ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from .._client import ShakescoClient

__all__ = ["SHAKESCO_CLIENT", "shakesco_context"]

SHAKESCO_CLIENT = web.AppKey("shakesco_client", ShakescoClient)


def shakesco_context(
    *, reconcile_interval: float | None = 60.0, **client_options: Any
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that stores the client under ``SHAKESCO_CLIENT`` and closes it on shutdown."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with ShakescoClient(**client_options) as client:
            app[SHAKESCO_CLIENT] = client
            if reconcile_interval:
                client.start_reconciler(reconcile_interval)
            yield

    return context
