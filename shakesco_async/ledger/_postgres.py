"""The shared ledger: PostgreSQL through asyncpg, for services that run on many hosts.

Needs the ``postgres`` extra (``pip install 'shakesco-async[postgres]'``); the core never
imports this module unless a ``postgresql://`` DSN or an asyncpg pool is given.

Leases are session-level advisory locks held on one dedicated connection per process:
they are released the moment that connection ends, so a dead process never blocks a
customer, whatever the lease TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg

from .._errors import ConfigurationError, LeaseLost, LedgerError
from .._timing import CLOCK
from .._validate import seconds
from ._advisory import AdvisoryLeases
from ._base import Begun, Fence, Ledger, check_lookup
from ._batches import Batches
from ._entry import (
    FINAL_STATES,
    MAYBE_SENT,
    OPEN_STATES,
    SENDABLE_STATES,
    UNSENT,
    EntryState,
    Intent,
    KeySource,
    LedgerEntry,
    Settlement,
    adoptable,
    allowed_moves,
    not_sendable,
)
from ._postgres_errors import CONNECTION_ERRORS, DB_ERRORS, Outage, ledger_errors
from ._postgres_settle import Settle, settle_batch
from ._staging import Statements, connection_kind, stage_through

__all__ = ["SCHEMA_VERSION", "PostgresLedger", "begin_sql", "claim_sql", "open_entries_sql", "schema_sql"]

SCHEMA_VERSION = 6
ANY_BUSINESS = "*"
_MIGRATION_LOCK = 0x5348414B  # "SHAK": one migrator at a time
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_COLUMNS = (
    "key, operation, params, params_digest, customers, key_source, state, attempts,"
    " snapshot, result, error, reason, created_at, updated_at, in_flight"
)


def _states_sql(*states: EntryState) -> str:
    # Spelled out, not a parameter: the planner must see that a query's condition matches
    # a partial index's (entries_open_by_age, entries_open_by_customer).
    return "state IN ({})".format(", ".join(f"'{state.value}'" for state in states))


_OPEN_ALL_SQL = _states_sql(*OPEN_STATES)
_OPEN_SQL = _states_sql(*MAYBE_SENT)
_UNSENT_SQL = _states_sql(*UNSENT)
_FINAL_SQL = _states_sql(*sorted(FINAL_STATES))
_PRUNE_BATCH = 2000


@functools.cache
def open_entries_sql(table: str, scope: str) -> str:
    """``open_entries``' statement; $1 the key to leave out, $2 the customers, then ``scope``."""
    return (
        f"SELECT {_COLUMNS} FROM {table} WHERE {_OPEN_SQL} AND snapshot IS NOT NULL AND key != $1"
        f" AND customers && $2 AND {scope} ORDER BY updated_at, key"
    )


@functools.cache
def begin_sql(table: str) -> str:
    """``begin``'s statement, one round trip: the new entry (``created``), then the open
    entries on its customers, as ``open_entries`` finds them; no row when the key exists."""
    return (
        f"WITH new AS (INSERT INTO {table} (business, key, operation, params, params_digest, customers, key_source,"
        " state, attempts, snapshot, in_flight) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        f" ON CONFLICT (business, key) DO NOTHING RETURNING {_COLUMNS})"
        f" SELECT true AS created, {_COLUMNS} FROM new UNION ALL"
        f" SELECT false, {_COLUMNS} FROM {table} WHERE {_OPEN_SQL} AND snapshot IS NOT NULL AND key != $2"
        " AND customers && $6 AND business = $1 AND EXISTS (SELECT FROM new)"
    )


