"""How ledger entries are stored in SQLite: the columns, and rows to entries and back."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from ._entry import MAYBE_SENT, OPEN_STATES, EntryState, KeySource, LedgerEntry
from ._json import canonical_json

__all__ = ["COLUMNS", "OPEN", "OPEN_ALL", "chunks", "dumps", "entry_from_row", "loads", "marks", "timestamp"]

COLUMNS = (
    "key, operation, params, params_digest, customers, key_source, state, attempts,"
    " snapshot, result, error, reason, created_at, updated_at, in_flight"
)
OPEN = tuple(state.value for state in MAYBE_SENT)
OPEN_ALL = tuple(state.value for state in OPEN_STATES)
_CHUNK = 400  # bound parameters per statement, well under SQLite's oldest limit (999)


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """``items`` in runs short enough to bind in one statement."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def marks(n: int) -> str:
    """``n`` parameter marks, comma-separated."""
    return ",".join("?" * n)


def dumps(value: Any) -> str | None:
    return None if value is None else canonical_json(value)


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def timestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def entry_from_row(row: sqlite3.Row | tuple[Any, ...]) -> LedgerEntry:
    (key, op, params, digest, customers, source, state, attempts) = row[:8]
    (snap, result, error, reason, created, updated, flight) = row[8:]
    # Enums by dict, no helper calls: reconcile converts every entry it claims, thousands in one step.
    return LedgerEntry(
        key=key,
        operation=op,
        params=json.loads(params),
        params_digest=digest,
        customers=tuple(json.loads(customers)),
        key_source=_KEY_SOURCES[source],
        state=_STATES[state],
        attempts=attempts,
        created_at=datetime.fromtimestamp(created, UTC),
        updated_at=datetime.fromtimestamp(updated, UTC),
        snapshot=None if snap is None else json.loads(snap),
        result=None if result is None else json.loads(result),
        error=None if error is None else json.loads(error),
        reason=reason,
        in_flight=flight,
    )


_STATES = {state.value: state for state in EntryState}
_KEY_SOURCES = {source.value: source for source in KeySource}
