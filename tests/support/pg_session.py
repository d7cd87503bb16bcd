"""A stand-in for the PostgreSQL ledger's lease session, for tests of how it fails."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

Before = Callable[[str], Awaitable[None]]


class _SessionProxy:
    """Passes everything to the real session; ``before(sql)`` runs first on each fetchrow (the
    statement that takes and gives back a batch of leases), ``after(sql)`` once it has run."""

    def __init__(self, conn: Any, before: Before | None, after: Before | None) -> None:
        self._conn = conn
        self._before = before
        self._after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if self._before is not None:
            await self._before(sql)
        row = await self._conn.fetchrow(sql, *args)
        if self._after is not None:
            await self._after(sql)
        return row


@contextlib.contextmanager
def lease_session(ledger: Any, before: Before | None = None, after: Before | None = None) -> Iterator[None]:
    """Put ``before`` in front of every statement of ``ledger``'s lease session (it must
    be open) for the block, and ``after`` behind it (the server has run it: raise to lose
    its answer); the real session is back afterwards."""
    leases = ledger._leases
    session = leases.session
    assert session is not None, "open the lease session first (make one write)"
    leases.session = _SessionProxy(session, before, after)
    try:
        yield
    finally:
        if leases.session.__class__ is _SessionProxy:
            leases.session = session
