"""The embedded ledger: one SQLite file in WAL mode, reached through aiosqlite."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, overload

import aiosqlite

from .._errors import ConfigurationError, IdempotencyConflict, LeaseLost, LedgerError
from .._timing import CLOCK
from .._validate import seconds
from . import _clock as clock
from . import _sqlite_leases as lease_rows
from ._base import Begun, Fence, Ledger, check_lookup
from ._clock import LeaseEnd
from ._entry import (
    FINAL_STATES,
    OPEN_STATES,
    SENDABLE_STATES,
    EntryState,
    Intent,
    LedgerEntry,
    Settlement,
    allowed_moves,
)
from ._entry import not_sendable as _not_sendable
from ._filesystems import SHARED_FILESYSTEMS, filesystem_of
from ._processes import holder_exited, holder_for
from ._sqlite_batch import (
    WRITE_LOCK_WAIT,
    Begin,
    Lease,
    Op,
    Settle,
    deferrable,
    is_set_wise,
    mark_links,
    open_entries_sql,
    run_batch,
    run_ops,
    set_synchronous,
    try_begin,
)
from ._sqlite_rows import COLUMNS as _COLUMNS
from ._sqlite_rows import OPEN as _OPEN
from ._sqlite_rows import OPEN_ALL as _OPEN_ALL
from ._sqlite_rows import dumps as _dumps
from ._sqlite_rows import entry_from_row as _entry
from ._sqlite_rows import marks as _marks
from ._staging import (
    Stager,
    Statements,
    begin_immediate,
    cannot_begin,
    check_found,
    connection_kind,
    rollback,
    stage_sqlite,
    staging_failed,
)

__all__ = ["ANY_BUSINESS", "SQLiteLedger"]

log = logging.getLogger("shakesco_async.ledger")

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
    CREATE INDEX entry_customers_by_key ON entry_customers (business, key);
    CREATE TABLE leases (
        business TEXT NOT NULL,
        customer TEXT NOT NULL,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (business, customer)
    );
    """,
    # 2: reconcilers claim entries, so that several of them split the work.
    """
    ALTER TABLE entries ADD COLUMN claimed_by TEXT;
    ALTER TABLE entries ADD COLUMN claimed_until REAL;
    """,
    # 3: released leases stay (ended) for a while, so a fence can see who wrote lately; an
    # SDK that deletes them must not share the file, and refuses a newer schema.
    """
    CREATE INDEX leases_by_expiry ON leases (expires_at);
    """,
    # 4: a customer's links to its entries not yet final are marked, so the open-entry
    # check before each write reads those, not every write the customer ever made.
    """
    ALTER TABLE entry_customers ADD COLUMN open INTEGER NOT NULL DEFAULT 1;
    UPDATE entry_customers SET open = 0 WHERE EXISTS (
        SELECT 1 FROM entries e WHERE e.business = entry_customers.business AND e.key = entry_customers.key
        AND e.state IN ('committed', 'failed', 'abandoned'));
    CREATE INDEX entry_customers_open ON entry_customers (business, customer, key) WHERE open = 1;
    """,
    # 5: a lease also ends by this boot's monotonic clock, so that a wall clock stepped
    # forward cannot end it under a request still in flight (see _clock).
    """
    ALTER TABLE leases ADD COLUMN boot TEXT;
    ALTER TABLE leases ADD COLUMN mono_from REAL;
    ALTER TABLE leases ADD COLUMN mono_until REAL;
    """,
    # 6: a lease, and a reconciler's claim, name the process that took them, and end once
    # that process has exited (see _processes), not minutes later.
    """
    ALTER TABLE leases ADD COLUMN holder TEXT;
    ALTER TABLE entries ADD COLUMN claimed_holder TEXT;
    """,
    # 7: a write marked sending records how long its request may be on its way, so that a
    # process with a shorter timeout does not judge it early.
    """
    ALTER TABLE entries ADD COLUMN in_flight REAL;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
MOVED = 1_000_000
"""Added to the schema version of a ledger whose entries were moved to PostgreSQL: no SDK
opens it again, so none can send what the shared ledger now owns."""
ANY_BUSINESS = "*"
"""A read-only view across every business in the file (for inspection tools)."""

T = TypeVar("T")


async def in_connection_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(raw_connection)`` in the connection's own thread, as one step.

    aiosqlite runs every call through ``Connection._execute`` on its thread; a whole
    group-commit batch done as one such step costs one thread hop instead of dozens.
    This is the only place that relies on that internal (tests pin it).
    """
    return await conn._execute(lambda: fn(conn._conn))  # type: ignore[no-untyped-call,no-any-return]


def _connection(path: str, **options: Any) -> aiosqlite.Connection:
    """An aiosqlite connection whose thread does not keep the process alive.

    aiosqlite's thread is not a daemon: a ledger its owner never closed (a client without
    ``aclose()``) would hang the interpreter at exit. Killed at exit instead, a commit in
    progress is a crash, which the WAL recovers from. (``_thread`` is aiosqlite's; tests pin it.)
    """
    conn = aiosqlite.connect(path, **options)
    conn._thread.daemon = True
    return conn


