"""FastAPI: one client per app, opened and closed by the lifespan, handed out as a dependency.

Needs the ``fastapi`` extra: ``pip install 'shakesco-async[fastapi]'``.

    app = FastAPI(lifespan=shakesco_lifespan(reconcile_interval=60))

    Shakesco = Annotated[ShakescoClient, Depends(shakesco_client)]

    @app.post("/orders/{order_id}/reward")
    async def reward(order_id: str, client: Shakesco): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from .._client import ShakescoClient

__all__ = ["shakesco_client", "shakesco_lifespan"]


def shakesco_lifespan(
    *, reconcile_interval: float | None = 60.0, **client_options: Any
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that creates ``app.state.shakesco`` and closes it on shutdown.

    With ``reconcile_interval`` (seconds), the reconciler runs in the background for
    the life of the app. ``client_options`` go to ``ShakescoClient``.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with ShakescoClient(**client_options) as client:
            app.state.shakesco = client
            if reconcile_interval:
                client.start_reconciler(reconcile_interval)
            try:
                yield
            finally:
                del app.state.shakesco

    return lifespan


async def shakesco_client(request: Request) -> AsyncIterator[ShakescoClient]:
    """Dependency: the app's client (one pooled session for every request)."""
    client: ShakescoClient = request.app.state.shakesco
    yield client
