"""The PostgreSQL ledger's outcome records: those of concurrent writes in one statement
and one commit, where each used to take a statement, a commit and a pooled connection."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import attrs

from .._errors import LedgerError
from ._postgres_errors import DB_ERRORS, ledger_error

__all__ = ["Settle", "settle_batch", "settle_sql"]


@attrs.frozen
class Settle:
    """One entry's move to ``state``; ``expect``: only from one of these states (None: any).
    ``result`` and ``error`` are JSON text, encoded by the caller: a value that cannot be
    stored fails its own call, not the batch."""

    key: str
    state: str
    result: str | None
    error: str | None
    reason: str | None
    expect: tuple[str, ...] | None
    drop_snapshot: bool


@functools.cache
def settle_sql(table: str) -> str:
    """The statement for a batch of moves with distinct keys; returns the keys that moved.

    $1 the business, then one array per ``Settle`` field. The rows are locked in key order
    first, so two processes' batches over the same entries cannot deadlock.
    """
    return (
        "WITH v AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::bool[]) AS v(key, state, result, error, reason, expect, drop_snapshot)),"
        f" locked AS MATERIALIZED (SELECT e.key FROM {table} AS e WHERE e.business = $1"
        " AND e.key = ANY($2::text[]) ORDER BY e.key FOR UPDATE)"
        f" UPDATE {table} AS e SET state = v.state, result = COALESCE(v.result::jsonb, e.result),"
        " error = v.error::jsonb, reason = v.reason, updated_at = clock_timestamp(),"
        " snapshot = CASE WHEN v.drop_snapshot THEN NULL ELSE e.snapshot END"
        " FROM v WHERE e.business = $1 AND e.key = v.key AND e.key IN (SELECT key FROM locked)"
        " AND (v.expect IS NULL OR e.state = ANY(string_to_array(v.expect, ',')))"
        " RETURNING e.key"
    )


async def settle_batch(
    pool: Callable[[], Awaitable[asyncpg.Pool]], table: str, business: str, moves: Sequence[Settle]
) -> list[bool | BaseException]:
    """Apply ``moves`` in order, whether each moved (or the error that stopped it).

    A key named twice goes in a later statement than its first move: one statement
    would apply only one of them, either.
    """
    outcomes: list[bool | BaseException] = []
    rest = list(moves)
    failure: BaseException | None = None
    while rest:
        group: list[Settle] = []
        later: list[Settle] = []
        keys: set[str] = set()
        for move in rest:
            if move.key in keys or later:  # keep each key's moves in order
                later.append(move)
            else:
                keys.add(move.key)
                group.append(move)
        rest = later
        if failure is None:
            try:
                moved = await _run(await pool(), table, business, group)
            except (*DB_ERRORS, LedgerError) as exc:
                failure = exc  # and the moves after it are not made: their order would break
            else:
                outcomes.extend(move.key in moved for move in group)
                continue
        outcomes.extend(ledger_error(failure) for _ in group)
    return outcomes


async def _run(pool: asyncpg.Pool, table: str, business: str, group: Sequence[Settle]) -> set[str]:
    rows = await pool.fetch(
        settle_sql(table),
        business,
        [m.key for m in group],
        [m.state for m in group],
        [m.result for m in group],
        [m.error for m in group],
        [m.reason for m in group],
        [None if m.expect is None else ",".join(m.expect) for m in group],
        [m.drop_snapshot for m in group],
    )
    return {row["key"] for row in rows}