class SQLiteLedger(Ledger):
    """A ledger in one SQLite file, shared safely by the processes of one host.

    Writes from all coroutines are *group-committed*: whatever operations arrive while
    one transaction is being made durable go into the next one, so many writers share
    one fsync, and each caller resumes only once its own operation is durable. Reads use
    a second connection and never wait for a commit.

    ``synchronous="FULL"`` (default) makes every commit survive power loss;
    ``"NORMAL"`` is faster but a power cut (not a process crash) may lose the last
    commits, and with them the record that a write was about to be sent.

    A file on a filesystem other hosts can mount (NFS, SMB, CephFS...) is refused: SQLite's
    locks are one host's. ``allow_shared_filesystem=True`` opens one there that only this
    host uses.
    """

    fences_snapshots = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        business: str,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        allow_shared_filesystem: bool = False,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        # Fixed where the ledger is made: a process that changes directory later must not
        # start a second ledger beside the first.
        self.path = Path(path) if str(path) == ":memory:" else Path(path).absolute()
        self.business = business
        self.synchronous = synchronous
        self.allow_shared_filesystem = allow_shared_filesystem
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._opening: asyncio.Lock | None = None
        self._pending: list[tuple[Op, asyncio.Future[Any], bool]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Taken by each commit, and by the application's transactions on this file
        # (``transaction``): one write lock, taken in turn, FIFO, in this process.
        self._turn = asyncio.Lock()
        self._app_turn = asyncio.Lock()
        # Done once every operation queued so far is committed: the batch being gathered's
        # (``_gathering``), then, once taken, the batch's until its last transaction ends.
        self._last_queued: asyncio.Future[None] | None = None
        self._gathering: asyncio.Future[None] | None = None
        self._since_checkpoint = 0
        self._durable_cost = 0.0  # seconds a durable COMMIT took lately (moving average)
        self._one_at_a_time = False  # the latest intents were each their caller's only write in flight
        self._synchronous_now: str | None = None  # what the writer connection is set to, if known
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the file as opened
        # The same of its -wal and -shm (None: absent at open): entries live in the -wal
        # until a checkpoint, so a -wal deleted under us takes them with it.
        # (path as text, suffix, its file's id when opened): checked before every commit,
        # where a path built anew each time cost more than the stat calls themselves.
        self._watched: tuple[tuple[str, str, tuple[int, int]], ...] = ()
        self._rescued = False

    def __repr__(self) -> str:
        return f"SQLiteLedger(path={str(self.path)!r})"

    @property
    def _scope(self) -> tuple[str, tuple[str, ...]]:
        """The WHERE clause that keeps a query to this ledger's business (an index prefix)."""
        return ("1 = 1", ()) if self.business == ANY_BUSINESS else ("business = ?", (self.business,))

    # -- connections ---------------------------------------------------------------------------
    async def open(self) -> None:
        if self._reader is not None:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._reader is not None:
                return
            try:
                self._writer = await self._connect()
                self._synchronous_now = None
                self._file_id = None if str(self.path) == ":memory:" else _file_id(self.path)
                self._reader = await _connection(str(self.path), isolation_level=None)
                await self._reader.execute("PRAGMA busy_timeout = 10000")
                await self._reader.execute("PRAGMA query_only = 1")
                self._watched = () if self._file_id is None else self._watch()
                self._rescued = False
            except (aiosqlite.Error, OSError) as exc:
                await self.close()
                raise LedgerError(f"cannot open ledger {str(self.path)!r}: {exc}") from exc

    async def _connect(self) -> aiosqlite.Connection:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._refuse_a_shared_filesystem()
            # Owner-only from the first byte: the ledger names customers and amounts.
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        # Record batches run their statements on the event loop's thread, never while the
        # ledger thread uses the connection (see _run_on_loop).
        db = await _connection(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            await db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA wal_autocheckpoint = 0")
            await db.execute(f"PRAGMA synchronous = {self.synchronous}")
            await self._migrate(db)
            # From here on, waits for another process's write lock are begin_write's.
            await db.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            await db.close()
            raise
        return db

    def _refuse_a_shared_filesystem(self) -> None:
        kind = None if self.allow_shared_filesystem else filesystem_of(self.path.parent)
        if kind in SHARED_FILESYSTEMS:
            raise LedgerError(
                f"ledger {str(self.path)!r} is on a {kind} filesystem, which other hosts can mount:"
                " SQLite's locks are one host's, so two hosts could both send one write. Keep the file"
                " on a local disk, or point every host at one PostgreSQL ledger (a postgresql:// DSN)."
                " A share that only this host uses: SQLiteLedger(..., allow_shared_filesystem=True),"
                " or the command line's --allow-shared-filesystem"
            )

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version >= MOVED:
                raise LedgerError(
                    f"ledger {str(self.path)!r} was moved to PostgreSQL (shakesco-async ledger"
                    " move-to-postgres): its open entries are settled there now. The file is otherwise"
                    f" intact; `PRAGMA user_version = {version - MOVED}` makes it a ledger again"
                )
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
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        for name in ("_writer", "_reader"):
            db = getattr(self, name)
            if db is not None:
                setattr(self, name, None)
                await db.close()

    async def _read(self, sql: str, args: Sequence[Any]) -> list[Any]:
        await self.open()
        assert self._reader is not None
        last = self._last_queued
        if last is not None and not last.done():
            # Read your writes: see every operation queued before this read (batches are FIFO).
            await asyncio.wait([last])
        return list(await self._reader.execute_fetchall(sql, args))

    # -- group commit ----------------------------------------------------------------------------
    @overload
    async def _submit(self, op: Begin) -> Begun: ...
    @overload
    async def _submit(self, op: Settle) -> bool: ...
    @overload
    async def _submit(self, op: Lease, *, durable: bool = True) -> list[tuple[LedgerEntry | None, bool]]: ...
    @overload
    async def _submit(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T: ...
    async def _submit(self, op: Op, *, durable: bool = True) -> Any:
        """Run ``op`` inside the next transaction; return once that transaction is committed.

        ``durable=False`` marks an operation whose loss in a power cut is harmless (leases,
        claims, queued outcomes): a batch of only such operations commits without an fsync.
        Later durable commits still carry it to disk, in order.
        """
        return await self._submit_now(op, durable=durable)

    def _submit_now(self, op: Op, *, durable: bool = True) -> Awaitable[Any]:
        """``_submit``, but queued at the call when the ledger is open, not when first awaited.

        So the operation joins the batch being gathered (a write's intent lands in the same
        commit as the last write's outcome), and its future, which a cancelled caller stops
        waiting for, still tells what it did.
        """
        if self._reader is not None:
            return self._enqueue(op, durable=durable)
        return self._open_and_enqueue(op, durable)

    async def _open_and_enqueue(self, op: Op, durable: bool) -> Any:
        await self.open()
        return await self._enqueue(op, durable=durable)

    def _enqueue(self, op: Op, *, durable: bool = True) -> asyncio.Future[Any]:
        """Queue ``op`` for the next transaction, behind everything queued before it."""
        if self.business == ANY_BUSINESS:
            raise LedgerError("this ledger view spans every business and is read-only")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((op, future, durable))
        if self._gathering is None:
            self._gathering = loop.create_future()
        self._last_queued = self._gathering
        if self._flusher is None or self._flusher.done():
            # Started on the loop's next turn even where the loop's task factory starts tasks
            # eagerly: then everything queued in this turn shares one commit (an eager flusher
            # would commit, and fsync, each operation alone).
            self._flusher = asyncio.Task(self._flush())
        return future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            gathered, self._gathering = self._gathering, None
            try:
                await self._take_turn_and_commit(batch)
            finally:
                if gathered is not None and not gathered.done():
                    gathered.set_result(None)

    async def _take_turn_and_commit(self, batch: list[tuple[Op, asyncio.Future[Any], bool]]) -> None:
        try:
            if self._turn.locked():  # an application transaction has it (free, it is taken at once)
                async with asyncio.timeout(WRITE_LOCK_WAIT):
                    await self._turn.acquire()
            else:
                await self._turn.acquire()
        except TimeoutError:
            # An application transaction of this process's holds the file (a guarded call
            # made inside ``transaction``, say, waiting on itself): fail, not hang.
            _fail(batch, LedgerError(_TURN_TIMEOUT))
            return
        try:
            await self._commit(batch)
        finally:
            self._turn.release()

    async def _commit(self, batch: list[tuple[Op, asyncio.Future[Any], bool]]) -> None:
        assert self._writer is not None
        if (gone := self._file_gone()) is not None:
            await self._rescue_journal()
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(gone)
            return
        ops = [op for op, _, _ in batch]
        begins = [op for op in ops if isinstance(op, Begin)]
        if begins:
            self._one_at_a_time = all(op.alone for op in begins)
        switch: str | None = None
        if self.synchronous == "FULL":
            # Switching the setting is a statement each way, the second on the path of the
            # next write's intent. While writes come one at a time, the outcomes queued
            # between them are committed durably instead: on the ledger thread, while their
            # caller's next write reads or waits on the network.
            keep = self._one_at_a_time and self._synchronous_now == "FULL"
            switch = "FULL" if keep or any(durable for _, _, durable in batch) else "NORMAL"
        fsync = switch == "FULL"
        # The pragma is a statement of its own: issue it only when the setting changes.
        pragma, self._synchronous_now = (None if switch == self._synchronous_now else switch), switch
        # Checkpoints are ours to schedule (autocheckpoint is off), so that a commit run on
        # the event loop's thread never turns into one.
        # Weighted so that both many small batches and a few large ones keep the WAL to a
        # few MB, as SQLite's own autocheckpoint would: a large WAL slows every read.
        self._since_checkpoint += 4 + len(batch)
        checkpoint = self._since_checkpoint >= _CHECKPOINT_EVERY
        if checkpoint:
            self._since_checkpoint = 0
        # The intent of a write made while its caller has no other in flight (``alone``),
        # alone in needing the disk, commits on the loop's thread when fsyncs are cheap here:
        # the loop would only wait for it, and the two hops to the ledger thread cost about
        # half an fsync. With other writes in flight their answers would wait behind the
        # fsync instead; a slow disk keeps it off too.
        durable_ops = [op for op, _, durable in batch if durable]
        inline = (
            fsync
            and not checkpoint
            and self._durable_cost < _INLINE_COMMIT_MAX
            and len(durable_ops) == 1
            and isinstance(durable_ops[0], Begin)
            and durable_ops[0].alone
        )
        later = None if inline or not fsync else deferrable(ops, [durable for _, _, durable in batch])
        try:
            if is_set_wise(ops) and (inline or not (fsync or checkpoint)):
                outcomes = await self._run_on_loop(ops, pragma, fsync=fsync)
            elif later is not None:
                first = [queued for queued, defer in zip(batch, later, strict=True) if not defer]
                then = [queued for queued, defer in zip(batch, later, strict=True) if defer]
                await self._run_split(first, then, pragma, checkpoint=checkpoint)
                return
            else:
                outcomes = await self._run_on_thread(ops, pragma, checkpoint=checkpoint, timed=fsync and not checkpoint)
        except BaseException as exc:
            self._synchronous_now = None  # unknown after a failure: set it again next time
            # The whole transaction failed or was interrupted: nothing in it is recorded, and
            # every caller waiting on it must hear so (an unresolved future would hang them).
            error = LedgerError(f"ledger write failed: {type(exc).__name__}: {exc}")
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        _resolve(batch, outcomes)

    async def _run_split(self, first: Batch, then: Batch, synchronous: str | None, *, checkpoint: bool) -> None:
        """Two transactions: ``first`` durably, its callers resumed from the ledger thread as
        soon as it commits; then, once they have had their turn on the loop (their requests
        leave), ``then`` (outcomes no caller waits for, see ``deferrable``) without an fsync,
        carried to disk by the next durable commit, with the checkpoint if one is due.
        Raises only if ``first`` failed: whatever happens to ``then`` is told to its own
        callers, and a cancellation fails only what was not committed."""
        loop = asyncio.get_running_loop()
        told: list[Any] = []  # each transaction's outcomes, as it ends

        def intents(raw: sqlite3.Connection) -> None:
            done = run_batch(raw, [op for op, _, _ in first], synchronous=synchronous, timed=self._note_durable)
            told.append(done)
            loop.call_soon_threadsafe(_resolve, first, done)  # not waiting for this flush's turn

        def outcomes(raw: sqlite3.Connection) -> None:
            try:
                told.append(run_batch(raw, [op for op, _, _ in then], synchronous="NORMAL", checkpoint=checkpoint))
            except Exception as exc:  # ``first`` is committed: its callers must not hear of this
                told.append(exc)

        try:
            await self._on_thread(intents)
            # The interpreter is one: the outcomes' Python on the ledger thread would slow the
            # requests the resumed callers are sending. Their wake-ups take two turns (a future,
            # then the task awaiting it through a shield); the outcomes wait behind them.
            for _ in range(_CALLERS_TURNS):
                await asyncio.sleep(0)
            await self._on_thread(outcomes)
        finally:
            # Each caller hears what its own transaction did, also when the flush is cancelled
            # (then ``_commit`` fails whatever is still waiting: a transaction that never ran).
            if told:
                _resolve(first, told[0])
            if len(told) > 1:
                self._told(then, told[1])

    async def _on_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the ledger thread; if the caller is cancelled, still waited for."""
        assert self._writer is not None
        work = asyncio.ensure_future(in_connection_thread(self._writer, fn))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])  # the thread owns the connection until it is done
            raise

    def _told(self, then: Batch, later: list[Any] | Exception) -> None:
        """Tell the outcomes of a split batch's second transaction (see ``_run_split``)."""
        if isinstance(later, Exception):
            self._synchronous_now = None
            _fail(then, LedgerError(f"ledger write failed: {type(later).__name__}: {later}"))
            return
        self._synchronous_now = "NORMAL"
        _resolve(then, later)

    async def _run_on_loop(self, ops: list[Op], synchronous: str | None, *, fsync: bool) -> list[Any]:
        """A batch of records whose commit needs no fsync, or a lone durable one on a fast
        disk: statements and commit on the event loop's thread.

        Every hop to the ledger thread waits for a busy event loop twice, to be picked up and
        to be answered, and those waits, not the few statements of a record batch, were
        most of its time. A commit with ``synchronous=NORMAL`` in WAL mode does not fsync
        (checkpoints, which do, are run only on the thread).
        """
        assert self._writer is not None
        raw: sqlite3.Connection = self._writer._conn  # the connection the thread hook also relies on
        set_synchronous(raw, synchronous)
        if not try_begin(raw):
            # Another connection holds the file's write lock (another process, or the
            # application's own transactions on this file): the whole batch goes to the
            # thread, which waits for the lock and then commits without a hop back in
            # between, holding the lock the least time it can.
            return await self._run_on_thread(ops, None, checkpoint=False, timed=False)
        try:
            outcomes = run_ops(raw, ops)
            if not raw.in_transaction:  # a lone record failed: nothing to commit
                return outcomes
            started = time.perf_counter()
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise
        if fsync:
            self._note_durable(time.perf_counter() - started)
        return outcomes

    async def _run_on_thread(
        self, ops: list[Op], synchronous: str | None, *, checkpoint: bool, timed: bool
    ) -> list[Any]:
        """The whole batch, statements and commit, on the ledger thread in one hop.

        A batch that must wait for the disk (or for another connection's write lock) pays
        the hop anyway; its statements ride along, and the event loop goes on answering
        requests meanwhile instead of running them. ``timed``: the commit's own time feeds
        the estimate of what a durable commit costs here.
        """
        note = self._note_durable if timed else None

        def batch(raw: sqlite3.Connection) -> list[Any]:
            return run_batch(raw, ops, synchronous=synchronous, checkpoint=checkpoint, timed=note)

        return await self._on_thread(batch)

    def _file_gone(self) -> LedgerError | None:
        """An error if the file at the ledger's path is no longer the one this process opened.

        SQLite goes on writing to a file deleted or replaced under it (a clean-up, a restore
        of a copy): every record would then be lost to the next process, which would open
        an empty or older ledger and send again writes already sent. So from then on
        nothing is recorded, and so nothing sent.
        """
        for path, suffix, opened in self._watched:
            if _id_or_none(path) == opened:
                continue
            if not suffix:
                return LedgerError(
                    f"ledger file {str(self.path)!r} was deleted or replaced while this process had it open:"
                    " nothing more is recorded or sent. Put the file back, or restart the process"
                )
            return LedgerError(
                f"ledger file {str(self.path)!r} lost its {suffix} file while this process had it open:"
                " nothing more is recorded or sent; what it held was written into the ledger file"
                " if no other process had opened it since. Restart the process"
            )
        return None

    def _journal(self, suffix: str) -> Path:
        return Path(f"{self.path}{suffix}")

    def _watch(self) -> tuple[tuple[str, str, tuple[int, int]], ...]:
        """The files ``_file_gone`` checks: the ledger's, and its -wal and -shm as opened."""
        assert self._file_id is not None
        watched = [(str(self.path), "", self._file_id)]
        for suffix in _JOURNAL:
            path = str(self._journal(suffix))
            if (opened := _id_or_none(path)) is not None:
                watched.append((path, suffix, opened))
        return tuple(watched)

    async def _rescue_journal(self) -> None:
        """Once: write what this process's view of a deleted -wal holds into the ledger file.

        Its entries (sent writes among them) are in no other file, and would be lost to
        the next process, which would send them again. Only while no other process has
        opened the ledger since (it would have made a -wal of its own): two -wal files for
        one database cannot both be checkpointed.
        """
        if self._rescued or self._writer is None or _id_or_none(self.path) != self._file_id:
            return
        self._rescued = True
        if any(self._journal(suffix).exists() for suffix in _JOURNAL):
            log.error(
                "ledger %s: its -wal or -shm was replaced; its entries since the last checkpoint stay there", self.path
            )
            return
        try:
            await in_connection_thread(self._writer, lambda raw: raw.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        except (sqlite3.Error, OSError) as exc:
            log.error("ledger %s: could not save its deleted -wal into the ledger file: %s", self.path, exc)

    def _note_durable(self, seconds: float) -> None:
        # A moving average of the disk's own cost (the commit alone, no hops): an estimate a
        # busy loop cannot inflate, so a fast disk keeps lone commits inline under load too.
        self._durable_cost += (seconds - self._durable_cost) / 8

    # -- leases ----------------------------------------------------------------------------------
    def _try_lease(self, db: sqlite3.Connection, customers: Sequence[str], owner: str, ttl: float) -> float | None:
        if not customers:
            return None
        now = clock.now()
        busy = [
            end.wall_end(now)
            for holder, end in lease_rows.held(db, self.business, customers, now).values()
            if holder != owner and end.lasts_past(now, now)
        ]
        if busy:
            return max(busy)
        until = LeaseEnd.after(now, ttl)
        lease_rows.take(db, [(self.business, c, owner, until) for c in customers])
        return None

    def _release(self, db: sqlite3.Connection, customers: Sequence[str], owner: str) -> None:
        lease_rows.give_back(db, [(self.business, c, owner) for c in customers], clock.now())

    def acquire(self, customers: Sequence[str], *, owner: str, lease_ttl: float) -> Awaitable[float | None]:
        return self._submit_now(lambda db: self._try_lease(db, customers, owner, lease_ttl), durable=False)

    def lease_entries(
        self, wanted: Sequence[tuple[LedgerEntry, str]], *, lease_ttl: float
    ) -> Awaitable[list[tuple[LedgerEntry | None, bool]]]:
        return self._submit_now(Lease(self.business, wanted, lease_ttl), durable=False)

    async def release(self, customers: Sequence[str], *, owner: str) -> None:
        if customers:
            await self._submit(lambda db: self._release(db, customers, owner), durable=False)

    async def renew(self, customers: Sequence[str], *, owner: str, lease_ttl: float) -> bool:
        names = sorted(set(customers))

        def op(db: sqlite3.Connection) -> None:
            # Not acquire: that would take back one another owner held and gave up meanwhile.
            _renew_held(db, self.business, names, owner, LeaseEnd.after(clock.now(), lease_ttl))

        try:
            await self._submit(op, durable=False)
        except LeaseLost:
            return False
        return True

    # -- the write path ----------------------------------------------------------------------------
    def _open_entries_sql(self, customers: Sequence[str], exclude: str) -> tuple[str, tuple[Any, ...]]:
        scope, args = self._scope
        sql = open_entries_sql(scope, len(customers)).replace(" ORDER BY", " AND key != ? ORDER BY")
        return sql, (*args, *_OPEN, *args, *customers, exclude)

    def begin(
        self,
        intent: Intent,
        *,
        owner: str,
        lease_ttl: float,
        snapshot: dict[str, Any] | None = None,
        fence: Fence | None = None,
        in_flight: float | None = None,
        adopt: bool = False,
        on_leased: Callable[[], None] | None = None,  # leased and recorded in one commit: not called
        alone: bool = False,
    ) -> Awaitable[Begun]:
        op = Begin(self.business, intent, owner, lease_ttl, snapshot, fence, in_flight, adopt, alone)
        return self._submit_now(op)

    async def open_entries(self, customers: Sequence[str], *, exclude: str) -> list[LedgerEntry]:
        if not customers:
            return []
        sql, params = self._open_entries_sql(customers, exclude)
        return [_entry(row) for row in await self._read(sql, params)]

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
        names = sorted(set(customers))

        def op(db: sqlite3.Connection) -> None:
            moment = clock.now()
            now = moment.wall
            _renew_held(db, self.business, names, owner, LeaseEnd.after(moment, lease_ttl))
            marked = db.execute(
                "UPDATE entries SET state = ?, snapshot = ?, attempts = attempts + ?, updated_at = ?, in_flight = ?"
                f" WHERE business = ? AND key = ? AND state IN ({_marks(len(SENDABLE_STATES))})",
                (
                    EntryState.SENDING.value,
                    _dumps(snapshot),
                    int(attempt),
                    now,
                    in_flight,
                    self.business,
                    key,
                    *(state.value for state in SENDABLE_STATES),
                ),
            )
            if marked.rowcount != 1:
                raise _not_sendable(key)
            mark_links(db, [(self.business, key, EntryState.SENDING.value)])

        await self._submit(op)

    async def settle(self, key: str, move: Settlement) -> bool:
        state = move.state
        record = Settle(
            self.business,
            key,
            state,
            result=move.result,
            error=move.error,
            reason=move.reason,
            release=move.release,
            owner=move.owner,
            expect=allowed_moves(state, move.expect),
            drop_snapshot=move.drop_snapshot,
        )
        if not move.wait and self._writer is not None:
            # Later operations queue behind this one, so they see it; a failure leaves the
            # entry open for reconcile to verify, which is safe, so it is logged, not raised.
            self._enqueue(record, durable=False).add_done_callback(partial(self._queued_settled, key, move))
            return True
        moved: bool = await self._submit(record)
        if moved:
            self._settled(key, move)
        elif move.expect is None:
            await self._refuse_forbidden(key, state)
        return moved

    def _queued_settled(self, key: str, move: Settlement, queued: asyncio.Future[Any]) -> None:
        """A queued settle committed, or failed: wake the key's watchers, or log it."""
        if _moved(queued):
            self._settled(key, move)
        else:
            _log_failure(key, move.state, queued)

    def staging_kind(self, conn: object) -> str:
        kind = connection_kind(conn)
        if kind not in ("sqlite3", "aiosqlite"):
            raise ConfigurationError(
                "a SQLite ledger stages writes through an sqlite3 or aiosqlite connection to its own file"
            )
        return kind

    @contextlib.asynccontextmanager
    async def transaction(self, conn: object) -> AsyncIterator[Stager]:
        """As ``Ledger.transaction``, taking turns on the file's one write lock with this
        ledger's own commits (in this process): neither waits in SQLite's busy handler,
        whose sleeps grow to milliseconds, while the other holds the lock. The writes staged
        in it are recorded by the step that commits it: the lock is held one hop less."""
        self.staging_kind(conn)
        await self.open()  # before the transaction: opening may write the schema
        self._check_stageable()
        intents: list[Intent] = []

        async def record(intent: Intent) -> None:
            intents.append(intent)

        # The application's transactions queue among themselves first: in the turn's queue
        # there is then at most one of them, and the ledger's next commit goes after it,
        # not after every transaction waiting.
        async with self._app_turn, self._turn:
            try:
                await begin_immediate(conn, lock_wait=WRITE_LOCK_WAIT)
            except Exception as exc:
                raise cannot_begin(exc) from exc
            try:
                yield record
                await self._stage_step(conn, intents, commit=True)
            except BaseException:
                await rollback(conn)
                raise

    async def stage(self, conn: object, intent: Intent) -> None:
        self._check_stageable()
        self.staging_kind(conn)
        await self._stage_step(conn, [intent], commit=False)

    def _check_stageable(self) -> None:
        if self.business == ANY_BUSINESS:
            raise LedgerError("this ledger view spans every business and is read-only")
        if self._reader is None:
            # Opening may write (the schema), and the application's transaction may hold the
            # file's one write lock already: the two would wait on each other.
            raise ConfigurationError(
                "open the ledger before the application's transaction (await client.ledger.open(), e.g. at"
                " startup): opening it inside the transaction would wait for the transaction's own lock"
            )

    async def _stage_step(self, conn: object, intents: Sequence[Intent], *, commit: bool) -> None:
        """Record ``intents`` as staged through ``conn`` (and, with ``commit``, commit its
        transaction) in one step: one hop to an aiosqlite connection's thread. A key staged
        before with other parameters raises ``IdempotencyConflict``, committing nothing."""
        now = CLOCK.time()
        staged = [
            (intent, _staging_statements(len(intent.customers)), self._staging_values(intent, now))
            for intent in intents
        ]

        def step(raw: sqlite3.Connection) -> None:
            if staged:
                main = raw.execute("PRAGMA database_list").fetchone()
                if main is None or not main[2] or not _same_file(main[2], self.path):
                    raise ConfigurationError(
                        f"stage through a connection to the ledger's own file ({self.path}): the application's"
                        " tables and the ledger must share it, so that one commit records both"
                    )
            for intent, statements, values in staged:
                check_found(stage_sqlite(raw, statements, values), intent)
            if commit:
                raw.execute("COMMIT")

        try:
            if isinstance(conn, sqlite3.Connection):
                step(conn)
            else:  # aiosqlite: one hop to its thread, not two or three per statement
                await in_connection_thread(cast(aiosqlite.Connection, conn), step)
        except (ConfigurationError, IdempotencyConflict):
            raise
        except Exception as exc:  # the application's driver: its own error types
            if commit:  # ``transaction`` rolls it back: nothing of it is recorded
                raise LedgerError(
                    f"could not record the staged writes and commit ({exc}); the transaction was rolled back"
                ) from exc
            raise staging_failed(exc) from exc

    def _staging_values(self, intent: Intent, now: float) -> dict[str, object]:
        return {
            "business": self.business,
            "key": intent.key,
            "operation": intent.operation,
            "params": _dumps(intent.params),
            "digest": intent.digest,
            "customers": _dumps(list(intent.customers)),
            "source": intent.key_source.value,
            "now": now,
            **{f"c{n}": customer for n, customer in enumerate(intent.customers)},
        }

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
        # Stored times are floats, entries' are rounded to the microsecond: a microsecond's
        # slack keeps the entry ``after`` came from, which its own claim then keeps out.
        since = -math.inf if after is None else after.timestamp() - 1e-6

        def op(db: sqlite3.Connection) -> list[LedgerEntry]:
            now = CLOCK.time()
            if after is None:  # a pass begins: what reconcilers that have exited claimed is free
                _free_claims_of_exited(db, self.business, now)
            wanted = -1 if limit is None else limit
            # One statement picks and marks them (SQLite has one writer at a time, so this is
            # exclusive); RETURNING gives no order, so they are put back in age order here.
            args = {
                "business": self.business,
                "since": since,
                "before": now - older_than,
                "now": now,
                "owner": owner,
                "wanted": wanted,
                "until": now + ttl,
                "holder": holder_for(owner),
                # One pick per open state; those not wanted look for a state no entry has.
                **{f"state{n}": state for n, state in enumerate(_wanted_states(states))},
            }
            rows = db.execute(_CLAIM_SQL, args).fetchall()
            rows.sort(key=_age_order)
            return [_entry(row) for row in rows]

        return await self._submit(op, durable=False)

    async def unclaim(self, owner: str, keys: Sequence[str]) -> None:
        def op(db: sqlite3.Connection) -> None:
            for start in range(0, len(keys), _KEYS_PER_STATEMENT):
                chunk = keys[start : start + _KEYS_PER_STATEMENT]
                db.execute(
                    "UPDATE entries SET claimed_by = NULL, claimed_until = NULL, claimed_holder = NULL"
                    f" WHERE business = ? AND claimed_by = ? AND key IN ({','.join('?' * len(chunk))})",
                    (self.business, owner, *chunk),
                )

        if keys:
            await self._submit(op, durable=False)

    async def prune(self, *, older_than: float) -> int:
        cutoff = CLOCK.time() - seconds("older_than", older_than)
        final = sorted(state.value for state in FINAL_STATES)

        def op(db: sqlite3.Connection) -> int:
            keys = [
                key
                for (key,) in db.execute(
                    f"SELECT key FROM entries WHERE business = ? AND state IN ({','.join('?' * len(final))})"
                    " AND created_at < ? AND updated_at < ? LIMIT ?",
                    (self.business, *final, cutoff, cutoff, _KEYS_PER_STATEMENT),
                )
            ]
            if keys:
                marks = ",".join("?" * len(keys))
                db.execute(
                    f"DELETE FROM entry_customers WHERE business = ? AND key IN ({marks})", (self.business, *keys)
                )
                db.execute(f"DELETE FROM entries WHERE business = ? AND key IN ({marks})", (self.business, *keys))
            return len(keys)

        # A batch at a time, each its own commit: other writers wait for one batch, not all.
        pruned = 0
        while (deleted := await self._submit(op)) > 0:
            pruned += deleted
        return pruned

    # -- inspection ------------------------------------------------------------------------------
    async def get(self, key: str) -> LedgerEntry | None:
        check_lookup(key=key)
        scope, args = self._scope
        rows = await self._read(f"SELECT {_COLUMNS} FROM entries WHERE {scope} AND key = ?", (*args, key))
        return _entry(rows[0]) if rows else None

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
        scope, scope_args = self._scope
        sql = f"SELECT business, {_COLUMNS} FROM entries WHERE {scope}"
        args: list[Any] = [*scope_args]
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        if states is not None:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(s.value for s in states)
        if customer is not None:
            sql += f" AND key IN (SELECT key FROM entry_customers WHERE {scope} AND customer = ?)"
            args.extend((*scope_args, customer))
        if older_than is not None:
            sql += " AND updated_at <= ?"
            args.append(CLOCK.time() - older_than)
        sql += " ORDER BY created_at DESC, key DESC" if newest else " ORDER BY created_at, key"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [(row[0], _entry(row[1:])) for row in await self._read(sql, args)]

    async def counts(self) -> dict[EntryState, int]:
        scope, args = self._scope
        rows = await self._read(f"SELECT state, COUNT(*) FROM entries WHERE {scope} GROUP BY state", args)
        found = {EntryState(state): n for state, n in rows}
        return {state: found.get(state, 0) for state in EntryState}


_BUSY_MS = 10000


_JOURNAL = ("-wal", "-shm")


def _id_or_none(path: str | Path) -> tuple[int, int] | None:
    try:
        return _file_id(path)
    except OSError:
        return None


def _file_id(path: str | Path) -> tuple[int, int]:
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino)


def _renew_held(db: sqlite3.Connection, business: str, names: Sequence[str], owner: str, end: LeaseEnd) -> None:
    """Extend ``owner``'s leases on ``names`` to ``end``, or raise ``LeaseLost`` (the op's
    savepoint then undoes the others). A row still naming this owner, even lapsed, means
    nobody else held the customer since; one naming another owner means it was lost."""
    if lease_rows.renew(db, business, names, owner, end) != len(names):
        raise LeaseLost(
            f"the lease on customers {', '.join(names)} lapsed and another process took one; nothing was sent"
        )


def _free_claims_of_exited(db: sqlite3.Connection, business: str, now: float) -> None:
    """End the claims of reconcilers whose process has exited (read from open entries only)."""
    states = ",".join("?" * len(_OPEN_ALL))
    rows = db.execute(
        f"SELECT DISTINCT claimed_by, claimed_holder FROM entries WHERE business = ? AND state IN ({states})"
        " AND claimed_until >= ? AND claimed_holder IS NOT NULL",
        (business, *_OPEN_ALL, now),
    ).fetchall()
    db.executemany(
        f"UPDATE entries SET claimed_until = NULL WHERE business = ? AND state IN ({states}) AND claimed_by = ?",
        [(business, *_OPEN_ALL, by) for by, holder in rows if holder_exited(holder, by)],
    )


@functools.cache
def _staging_statements(customers: int) -> Statements:
    links = tuple(
        f"INSERT OR IGNORE INTO entry_customers (business, customer, key) VALUES (:business, :c{n}, :key)"
        for n in range(customers)
    )
    return Statements(
        insert=(
            "INSERT OR IGNORE INTO entries (business, key, operation, params, params_digest, customers, key_source,"
            " state, attempts, created_at, updated_at) VALUES (:business, :key, :operation, :params, :digest,"
            f" :customers, :source, '{EntryState.STAGED.value}', 0, :now, :now)",
            *links,
        ),
        existing="SELECT operation, params_digest FROM entries WHERE business = :business AND key = :key",
    )


def _same_file(name: str, path: Path) -> bool:
    try:
        return os.path.samefile(name, path)
    except OSError:
        return False


def _wanted_states(states: Sequence[EntryState]) -> list[str]:
    wanted = [s.value for s in states]
    unknown = set(wanted) - set(_OPEN_ALL)
    if unknown or not wanted:
        raise ValueError(f"only open states can be claimed, not {sorted(unknown) or 'none'}")
    return [s if s in wanted else "-" for s in _OPEN_ALL]


def _age_order(row: tuple[Any, ...]) -> tuple[float, str]:
    return (row[_CREATED_AT], row[0])


_CREATED_AT = [c.strip() for c in _COLUMNS.split(",")].index("created_at")
# Each open state is read in its index's order, so a page stops after its own entries
# instead of sorting every open one; the three are merged for the oldest.
# Named parameters: Python 3.12.0-3.12.3 warn about numbered ones (?1) bound from a sequence.
_CLAIM_PICK = (
    "SELECT key, created_at FROM (SELECT key, created_at FROM entries WHERE business = :business AND state = :{state}"
    " AND created_at >= :since AND updated_at <= :before"
    " AND (claimed_until IS NULL OR claimed_until < :now OR claimed_by = :owner)"
    " ORDER BY created_at, key LIMIT :wanted)"
)
_CLAIM_SQL = (
    "UPDATE entries SET claimed_by = :owner, claimed_until = :until, claimed_holder = :holder"
    " WHERE business = :business AND key IN (SELECT key"
    " FROM ("
    + " UNION ALL ".join(_CLAIM_PICK.format(state=f"state{n}") for n in range(len(_OPEN_ALL)))
    + f") ORDER BY created_at, key LIMIT :wanted) RETURNING {_COLUMNS}"
)
_KEYS_PER_STATEMENT = 400  # bound parameters, well under SQLite's oldest limit (999)
_INLINE_COMMIT_MAX = 0.001  # seconds: a durable commit costlier than this never blocks the loop
_CHECKPOINT_EVERY = 1000  # weight (4 per batch + 1 per operation) between WAL checkpoints


Batch = Sequence[tuple[Op, "asyncio.Future[Any]", bool]]
"""Queued operations: each with its caller's future, and whether it must be durable."""

_CALLERS_TURNS = 2
"""Turns of the event loop a split batch's outcomes wait for, after its intents' callers
were resumed (see ``_run_split``)."""

_TURN_TIMEOUT = (
    "the ledger could not write: an application transaction in this process has held the ledger's file"
    f" for {WRITE_LOCK_WAIT:.0f}s (a guarded call made inside client.transaction() waits for its end)"
)


def _resolve(batch: Batch, outcomes: Sequence[tuple[Any, BaseException | None]]) -> None:
    """Tell each operation's caller what its transaction did (unless it stopped waiting)."""
    for (_, future, _), (result, failure) in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if failure is None:
            future.set_result(result)
        elif isinstance(failure, sqlite3.Error):
            future.set_exception(LedgerError(f"ledger write failed: {failure}"))
        else:
            future.set_exception(failure)


def _fail(batch: Batch, error: LedgerError) -> None:
    for _, future, _ in batch:
        if not future.done():
            future.set_exception(error)


def _moved(queued: asyncio.Future[Any]) -> bool:
    """Whether a queued settle's commit moved its entry."""
    return not queued.cancelled() and queued.exception() is None and queued.result() is True


def _log_failure(key: str, state: EntryState, future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error(
            "write %s: its queued outcome (%s) failed to commit (%s); the entry stays open for"
            " verification, and its leases lapse",
            key,
            state.value,
            exc,
        )
