"""Move a SQLite ledger's open and recent entries into the shared PostgreSQL ledger."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._errors import LedgerError
from .._timing import CLOCK
from ._entry import OPEN_STATES
from ._sqlite import MOVED
from ._sqlite_batch import WRITE_LOCK_WAIT

__all__ = ["move_sqlite_to_postgres"]

_OPEN = tuple(state.value for state in OPEN_STATES)


def _lock(path: Path) -> sqlite3.Connection:
    """The file's write lock, held until the move ends: no entry is added meanwhile."""
    db = sqlite3.connect(
        f"file:{path}?mode=rw", uri=True, isolation_level=None, timeout=WRITE_LOCK_WAIT, check_same_thread=False
    )
    try:
        db.execute("BEGIN IMMEDIATE")
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version >= MOVED:
            raise LedgerError(f"ledger {str(path)!r} was moved to PostgreSQL already")
    except sqlite3.OperationalError as exc:
        db.close()
        raise LedgerError(f"cannot lock ledger {str(path)!r} ({exc}): stop the processes that write to it") from exc
    except BaseException:
        db.close()
        raise
    return db


def _read(db: sqlite3.Connection, since: float) -> list[dict[str, Any]]:
    db.row_factory = sqlite3.Row
    rows = db.execute(
        f"SELECT * FROM entries WHERE state IN ({', '.join('?' * len(_OPEN))}) OR updated_at >= ? ORDER BY created_at",
        (*_OPEN, since),
    ).fetchall()
    out = []
    for row in rows:
        item = dict(row)
        for field in ("params", "customers", "snapshot", "result", "error"):
            item[field] = None if item[field] is None else json.loads(item[field])
        for field in ("created_at", "updated_at"):
            item[field] = datetime.fromtimestamp(item[field], tz=UTC)
        out.append(item)
    return out


def _retire(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    db.execute(f"PRAGMA user_version = {MOVED + int(version)}")
    db.execute("COMMIT")


async def move_sqlite_to_postgres(
    sqlite_path: str | Path, dsn: str, *, schema: str = "shakesco", recent_days: float = 30.0
) -> tuple[int, int]:
    """Copy every open entry and every entry touched in the last ``recent_days``, then
    retire the SQLite file: no SDK opens it as a ledger again, so its open entries are
    settled (or sent) only through PostgreSQL, never by both.

    Stop the processes that write to the SQLite file first; the move holds its write lock
    throughout. If the copy fails, the file is left as it was. Keys already in PostgreSQL
    are left as they are. Returns (entries read, entries inserted).
    """
    from ._postgres import PostgresLedger

    path = Path(sqlite_path)
    db = await asyncio.to_thread(_lock, path)
    try:
        rows = await asyncio.to_thread(_read, db, CLOCK.time() - recent_days * 86400)
        target = PostgresLedger(dsn, business="*", schema=schema)
        try:
            inserted = await target.import_rows(rows)
        finally:
            await target.close()
        await asyncio.to_thread(_retire, db)
    finally:
        await asyncio.to_thread(db.close)  # without a COMMIT, the transaction ends unmade
    return len(rows), inserted
