"""How the PostgreSQL ledger's failures reach its callers: as ``LedgerError``, as with SQLite,
and while the database is down, at once (no connection attempt per call) and logged once."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import asyncpg
from asyncpg.exceptions import InternalClientError

from .._errors import LedgerError

__all__ = ["CONNECTION_ERRORS", "DB_ERRORS", "Outage", "ledger_error", "ledger_errors"]

log = logging.getLogger("shakesco_async.ledger")
P = ParamSpec("P")
T = TypeVar("T")
CONNECTION_ERRORS = (
    OSError,  # refused, reset, timed out (TimeoutError is one)
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # the server is shutting down, a backend terminated
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.InterfaceError,  # a connection closed under a statement
    # A pooled connection that has read the server's "terminating connection" but not yet its
    # end of stream: "cannot switch to state 12; another operation is in progress".
    InternalClientError,
)
"""What a database that is down, restarting or ending sessions raises."""
DB_ERRORS = (*CONNECTION_ERRORS, asyncpg.PostgresError)
"""Every failure asyncpg raises: its exceptions all derive from these (or from OSError)."""


def ledger_error(exc: BaseException) -> LedgerError:
    """A new ``LedgerError`` for ``exc`` (one per caller: each raises its own)."""
    text = str(exc) if isinstance(exc, LedgerError) else f"PostgreSQL ledger: {type(exc).__name__}: {exc}"
    failure = LedgerError(text)
    failure.__cause__ = exc
    return failure


class Outage:
    """While the database is unreachable, calls fail at once for a short, growing pause
    (0.2 s to 1 s) instead of each trying to connect; one log line when it starts and one
    when it ends. A pause still lets a call through now and then: the first to succeed ends it."""

    _FIRST, _LONGEST = 0.2, 1.0

    def __init__(self) -> None:
        self._since: float | None = None  # when the outage began (monotonic)
        self._until = 0.0
        self._pause = self._FIRST
        self._cause = ""

    def check(self) -> None:
        if self._since is not None and time.monotonic() < self._until:
            raise LedgerError(f"the PostgreSQL ledger is unreachable ({self._cause}); nothing was sent")

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since, self._pause = now, self._FIRST
            log.error("PostgreSQL ledger unreachable: %s: %s; writes fail until it is back", type(exc).__name__, exc)
        else:
            self._pause = min(self._pause * 2, self._LONGEST)
        self._cause = f"{type(exc).__name__}: {exc}"
        self._until = now + self._pause

    def succeeded(self) -> None:
        if self._since is not None:
            log.warning("PostgreSQL ledger reachable again after %.1fs", time.monotonic() - self._since)
            self._since = None


class _HasOutage(Protocol):
    outage: Outage


S = TypeVar("S", bound=_HasOutage)


def ledger_errors(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Wrap a ledger method: every database failure surfaces as ``LedgerError``, at once while
    the database is known to be down."""

    @functools.wraps(method)
    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        self.outage.check()
        try:
            result = await method(self, *args, **kwargs)
        except CONNECTION_ERRORS as exc:
            self.outage.failed(exc)
            raise ledger_error(exc) from exc
        except DB_ERRORS as exc:
            raise ledger_error(exc) from exc
        self.outage.succeeded()
        return result

    return call
