"""``Sandbox``: the fake Tokens API, its state, faults and clock, served on loopback."""

from __future__ import annotations

import random
from types import TracebackType
from typing import Self

from aiohttp import web

from ._app import ROUTES, AppliedWrite, make_app
from ._clock import SandboxClock
from ._faults import Faults, known_endpoint
from ._state import DEFAULT_EXPIRY, Business

__all__ = ["DEMO_API_KEY", "Sandbox"]

DEMO_API_KEY = "sk_sandbox_demo"
_WRITES = frozenset(path for path, (is_write, _) in ROUTES.items() if is_write)


class Sandbox:
    """An in-process Tokens API with real semantics and fault injection.

    ``async with Sandbox() as sandbox:`` serves it on a free 127.0.0.1 port;
    ``sandbox.base_url`` and ``sandbox.api_key`` are what a client needs.
    """

    def __init__(
        self, *, api_keys: tuple[str, ...] = (DEMO_API_KEY,), seed: int | None = None, frozen_clock: bool = False
    ) -> None:
        self.clock = SandboxClock(frozen=frozen_clock)
        self.faults = Faults(random.Random(seed), endpoints=ROUTES)
        self.businesses: dict[str, Business] = {}
        self.applied: list[AppliedWrite] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        for key in api_keys:
            self.add_business(key)

    def __repr__(self) -> str:
        return f"Sandbox(base_url={self.base_url!r}, businesses={len(self.businesses)})"

    @property
    def api_key(self) -> str:
        """The first business's key (the demo key unless others were given)."""
        return next(iter(self.businesses))

    def add_business(
        self,
        api_key: str,
        *,
        name: str = "Sandbox Rewards",
        symbol: str = "SBX",
        linked: bool = True,
        expiry_period: int | None = DEFAULT_EXPIRY,
    ) -> Business:
        """Register a key; ``linked=False`` makes every call answer 403 Caller not authorized.
        ``expiry_period``: seconds of inactivity after which ``/expire-tokens`` may clear a
        customer (a year by default; None: tokens never expire)."""
        business = Business(name=name, symbol=symbol, linked=linked, clock=self.clock.now, expiry_period=expiry_period)
        self.businesses[api_key] = business
        return business

    def rotate_key(self, old: str, new: str) -> None:
        """Give the business behind ``old`` the key ``new``; ``old`` answers 401 from now on,
        as after a rotation in the dashboard."""
        self.businesses[new] = self.businesses.pop(old)

    def business(self, api_key: str | None = None) -> Business:
        """The state behind a key, for assertions."""
        return self.businesses[api_key or self.api_key]

    def record(self, write: AppliedWrite) -> None:
        self.applied.append(write)

    def applied_writes(self, endpoint: str | None = None, *, idempotency_key: str | None = None) -> list[AppliedWrite]:
        """Applied writes, filtered by path and by the Idempotency-Key header they carried.

        A path that is not one of the sandbox's writes raises ``ValueError``: an assertion
        that nothing was applied to a misspelt path would always pass.
        """
        path = None if endpoint is None else known_endpoint(endpoint, _WRITES, "write endpoint")
        return [
            w
            for w in self.applied
            if (path is None or w.endpoint == path)
            and (idempotency_key is None or w.idempotency_key == idempotency_key)
        ]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 picks a free port); returns the base URL."""
        runner = web.AppRunner(make_app(self), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:  # a port in use, say: nothing of this start stays open
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        self.base_url = f"http://{host}:{bound[1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
