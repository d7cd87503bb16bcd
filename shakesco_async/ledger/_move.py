"""Move a SQLite ledger's open and recent entries into the shared PostgreSQL ledger."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._entry import EntryState

__all__ = ["move_sqlite_to_postgres"]

_OPEN = (EntryState.RECORDED.value, EntryState.SENDING.value, EntryState.IN_DOUBT.value)


def _read(path: Path, since: float) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute(
            "SELECT * FROM entries WHERE state IN (?, ?, ?) OR updated_at >= ? ORDER BY created_at",
            (*_OPEN, since),
        ).fetchall()
    finally:
        db.close()
    out = []
    for row in rows:
        item = dict(row)
        for field in ("params", "customers", "snapshot", "result", "error"):
            item[field] = None if item[field] is None else json.loads(item[field])
        for field in ("created_at", "updated_at"):
            item[field] = datetime.fromtimestamp(item[field], tz=UTC)
        out.append(item)
    return out


async def move_sqlite_to_postgres(
    sqlite_path: str | Path, dsn: str, *, schema: str = "shakesco", recent_days: float = 30.0
) -> tuple[int, int]:
    """Copy every open entry and every entry touched in the last ``recent_days``.

    Stop the processes that write to the SQLite file first. Keys already in PostgreSQL
    are left as they are. Returns (entries read, entries inserted).
    """
    from ._postgres import PostgresLedger

    rows = await asyncio.to_thread(_read, Path(sqlite_path), time.time() - recent_days * 86400)
    target = PostgresLedger(dsn, business="*", schema=schema)
    try:
        inserted = await target.import_rows(rows)
    finally:
        await target.close()
    return len(rows), inserted
