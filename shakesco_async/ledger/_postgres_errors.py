"""How the PostgreSQL ledger's failures reach its callers: as ``LedgerError``, as with SQLite."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import asyncpg

from .._errors import LedgerError

__all__ = ["DB_ERRORS", "ledger_error", "ledger_errors"]

P = ParamSpec("P")
T = TypeVar("T")
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""What a lost connection or a failed statement raises."""


def ledger_error(exc: BaseException) -> LedgerError:
    """A new ``LedgerError`` for ``exc`` (one per caller: each raises its own)."""
    text = str(exc) if isinstance(exc, LedgerError) else f"PostgreSQL ledger: {type(exc).__name__}: {exc}"
    failure = LedgerError(text)
    failure.__cause__ = exc
    return failure


def ledger_errors(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Wrap a ledger method: a lost connection or a failed statement surfaces as ``LedgerError``."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except DB_ERRORS as exc:
            raise ledger_error(exc) from exc

    return call
