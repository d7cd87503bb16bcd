"""How ledger entries are stored in SQLite: the columns, and rows to entries and back."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from ._entry import EntryState, KeySource, LedgerEntry

__all__ = ["COLUMNS", "OPEN", "OPEN_ALL", "dumps", "entry_from_row", "loads", "timestamp"]

COLUMNS = (
    "key, operation, params, params_digest, customers, key_source, state, attempts,"
    " snapshot, result, error, reason, created_at, updated_at"
)
OPEN = (EntryState.SENDING.value, EntryState.IN_DOUBT.value)
OPEN_ALL = (EntryState.RECORDED.value, *OPEN)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # one encoder, not one per call


def dumps(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def timestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def entry_from_row(row: sqlite3.Row | tuple[Any, ...]) -> LedgerEntry:
    (key, op, params, digest, customers, source, state, attempts, snap, result, error, reason, created, updated) = row
    return LedgerEntry(
        key=key,
        operation=op,
        params=json.loads(params),
        params_digest=digest,
        customers=tuple(json.loads(customers)),
        key_source=KeySource(source),
        state=EntryState(state),
        attempts=attempts,
        created_at=timestamp(created),
        updated_at=timestamp(updated),
        snapshot=loads(snap),
        result=loads(result),
        error=loads(error),
        reason=reason,
    )
