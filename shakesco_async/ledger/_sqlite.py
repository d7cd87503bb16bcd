"""The embedded ledger: one SQLite file in WAL mode, reached through aiosqlite."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from .._errors import LedgerError
from ._base import Begun, Ledger
from ._entry import EntryState, Intent, KeySource, LedgerEntry

__all__ = ["ANY_BUSINESS", "SQLiteLedger"]

# Each step moves the schema one version up; the list index + 1 is the version it leads to.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE entries (
        business TEXT NOT NULL,
        key TEXT NOT NULL,
        operation TEXT NOT NULL,
        params TEXT NOT NULL,
        params_digest TEXT NOT NULL,
        customers TEXT NOT NULL,
        key_source TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        snapshot TEXT,
        result TEXT,
        error TEXT,
        reason TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (business, key)
    );
    CREATE INDEX entries_by_state ON entries (business, state, created_at);
    CREATE TABLE entry_customers (
        business TEXT NOT NULL,
        customer TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (business, customer, key)
    );
    CREATE TABLE leases (
        business TEXT NOT NULL,
        customer TEXT NOT NULL,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (business, customer)
    );
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
ANY_BUSINESS = "*"
"""A read-only view across every business in the file (for inspection tools)."""

_COLUMNS = (
    "key, operation, params, params_digest, customers, key_source, state, attempts,"
    " snapshot, result, error, reason, created_at, updated_at"
)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _time(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _entry(row: aiosqlite.Row | tuple[Any, ...]) -> LedgerEntry:
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
        created_at=_time(created),
        updated_at=_time(updated),
        snapshot=_loads(snap),
        result=_loads(result),
        error=_loads(error),
        reason=reason,
    )


class SQLiteLedger(Ledger):
    """A ledger in one SQLite file, shared safely by the processes of one host.

    ``synchronous="FULL"`` (default) makes every commit survive power loss;
    ``"NORMAL"`` is faster but a power cut (not a process crash) may lose the last
    commits, and with them the record that a write was about to be sent.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, business: str, synchronous: Literal["FULL", "NORMAL"] = "FULL"
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self.path = Path(path)
        self.business = business
        self.synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._opening: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"SQLiteLedger(path={str(self.path)!r})"

    @property
    def _scope(self) -> tuple[str, tuple[str, ...]]:
        """The WHERE clause that keeps a query to this ledger's business (an index prefix)."""
        return ("1 = 1", ()) if self.business == ANY_BUSINESS else ("business = ?", (self.business,))

    async def open(self) -> None:
        if self._db is not None:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._db is not None:
                return
            try:
                self._db = await self._connect()
            except (aiosqlite.Error, OSError) as exc:
                raise LedgerError(f"cannot open ledger {str(self.path)!r}: {exc}") from exc

    async def _connect(self) -> aiosqlite.Connection:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only from the first byte: the ledger names customers and amounts.
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        db = await aiosqlite.connect(str(self.path), isolation_level=None)
        try:
            await db.execute("PRAGMA busy_timeout = 10000")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(f"PRAGMA synchronous = {self.synchronous}")
            await self._migrate(db)
        except BaseException:
            await db.close()
            raise
        return db

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger schema version {version} is newer than this SDK understands ({SCHEMA_VERSION})"
                )
            for step in _MIGRATIONS[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[aiosqlite.Connection]:
        await self.open()
        assert self._db is not None
        async with self._lock:
            yield self._db

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        if self.business == ANY_BUSINESS:
            raise LedgerError("this ledger view spans every business and is read-only")
        async with self._conn() as db:
            try:
                await db.execute("BEGIN IMMEDIATE")
            except aiosqlite.Error as exc:
                raise LedgerError(f"ledger is unavailable: {exc}") from exc
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException as exc:
                await db.execute("ROLLBACK")
                if isinstance(exc, aiosqlite.Error):
                    raise LedgerError(f"ledger write failed: {exc}") from exc
                raise

    # -- leases ----------------------------------------------------------------------------
    async def _try_lease(
        self, db: aiosqlite.Connection, customers: Sequence[str], owner: str, ttl: float, now: float
    ) -> float | None:
        if not customers:
            return None
        marks = ",".join("?" * len(customers))
        async with db.execute(
            f"SELECT MAX(expires_at) FROM leases WHERE business = ? AND customer IN ({marks})"
            " AND owner != ? AND expires_at > ?",
            (self.business, *customers, owner, now),
        ) as cur:
            row = await cur.fetchone()
        if row is not None and row[0] is not None:
            return float(row[0])
        await db.executemany(
            "INSERT INTO leases (business, customer, owner, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (business, customer) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at",
            [(self.business, c, owner, now + ttl) for c in customers],
        )
        return None

    async def acquire(self, customers: Sequence[str], *, owner: str, lease_ttl: float) -> float | None:
        async with self._transaction() as db:
            return await self._try_lease(db, customers, owner, lease_ttl, time.time())

    async def release(self, customers: Sequence[str], *, owner: str) -> None:
        if not customers:
            return
        async with self._transaction() as db:
            await db.executemany(
                "DELETE FROM leases WHERE business = ? AND customer = ? AND owner = ?",
                [(self.business, c, owner) for c in customers],
            )

    # -- the write path ------------------------------------------------------------------
    async def _get(self, db: aiosqlite.Connection, key: str) -> LedgerEntry | None:
        async with db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE {self._scope[0]} AND key = ?", (*self._scope[1], key)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else _entry(row)

    async def begin(self, intent: Intent, *, owner: str, lease_ttl: float) -> Begun:
        now = time.time()
        async with self._transaction() as db:
            existing = await self._get(db, intent.key)
            if existing is not None:
                return Begun(existing, created=False)
            busy = await self._try_lease(db, intent.leases, owner, lease_ttl, now)
            if busy is not None:
                return Begun(None, created=False, busy_until=busy)
            await db.execute(
                f"INSERT INTO entries (business, {_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL, NULL, NULL, ?, ?)",
                (
                    self.business,
                    intent.key,
                    intent.operation,
                    _dumps(intent.params),
                    intent.digest,
                    _dumps(list(intent.customers)),
                    intent.key_source.value,
                    EntryState.RECORDED.value,
                    now,
                    now,
                ),
            )
            await db.executemany(
                "INSERT OR IGNORE INTO entry_customers (business, customer, key) VALUES (?, ?, ?)",
                [(self.business, c, intent.key) for c in intent.customers],
            )
            entry = await self._get(db, intent.key)
        return Begun(entry, created=True)

    async def mark_sending(
        self, key: str, *, snapshot: dict[str, Any] | None, owner: str, customers: Sequence[str], lease_ttl: float
    ) -> None:
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "UPDATE entries SET state = ?, snapshot = ?, attempts = attempts + 1, updated_at = ?"
                " WHERE business = ? AND key = ?",
                (EntryState.SENDING.value, _dumps(snapshot), now, self.business, key),
            )
            await db.executemany(
                "UPDATE leases SET expires_at = ? WHERE business = ? AND customer = ? AND owner = ?",
                [(now + lease_ttl, self.business, c, owner) for c in customers],
            )

    async def settle(
        self,
        key: str,
        state: EntryState,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        reason: str | None = None,
        expect: Sequence[EntryState] | None = None,
        drop_snapshot: bool = False,
    ) -> bool:
        sql = (
            "UPDATE entries SET state = ?, result = COALESCE(?, result), error = ?, reason = ?, updated_at = ?"
            + (", snapshot = NULL" if drop_snapshot else "")
            + " WHERE business = ? AND key = ?"
        )
        args: list[Any] = [state.value, _dumps(result), _dumps(error), reason, time.time(), self.business, key]
        if expect is not None:
            sql += f" AND state IN ({','.join('?' * len(expect))})"
            args.extend(s.value for s in expect)
        async with self._transaction() as db:
            cur = await db.execute(sql, args)
            return cur.rowcount == 1

    # -- inspection ----------------------------------------------------------------------
    async def get(self, key: str) -> LedgerEntry | None:
        async with self._conn() as db:
            return await self._get(db, key)

    async def entries(
        self,
        *,
        states: Sequence[EntryState] | None = None,
        customer: str | None = None,
        older_than: float | None = None,
        limit: int | None = None,
    ) -> list[LedgerEntry]:
        scope, scope_args = self._scope
        sql = f"SELECT {_COLUMNS} FROM entries WHERE {scope}"
        args: list[Any] = [*scope_args]
        if states is not None:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(s.value for s in states)
        if customer is not None:
            sql += f" AND key IN (SELECT key FROM entry_customers WHERE {scope} AND customer = ?)"
            args.extend((*scope_args, customer))
        if older_than is not None:
            sql += " AND updated_at <= ?"
            args.append(time.time() - older_than)
        sql += " ORDER BY created_at, key"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        async with self._conn() as db, db.execute(sql, args) as cur:
            return [_entry(row) for row in await cur.fetchall()]

    async def counts(self) -> dict[EntryState, int]:
        async with (
            self._conn() as db,
            db.execute(
                f"SELECT state, COUNT(*) FROM entries WHERE {self._scope[0]} GROUP BY state", self._scope[1]
            ) as cur,
        ):
            found = {EntryState(state): n for state, n in await cur.fetchall()}
        return {state: found.get(state, 0) for state in EntryState}
