"""A stand-in for the PostgreSQL ledger's lease session, for tests of how it fails."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

Before = Callable[[str], Awaitable[None]]


class _SessionProxy:
    """Passes everything to the real session; ``before(sql)`` runs first on each fetchval."""

    def __init__(self, conn: Any, before: Before) -> None:
        self._conn = conn
        self._before = before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        await self._before(sql)
        return await self._conn.fetchval(sql, *args)


@contextlib.contextmanager
def lease_session(ledger: Any, before: Before) -> Iterator[None]:
    """Put ``before`` in front of every statement of ``ledger``'s lease session (it must
    be open) for the block; the real session is back afterwards."""
    session = ledger._lease_conn
    assert session is not None, "open the lease session first (make one write)"
    ledger._lease_conn = _SessionProxy(session, before)
    try:
        yield
    finally:
        ledger._lease_conn = session
