"""Recording a write through the application's own connection, inside its transaction.

A staged entry is inserted by the statement the application's transaction runs, so the
business change ("order 1001 paid") and the write it owes ("credit 50 tokens") commit
together, or neither does. Each backend says which connections it takes (``Ledger.stage``);
this module speaks to them: ``sqlite3`` and ``aiosqlite`` connections, asyncpg connections,
SQLAlchemy ``AsyncConnection`` / ``AsyncSession`` (imported only when one is passed).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import attrs

from .._errors import ConfigurationError, IdempotencyConflict, LedgerError
from ._entry import Intent

__all__ = [
    "Stager",
    "Statements",
    "begin_immediate",
    "cannot_begin",
    "check_found",
    "connection_kind",
    "driver_transaction",
    "stage_sqlite",
    "rollback",
    "stage_through",
    "staging_failed",
]

_NAMED = re.compile(r":([a-z_][a-z0-9_]*)")
Stager = Callable[[Intent], Awaitable[None]]
"""Records a write as staged in the application's transaction (``Ledger.transaction``)."""


@attrs.frozen
class Statements:
    """A backend's statements for staging one entry, with ``:name`` parameters."""

    insert: tuple[str, ...]
    """Insert the entry unless its key exists, and what goes with it."""
    existing: str
    """The key's (operation, params_digest), read after the insert."""


def connection_kind(conn: object) -> str:
    """ "sqlite3", "aiosqlite", "asyncpg" or "sqlalchemy"; ConfigurationError for anything else."""
    if isinstance(conn, sqlite3.Connection):
        return "sqlite3"
    module = type(conn).__module__.split(".", 1)[0]
    if module in ("aiosqlite", "asyncpg", "sqlalchemy"):
        return module
    raise ConfigurationError(
        f"cannot stage a write through a {type(conn).__module__}.{type(conn).__name__}: pass an sqlite3 or"
        " aiosqlite connection (SQLite ledger), or an asyncpg connection or SQLAlchemy AsyncConnection /"
        " AsyncSession (PostgreSQL ledger)"
    )


async def stage_through(
    conn: Any, kind: str, statements: Statements, values: Mapping[str, Any], intent: Intent
) -> None:
    """Insert the staged entry through ``conn`` (asyncpg or SQLAlchemy), unless its key was staged (or sent) before
    with the same parameters; ``IdempotencyConflict`` if with others."""
    run = _RUNNERS[kind]
    try:
        for sql in statements.insert:
            await run(conn, sql, _used(sql, values), fetch=False)
        found = await run(conn, statements.existing, _used(statements.existing, values), fetch=True)
    except (ConfigurationError, IdempotencyConflict):
        raise
    except Exception as exc:  # the application's driver: its own error types
        raise staging_failed(exc) from exc
    check_found(found, intent)


def check_found(found: tuple[Any, ...], intent: Intent) -> None:
    """``IdempotencyConflict`` unless the (operation, params_digest) staged under the
    intent's key (just now, or before) are the intent's."""
    operation, digest = found
    if operation != intent.operation or digest != intent.digest:
        raise IdempotencyConflict(
            intent.key, f"idempotency key {intent.key!r} was used for {operation} with other parameters"
        )


def stage_sqlite(raw: sqlite3.Connection, statements: Statements, values: Mapping[str, Any]) -> tuple[Any, ...]:
    """Every statement of one staging on a raw sqlite3 connection: run in one step (one
    hop to an aiosqlite connection's thread, where each statement would take two or three),
    so the application's transaction holds the file's one write lock the least it can."""
    for sql in statements.insert:
        raw.execute(sql, _used(sql, values))
    found: tuple[Any, ...] = raw.execute(statements.existing, _used(statements.existing, values)).fetchone()
    return found


def staging_failed(exc: Exception) -> LedgerError:
    """The error for a staging the application's driver failed halfway."""
    # Part of it may be in the application's transaction already: rolled back, nothing is
    # owed; committed anyway, the write would be sent although the caller heard an error.
    return LedgerError(
        f"could not stage the write through the application's connection ({exc}); roll the"
        " transaction back: part of the write may be recorded in it"
    )


def _used(sql: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in _NAMED.findall(sql)}


async def _asyncpg(conn: Any, sql: str, values: Mapping[str, Any], *, fetch: bool) -> Any:
    if not conn.is_in_transaction():
        raise ConfigurationError(
            "stage inside the application's transaction (async with conn.transaction(): ...): on its own,"
            " the write would be owed whether or not the application's change commits"
        )
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        names.append(match[1])
        return f"${len(names)}"

    numbered = _NAMED.sub(number, sql)
    args = [values[name] for name in names]
    if fetch:
        row = await conn.fetchrow(numbered, *args)
        return None if row is None else tuple(row)
    await conn.execute(numbered, *args)
    return None


async def _sqlalchemy(conn: Any, sql: str, values: Mapping[str, Any], *, fetch: bool) -> Any:
    from sqlalchemy import text  # only when the application uses SQLAlchemy

    result = await conn.execute(text(sql), dict(values))
    if fetch:
        row = result.first()
        return None if row is None else tuple(row)
    return None


_RUNNERS = {"asyncpg": _asyncpg, "sqlalchemy": _sqlalchemy}  # SQLite stages in one step: stage_sqlite


@contextlib.asynccontextmanager
async def driver_transaction(conn: Any, kind: str) -> AsyncIterator[None]:
    """A transaction of the application's on an asyncpg or SQLAlchemy ``conn``: committed
    when the block ends, rolled back (and the error raised) when it raises. Its begin or
    commit failing raises ``LedgerError`` (the driver's error as its cause)."""
    try:
        if kind == "asyncpg":
            tx = conn.transaction()
            await tx.start()
        else:  # SQLAlchemy's AsyncConnection and AsyncSession
            tx = await conn.begin()
    except Exception as exc:
        raise cannot_begin(exc) from exc
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # a failed rollback must not hide why it rolls back
            await tx.rollback()
        raise
    try:
        await tx.commit()
    except Exception as exc:
        raise LedgerError(
            f"the application's transaction failed to commit ({exc}): its change and the writes staged in it"
            " are recorded only if the database committed it after all (result_of(key) raises LedgerError for"
            " a write that is not)"
        ) from exc


def cannot_begin(exc: Exception) -> LedgerError:
    return LedgerError(f"could not begin a transaction on the application's connection: {exc}")


async def begin_immediate(conn: Any, *, lock_wait: float) -> None:
    """``BEGIN IMMEDIATE`` on an sqlite3 or aiosqlite connection: the file's write lock at
    once (a deferred transaction may fail to upgrade later), waiting up to ``lock_wait``
    seconds for another process without blocking the event loop. One step each try (the
    cursor is left to the collector, not closed in a hop of its own)."""
    deadline = time.monotonic() + lock_wait
    pause = 0.0005
    while True:
        try:
            await _maybe_await(conn.execute("BEGIN IMMEDIATE"))
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


async def rollback(conn: Any) -> None:
    """Roll an sqlite3 or aiosqlite connection's transaction back; a failure is not raised
    (it must not hide why the transaction rolls back, and a failed connection has none)."""
    with contextlib.suppress(Exception):
        await _maybe_await(conn.rollback())


async def _maybe_await(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result