@functools.cache
def claim_sql(table: str, states: tuple[EntryState, ...] = OPEN_STATES) -> str:
    """``claim_open``'s statement for entries in ``states``; $1 owner, $2 ttl, $3 business,
    $4 after, $5 older_than, $6 limit. The states are spelled in the statement, so a claim
    of every open state uses the index of open entries."""
    # The pick is MATERIALIZED: as a subquery joined to the UPDATE it may be scanned again
    # for each row, and with SKIP LOCKED each scan can pick others, past the LIMIT.
    return (
        f"WITH pick AS MATERIALIZED (SELECT key FROM {table} WHERE business = $3 AND {_states_sql(*states)}"
        " AND created_at >= COALESCE($4::timestamptz, '-infinity')"
        " AND updated_at <= clock_timestamp() - make_interval(secs => $5)"
        " AND (claimed_until IS NULL OR claimed_until < clock_timestamp() OR claimed_by = $1"
        # A claimer whose connection has ended (its process killed) keeps nothing: each
        # claim names the server process that made it. The list is read once per statement.
        " OR claimed_holder <> ALL (ARRAY(SELECT pid FROM pg_stat_activity)))"
        " ORDER BY created_at, key LIMIT $6 FOR UPDATE SKIP LOCKED)"
        f" UPDATE {table} AS e SET claimed_by = $1, claimed_until = clock_timestamp() + make_interval(secs => $2),"
        " claimed_holder = pg_backend_pid()"
        " FROM pick WHERE e.business = $3 AND e.key = pick.key RETURNING "
        + ", ".join(f"e.{c.strip()}" for c in _COLUMNS.split(","))
    )


@functools.cache
def staging_sql(table: str) -> Statements:
    """Staging's statements, for the application's connection (``:name`` parameters; JSON
    passed as text, so no codec of ours is needed on it). The NOTIFY is delivered when the
    application's transaction commits, and never if it rolls back."""
    return Statements(
        insert=(
            f"INSERT INTO {table} (business, key, operation, params, params_digest, customers, key_source, state,"
            " attempts) VALUES (:business, :key, :operation, CAST(:params AS jsonb), :digest,"
            " ARRAY(SELECT jsonb_array_elements_text(CAST(:customers AS jsonb))), :source,"
            f" '{EntryState.STAGED.value}', 0) ON CONFLICT (business, key) DO NOTHING",
            "SELECT pg_notify(:channel, :business)",
        ),
        existing=f"SELECT operation, params_digest FROM {table} WHERE business = :business AND key = :key",
    )


def schema_sql(schema: str = "shakesco") -> str:
    """The documented schema (all migrations, idempotent), for the given schema name."""
    text = resources.files(__package__).joinpath("postgres_schema.sql").read_text()
    return text.replace("shakesco.", f"{schema}.").replace(
        "SCHEMA IF NOT EXISTS shakesco", f"SCHEMA IF NOT EXISTS {schema}"
    )


