"""Which ledger a test runs on: the SQLite file or a PostgreSQL schema of its own."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import attrs

from shakesco_async._config import ApiKey
from shakesco_async.ledger import Intent, Ledger, SQLiteLedger


@attrs.frozen
class LedgerSpec:
    backend: str
    location: str
    schema: str = ""

    def make(self, api_key: str) -> Ledger:
        """A new ledger object on the same storage, as another process would open it."""
        business = ApiKey(api_key).fingerprint
        if self.backend == "postgres":
            from shakesco_async.ledger._postgres import PostgresLedger

            return PostgresLedger(self.location, business=business, schema=self.schema, max_connections=20)
        return SQLiteLedger(self.location, business=business)

    def argv(self) -> list[str]:
        return [self.backend, self.location, self.schema or "-"]

    @classmethod
    def from_argv(cls, backend: str, location: str, schema: str) -> LedgerSpec:
        return cls(backend, location, "" if schema == "-" else schema)


def sqlite_spec(directory: Path) -> LedgerSpec:
    return LedgerSpec("sqlite", str(directory / "ledger.sqlite3"))


def sqlite_execute(path: str | Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement on a SQLite ledger file and commit it, as another process would."""
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(sql, params)
    finally:
        db.close()


async def stage_committed(ledger: Ledger, intent: Intent) -> None:
    """Stage ``intent`` through a connection of the application's own, and commit."""
    if isinstance(ledger, SQLiteLedger):
        db = sqlite3.connect(ledger.path, isolation_level=None, timeout=0)
        try:
            await begin_immediate(db)
            await ledger.stage(db, intent)
            db.execute("COMMIT")
        finally:
            db.close()
        return
    import asyncpg

    conn = await asyncpg.connect(ledger._dsn)  # type: ignore[attr-defined]
    try:
        async with conn.transaction():
            await ledger.stage(conn, intent)
    finally:
        await conn.close()


async def begin_immediate(db: sqlite3.Connection) -> None:
    """Take the file's write lock on a sqlite3 connection without blocking the event loop
    (the ledger may need the loop to give the lock up): try, and await between tries."""
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            await asyncio.sleep(0.005)