def _entry(row: asyncpg.Record) -> LedgerEntry:
    return LedgerEntry(
        key=row["key"],
        operation=row["operation"],
        params=row["params"],
        params_digest=row["params_digest"],
        customers=tuple(row["customers"]),
        key_source=KeySource(row["key_source"]),
        state=EntryState(row["state"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        snapshot=row["snapshot"],
        result=row["result"],
        error=row["error"],
        reason=row["reason"],
        in_flight=row["in_flight"],
    )


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The ledger leaves no session state on a pooled connection (its advisory locks live on
    the lease session, which gives them back itself), so the default reset, a round trip on
    each release (every statement), is skipped. asyncpg still ends any open transaction."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PostgresLedger(Ledger):
    """A ledger every host shares. Pass a DSN (``postgresql://...``) or an asyncpg pool.

    Idempotency keys are unique per business (the API key's fingerprint). The schema is
    created and migrated on ``open`` unless ``migrate=False`` (see ``schema_sql``).

    Leases are session advisory locks, so the connection must reach PostgreSQL's own
    session: a proxied connection is refused (``LedgerError``, nothing sent) unless
    ``session_pooler=True`` says it goes through a pooler in *session* mode. A pooler in
    transaction mode can never work; the SDK refuses it as soon as it shows.
    """

    def __init__(
        self,
        target: str | asyncpg.Pool,
        *,
        business: str,
        schema: str = "shakesco",
        migrate: bool = True,
        max_connections: int = 10,
        session_pooler: bool = False,
    ) -> None:
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError("schema must be a plain lowercase SQL identifier")
        self._dsn = target if isinstance(target, str) else None
        self._pool: asyncpg.Pool | None = None if isinstance(target, str) else target
        self._owns_pool = isinstance(target, str)
        self.business = business
        self.schema = schema
        self._migrate_on_open = migrate
        self._max_connections = max_connections
        self._leases = AdvisoryLeases(self._pool_conn, self._lock_key, session_pooler=session_pooler)
        self._settles: Batches[Settle, bool] = Batches(
            lambda moves: settle_batch(self._pool_conn, self._t, self.business, moves)
        )
        self._opening = asyncio.Lock()
        self._opened = False
        self.outage = Outage()
        self._listener: asyncpg.Connection | None = None
        self._staged = asyncio.Event()

    def __repr__(self) -> str:
        return f"PostgresLedger(schema={self.schema!r})"  # the DSN may carry a password

    @property
    def _t(self) -> str:
        return f"{self.schema}.entries"

    def _check_writable(self) -> None:
        if self.business == ANY_BUSINESS:
            raise LedgerError("this ledger view spans every business and is read-only")

    def _scope(self, first: int) -> tuple[str, list[Any]]:
        if self.business == ANY_BUSINESS:
            return "TRUE", []
        return f"business = ${first}", [self.business]

    # -- connections ---------------------------------------------------------------------------
    async def open(self) -> None:
        if self._opened:
            return
        async with self._opening:
            if self._opened:
                return
            try:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        # No floor: asyncpg would keep reconnecting to keep one while the
                        # server is down, printing a traceback each time.
                        min_size=0,
                        max_size=self._max_connections,
                        init=_init_connection,
                        reset=_no_reset,
                    )
                else:
                    # A caller's pool: register the jsonb codec on the connections we use.
                    self._pool._init = _init_connection
                if self._migrate_on_open:
                    await self._migrate()
                self._opened = True
            except DB_ERRORS as exc:
                if isinstance(exc, CONNECTION_ERRORS):
                    self.outage.failed(exc)
                raise LedgerError(f"cannot open the PostgreSQL ledger: {type(exc).__name__}: {exc}") from exc
            except ValueError as exc:  # asyncpg's parse of the DSN (its text never goes in a message)
                raise LedgerError(f"cannot open the PostgreSQL ledger: the DSN is not valid ({exc})") from None

    async def _migrate(self) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {self.schema}.schema_version (version integer NOT NULL)")
            version = await conn.fetchval(f"SELECT max(version) FROM {self.schema}.schema_version") or 0
            if version > SCHEMA_VERSION:
                raise LedgerError(f"ledger schema version {version} is newer than this SDK understands")
            if version < SCHEMA_VERSION:
                await conn.execute(schema_sql(self.schema))  # idempotent: brings any older version up

    async def close(self) -> None:
        await self._settles.drain()
        await self._leases.close()
        await self._stop_listening()
        if self._pool is not None and self._owns_pool:
            pool, self._pool = self._pool, None
            await pool.close()
        self._opened = False

    # -- staged writes -----------------------------------------------------------------------------
    @property
    def _channel(self) -> str:
        return f"{self.schema}_staged"

    def staging_kind(self, conn: object) -> str:
        kind = connection_kind(conn)
        if kind not in ("asyncpg", "sqlalchemy"):
            raise ConfigurationError(
                "a PostgreSQL ledger stages writes through an asyncpg connection or a SQLAlchemy"
                " AsyncConnection / AsyncSession to its database"
            )
        return kind

    @ledger_errors
    async def stage(self, conn: object, intent: Intent) -> None:
        self._check_writable()
        await self.open()  # the schema, made on a connection of the ledger's own
        kind = self.staging_kind(conn)
        values = {
            "business": self.business,
            "key": intent.key,
            "operation": intent.operation,
            "params": json.dumps(intent.params),
            "digest": intent.digest,
            "customers": json.dumps(list(intent.customers)),
            "source": intent.key_source.value,
            "channel": self._channel,
        }
        await stage_through(conn, kind, staging_sql(self._t), values, intent)

    async def staged_arrived(self, at_most: float) -> None:
        """Woken by the NOTIFY each staging transaction sends as it commits; polls (waits
        ``at_most``) while the listening connection cannot be had."""
        try:
            await self._listen()
        except (LedgerError, *DB_ERRORS):
            await self._stop_listening()
            await CLOCK.sleep(at_most)
            return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that comes as the event is set, and the sender would then outlive aclose().
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._staged.wait()
        self._staged.clear()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._stop_listening()
        pool = await self._pool_conn()
        conn = await pool.acquire()
        try:
            await conn.add_listener(self._channel, self._notified)
        except BaseException:
            await pool.release(conn)
            raise
        self._listener = conn
        self._staged.set()  # staged while nobody listened: look once

    def _notified(self, _conn: object, _pid: int, _channel: str, business: str) -> None:
        if business == self.business:
            self._staged.set()

    async def _stop_listening(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None or self._pool is None:
            return
        with contextlib.suppress(Exception):
            await conn.remove_listener(self._channel, self._notified)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    async def _pool_conn(self) -> asyncpg.Pool:
        await self.open()
        assert self._pool is not None
        return self._pool

    # -- leases ----------------------------------------------------------------------------------
    def _lock_key(self, name: str) -> str:
        return f"{self.business}\x1f{name}"

    @ledger_errors
    async def acquire(self, customers: Sequence[str], *, owner: str, lease_ttl: float) -> float | None:
        if not customers:
            return None
        self._check_writable()
        if await self._leases.acquire(customers, owner):
            return None
        return time.time() + 0.05  # held by another owner or process; poll again soon

    async def release(self, customers: Sequence[str], *, owner: str) -> None:
        await self._leases.release(customers, owner)  # never fails: a lost session ended its locks

    @ledger_errors
    async def renew(self, customers: Sequence[str], *, owner: str, lease_ttl: float) -> bool:
        # Its locks do not lapse, but end with the lease session, which the server may have
        # ended without this process having heard yet: a round trip on it tells.
        return await self._leases.confirm(customers, owner)

    @property
    def leases_end_with_a_session(self) -> bool:
        return True

    # -- the write path ----------------------------------------------------------------------------
    async def _get(self, key: str) -> LedgerEntry | None:
        return (await self._get_many([key])).get(key)

    @ledger_errors
    async def begin(
        self,
        intent: Intent,
        *,
        owner: str,
        lease_ttl: float,
        snapshot: dict[str, Any] | None = None,
        fence: Fence | None = None,
        in_flight: float | None = None,
        adopt: bool = False,
        on_leased: Callable[[], None] | None = None,
        alone: bool = False,  # commits are the server's: nothing to run on the loop's thread
    ) -> Begun:
        if fence is not None:
            snapshot = None  # advisory locks leave no trace to check a fence against
        pool = await self._pool_conn()
        # A key the SDK made a moment ago cannot be stored yet (and if it were, the insert says so).
        fresh_key = intent.key_source == KeySource.GENERATED and not adopt
        existing = None if fresh_key else await self._get(intent.key)
        if existing is not None:
            if adopt and adoptable(existing, intent):
                return await self._adopt(intent, owner, lease_ttl)
            return Begun(existing, created=False)
        busy = await self.acquire(intent.leases, owner=owner, lease_ttl=lease_ttl)
        if busy is not None:
            return Begun(None, created=False, busy_until=busy)
        if on_leased is not None:
            on_leased()
        try:
            rows = await pool.fetch(
                begin_sql(self._t),
                self.business,
                intent.key,
                intent.operation,
                intent.params,
                intent.digest,
                list(intent.customers),
                intent.key_source.value,
                EntryState.RECORDED.value if snapshot is None else EntryState.SENDING.value,
                0 if snapshot is None else 1,
                snapshot,
                in_flight,
            )
        except BaseException:
            await self.release(intent.leases, owner=owner)
            raise
        if not rows:  # another host recorded the same key a moment ago
            await self.release(intent.leases, owner=owner)
            existing = await self._get(intent.key)
            return Begun(existing, created=False) if existing else Begun(None, created=False, busy_until=time.time())
        entry = next(_entry(r) for r in rows if r["created"])
        others = sorted((_entry(r) for r in rows if not r["created"]), key=lambda e: (e.updated_at, e.key))
        return Begun(entry, created=True, others=tuple(others))

    async def _adopt(self, intent: Intent, owner: str, lease_ttl: float) -> Begun:
        """``begin(adopt=True)`` for an unsent entry: its leases, then the entry read again
        under them. Its snapshot is left to the guard's mark (no fence to keep it by)."""
        busy = await self.acquire(intent.leases, owner=owner, lease_ttl=lease_ttl)
        if busy is not None:
            return Begun(None, created=False, busy_until=busy)
        try:
            fresh = await self._get(intent.key)
            if fresh is None or not adoptable(fresh, intent):
                await self.release(intent.leases, owner=owner)
                return Begun(fresh, created=False)
            if await self._older_unsent(fresh):  # owed writes go in staging order per customer
                await self.release(intent.leases, owner=owner)
                return Begun(None, created=False, busy_until=time.time())
            others = await self.open_entries(intent.customers, exclude=intent.key)
        except BaseException:
            await self.release(intent.leases, owner=owner)
            raise
        return Begun(fresh, created=True, others=tuple(others))

    async def _older_unsent(self, entry: LedgerEntry) -> bool:
        """Whether a write on one of ``entry``'s customers, recorded before it, is still unsent."""
        if not entry.customers:
            return False
        pool = await self._pool_conn()
        found = await pool.fetchval(
            f"SELECT EXISTS (SELECT FROM {self._t} WHERE business = $1 AND {_UNSENT_SQL} AND customers && $2"
            " AND key != $3 AND created_at < $4)",
            self.business,
            list(entry.customers),
            entry.key,
            entry.created_at,
        )
        return bool(found)

    @ledger_errors
    async def lease_entries(
        self, wanted: Sequence[tuple[LedgerEntry, str]], *, lease_ttl: float
    ) -> list[tuple[LedgerEntry | None, bool]]:
        # Set-wise, for a reconcile wave: the entries in one query, their leases together (one
        # lease statement), then the leased ones read again in one query. One by one, each
        # entry cost two queries and a lease statement, in turn.
        self._check_writable()
        before = await self._get_many([last.key for last, _ in wanted])

        async def lease(key: str, owner: str) -> bool:
            entry = before.get(key)
            if entry is None or entry.is_final:
                return False
            return await self.acquire(entry.leases, owner=owner, lease_ttl=lease_ttl) is None

        tried = await asyncio.gather(*(lease(last.key, owner) for last, owner in wanted), return_exceptions=True)
        taken = [(before[last.key], owner) for (last, owner), ok in zip(wanted, tried, strict=True) if ok is True]
        try:
            for outcome in tried:
                if isinstance(outcome, BaseException):
                    raise outcome  # all or nothing: what the others took goes back below
            after = await self._get_many([entry.key for entry, _ in taken])
        except BaseException:
            await asyncio.gather(*(self.release(entry.leases, owner=owner) for entry, owner in taken))
            raise
        out: list[tuple[LedgerEntry | None, bool]] = []
        stale: list[tuple[LedgerEntry, str]] = []
        for (last, owner), ok in zip(wanted, tried, strict=True):
            if ok is not True:
                out.append((before.get(last.key), False))
                continue
            fresh = after.get(last.key)
            if fresh is None or fresh.is_final:  # settled between the reads: nothing to lease
                stale.append((before[last.key], owner))
                out.append((fresh, False))
            else:
                out.append((fresh, True))
        await asyncio.gather(*(self.release(entry.leases, owner=owner) for entry, owner in stale))
        return out

    async def _get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        if not keys:
            return {}
        pool = await self._pool_conn()
        scope, args = self._scope(2)
        rows = await pool.fetch(
            f"SELECT {_COLUMNS} FROM {self._t} WHERE key = ANY($1::text[]) AND {scope}", list(keys), *args
        )
        return {row["key"]: _entry(row) for row in rows}

    @ledger_errors
    async def open_entries(self, customers: Sequence[str], *, exclude: str) -> list[LedgerEntry]:
        if not customers:
            return []
        pool = await self._pool_conn()
        scope, args = self._scope(3)
        rows = await pool.fetch(
            open_entries_sql(self._t, scope),
            exclude,
            list(customers),
            *args,
        )
        return [_entry(r) for r in rows]

    @ledger_errors
    async def mark_sending(
        self,
        key: str,
        *,
        snapshot: dict[str, Any] | None,
        owner: str,
        customers: Sequence[str],
        lease_ttl: float,
        in_flight: float | None = None,
        attempt: bool = True,
    ) -> None:
        # The request may leave right after this: make sure our locks still exist.
        if customers and not self._leases.alive:
            raise LeaseLost("the lease connection to PostgreSQL was lost; nothing was sent")
        if not self._leases.held(customers, owner):
            raise LeaseLost(f"the lease on customers {', '.join(customers)} is no longer held; nothing was sent")
        pool = await self._pool_conn()
        status = await pool.execute(
            f"UPDATE {self._t} SET state = $1, snapshot = $2, attempts = attempts + $6,"
            " updated_at = clock_timestamp(), in_flight = $5 WHERE business = $3 AND key = $4"
            f" AND {_states_sql(*SENDABLE_STATES)}",
            EntryState.SENDING.value,
            snapshot,
            self.business,
            key,
            in_flight,
            int(attempt),
        )
        if status != "UPDATE 1":
            raise not_sendable(key)

    @ledger_errors
    async def settle(self, key: str, move: Settlement) -> bool:
        row = Settle(
            key,
            move.state.value,
            None if move.result is None else json.dumps(move.result),
            None if move.error is None else json.dumps(move.error),
            move.reason,
            tuple(s.value for s in allowed_moves(move.state, move.expect)),
            move.drop_snapshot,
        )
        # The move is made even if the caller stops waiting: it is already in a batch.
        moved: bool = await asyncio.shield(self._settles.submit(row))
        if move.release and move.owner is not None:
            await self.release(move.release, owner=move.owner)
        if moved:
            self._settled(key, move)
        elif move.expect is None:
            await self._refuse_forbidden(key, move.state)
        return moved

    @ledger_errors
    async def claim_open(
        self,
        *,
        owner: str,
        older_than: float,
        limit: int | None,
        ttl: float,
        after: datetime | None = None,
        states: Sequence[EntryState] = OPEN_STATES,
    ) -> list[LedgerEntry]:
        pool = await self._pool_conn()
        rows = await pool.fetch(
            claim_sql(self._t, tuple(states)),
            owner,
            float(ttl),
            self.business,
            after,
            float(older_than),
            limit,
        )
        return sorted((_entry(r) for r in rows), key=lambda e: (e.created_at, e.key))

    @ledger_errors
    async def unclaim(self, owner: str, keys: Sequence[str]) -> None:
        if not keys:
            return
        pool = await self._pool_conn()
        await pool.execute(
            f"UPDATE {self._t} SET claimed_by = NULL, claimed_until = NULL, claimed_holder = NULL"
            " WHERE business = $1 AND claimed_by = $2 AND key = ANY($3::text[])",
            self.business,
            owner,
            list(keys),
        )

    @ledger_errors
    async def prune(self, *, older_than: float) -> int:
        age = seconds("older_than", older_than)
        self._check_writable()
        pool = await self._pool_conn()
        pruned = 0
        while True:  # a batch at a time, each its own transaction: no long lock on the table
            status = await pool.execute(
                f"DELETE FROM {self._t} WHERE business = $1 AND key IN (SELECT key FROM {self._t}"
                f" WHERE business = $1 AND {_FINAL_SQL} AND created_at < clock_timestamp() - make_interval(secs => $2)"
                " AND updated_at < clock_timestamp() - make_interval(secs => $2) LIMIT $3)",
                self.business,
                age,
                _PRUNE_BATCH,
            )
            deleted = int(status.split()[-1])
            pruned += deleted
            if deleted < _PRUNE_BATCH:
                return pruned

    @ledger_errors
    async def import_rows(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert entries moved from another ledger (with their business); existing keys win."""
        pool = await self._pool_conn()
        inserted = 0
        async with pool.acquire() as conn, conn.transaction():
            for r in rows:
                status = await conn.execute(
                    f"INSERT INTO {self._t} (business, {_COLUMNS}) VALUES"
                    " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
                    " ON CONFLICT (business, key) DO NOTHING",
                    r["business"],
                    r["key"],
                    r["operation"],
                    r["params"],
                    r["params_digest"],
                    r["customers"],
                    r["key_source"],
                    r["state"],
                    r["attempts"],
                    r["snapshot"],
                    r["result"],
                    r["error"],
                    r["reason"],
                    r["created_at"],
                    r["updated_at"],
                    r.get("in_flight"),
                )
                inserted += status.endswith(" 1")
        return inserted

    # -- inspection ------------------------------------------------------------------------------
    @ledger_errors
    async def get(self, key: str) -> LedgerEntry | None:
        check_lookup(key=key)
        return await self._get(key)

    @ledger_errors
    async def now(self) -> datetime:
        # Entries are stamped by the server's clock: ages are measured on it, not on this host's.
        async with (await self._pool_conn()).acquire() as conn:
            stamp: datetime = await conn.fetchval("SELECT clock_timestamp()")
        return stamp

    @ledger_errors
    async def entries_by_business(
        self,
        *,
        states: Sequence[EntryState] | None = None,
        customer: str | None = None,
        older_than: float | None = None,
        limit: int | None = None,
        newest: bool = False,
        key: str | None = None,
    ) -> list[tuple[str, LedgerEntry]]:
        check_lookup(key=key, customer=customer, states=states, older_than=older_than, limit=limit)
        pool = await self._pool_conn()
        scope, args = self._scope(1)
        sql = f"SELECT business, {_COLUMNS} FROM {self._t} WHERE {scope}"
        if key is not None:
            args.append(key)
            sql += f" AND key = ${len(args)}"
        if states is not None:
            args.append([s.value for s in states])
            sql += f" AND state = ANY(${len(args)})"
        if customer is not None:
            args.append([customer])
            sql += f" AND customers @> ${len(args)}"
        if older_than is not None:
            args.append(float(older_than))
            sql += f" AND updated_at <= clock_timestamp() - make_interval(secs => ${len(args)})"
        sql += " ORDER BY created_at DESC, key DESC" if newest else " ORDER BY created_at, key"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        return [(r["business"], _entry(r)) for r in await pool.fetch(sql, *args)]

    @ledger_errors
    async def counts(self) -> dict[EntryState, int]:
        pool = await self._pool_conn()
        scope, args = self._scope(1)
        rows = await pool.fetch(f"SELECT state, count(*) AS n FROM {self._t} WHERE {scope} GROUP BY state", *args)
        found = {EntryState(r["state"]): r["n"] for r in rows}
        return {state: found.get(state, 0) for state in EntryState}
