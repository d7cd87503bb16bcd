"""One group-commit batch of the SQLite ledger: one transaction for many operations.

The operations of the hot paths are records: ``Begin`` and ``Settle``, which every
guarded write makes, and ``Lease``, which reconcile makes per wave. A run of them is
done with a few set-wise statements rather than several per write, short enough for the
event loop's own thread when the commit needs no fsync (see ``SQLiteLedger._commit``).
Any other operation is a plain function, run on the ledger thread. If a set-wise step
fails, its run is undone and replayed one operation at a time, so one bad operation
fails alone; a record alone in its transaction undoes the transaction instead.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from .._timing import CLOCK, LEASE_MEMORY
from . import _clock as clock
from . import _sqlite_leases as lease_rows
from ._base import Begun, Fence
from ._clock import LeaseEnd
from ._entry import FINAL_STATES, UNSENT, EntryState, Intent, KeySource, LedgerEntry, adoptable
from ._sqlite_rows import COLUMNS, OPEN, chunks, dumps, entry_from_row, marks, timestamp

__all__ = [
    "LEASE_MEMORY",
    "WRITE_LOCK_WAIT",
    "Begin",
    "Lease",
    "Op",
    "Settle",
    "begin_write",
    "deferrable",
    "end_batch",
    "is_set_wise",
    "lease_many",
    "mark_links",
    "open_entries_sql",
    "run_batch",
    "run_ops",
    "set_synchronous",
    "try_begin",
]

WRITE_LOCK_WAIT = 10.0  # seconds a batch waits for another process's write transaction
_FIRST_PAUSE = 0.0002  # seconds between tries for the write lock, for the first ...
_EVEN_PAUSES_FOR = 1.0  # ... seconds of a wait


class Begin:
    """Record an intent and lease its customers (see ``Ledger.begin``)."""

    __slots__ = ("adopt", "alone", "business", "fence", "in_flight", "intent", "lease_ttl", "owner", "snapshot")

    def __init__(
        self,
        business: str,
        intent: Intent,
        owner: str,
        lease_ttl: float,
        snapshot: dict[str, Any] | None,
        fence: Fence | None = None,
        in_flight: float | None = None,
        adopt: bool = False,
        alone: bool = False,
    ) -> None:
        self.business = business
        self.intent = intent
        self.adopt = adopt
        self.alone = alone
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.snapshot = snapshot
        self.fence = fence
        self.in_flight = in_flight


class Settle:
    """Move an entry to a state (only from ``expect`` states, if given) and release leases."""

    __slots__ = (
        "_error",
        "_result",
        "at",
        "business",
        "drop_snapshot",
        "expect",
        "key",
        "owner",
        "reason",
        "release",
        "state",
    )

    def __init__(
        self,
        business: str,
        key: str,
        state: EntryState,
        *,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        reason: str | None,
        release: Sequence[str],
        owner: str | None,
        expect: Sequence[EntryState] | None = None,
        drop_snapshot: bool = False,
    ) -> None:
        self.business = business
        self.key = key
        self.state = state.value
        self._result, self._error, self.reason = result, error, reason
        self.at = CLOCK.time()  # when it was settled, not when its batch ran
        self.release = tuple(release) if owner is not None else ()
        self.owner = owner
        self.expect = None if expect is None else _values(tuple(expect))
        self.drop_snapshot = drop_snapshot

    @property
    def row(self) -> tuple[Any, ...]:
        """The UPDATE's parameters, made where the batch runs: an outcome queued without
        waiting costs its caller no JSON."""
        return (self.state, dumps(self._result), dumps(self._error), self.reason, self.at, self.business, self.key)


@functools.cache
def _values(states: tuple[EntryState, ...]) -> tuple[str, ...]:
    """A settle's allowed states as the sorted values its UPDATE binds (a few tables' worth)."""
    return tuple(sorted({s.value for s in states}))


class Lease:
    """Lease the customers of open entries for reconcile (see ``Ledger.lease_entries``)."""

    __slots__ = ("business", "ttl", "wanted")

    def __init__(self, business: str, wanted: Sequence[tuple[LedgerEntry, str]], ttl: float) -> None:
        self.business = business
        self.wanted = wanted
        self.ttl = ttl


Op = Callable[[sqlite3.Connection], Any] | Begin | Settle | Lease
Outcome = tuple[Any, BaseException | None]

_FINAL = frozenset(state.value for state in FINAL_STATES)
_LINKS_SQL = "UPDATE entry_customers SET open = ? WHERE business = ? AND key = ? AND open != ?"
_SETTLE_SQL = (
    "UPDATE entries SET state = ?, result = COALESCE(?, result), error = ?, reason = ?, updated_at = ?"
    " WHERE business = ? AND key = ?"
)


def run_batch(
    db: sqlite3.Connection,
    ops: Sequence[Op],
    *,
    synchronous: str | None = None,
    checkpoint: bool = False,
    timed: Callable[[float], None] | None = None,
) -> list[Outcome]:
    """Run ``ops`` in one transaction; each gets its result or its own exception.

    ``synchronous`` ("FULL" or "NORMAL") switches the connection's setting first;
    ``timed`` is told how long the commit alone took.
    """
    set_synchronous(db, synchronous)
    begin_write(db)
    try:
        outcomes = run_ops(db, ops)
        if not db.in_transaction:  # a lone record failed: nothing to commit
            return outcomes
        started = time.perf_counter()
        end_batch(db, checkpoint=checkpoint)
        if timed is not None:
            timed(time.perf_counter() - started)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return outcomes


def try_begin(db: sqlite3.Connection) -> bool:
    """Open the write transaction unless another process holds the write lock."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return False
        raise
    return True


def begin_write(db: sqlite3.Connection, wait: float = WRITE_LOCK_WAIT) -> None:
    """Open the write transaction, waiting up to ``wait`` seconds for another process.

    The writer connection has no busy timeout (so that ``try_begin`` never blocks the
    event loop without two pragmas around it); this is its busy handler, for the ledger
    thread only, backing off as SQLite's own does.
    """
    started = time.monotonic()
    pause = _FIRST_PAUSE
    while not try_begin(db):
        waited = time.monotonic() - started
        if waited >= wait:
            raise sqlite3.OperationalError(f"database is locked (waited {wait:.0f}s for another process)")
        time.sleep(pause)
        # Short, even pauses at first: an application committing transaction after transaction
        # on the same file (staged writes) leaves gaps of a fraction of a millisecond, which
        # pauses that double soon step over. Then backing off, as SQLite's own handler does.
        pause = _FIRST_PAUSE if waited < _EVEN_PAUSES_FOR else min(pause * 2, 0.05)


def end_batch(db: sqlite3.Connection, *, checkpoint: bool) -> None:
    """Commit; if due, first forget leases that ended long before any fence could ask
    about them, and after, move the WAL into the database without waiting for readers."""
    if checkpoint:
        lease_rows.forget_ended(db, clock.now(), LEASE_MEMORY)
    db.execute("COMMIT")
    if checkpoint:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def set_synchronous(db: sqlite3.Connection, synchronous: str | None) -> None:
    if synchronous is not None:
        db.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'FULL' else 'NORMAL'}")


def is_set_wise(ops: Sequence[Op]) -> bool:
    """Only records: a short run of statements on pages in memory."""
    return all(isinstance(op, Begin | Settle | Lease) for op in ops)


def deferrable(ops: Sequence[Op], durable: Sequence[bool]) -> list[bool] | None:
    """Which of a durable batch's operations may commit in a second transaction, after its
    callers have resumed: the outcomes queued without waiting (``durable`` False, leases
    named) that no intent of the batch could see. None when there are none, or when the
    batch is not all intents and outcomes.

    An intent sees an outcome through its key, or through the leases and customer links
    of the names both touch; an outcome queued twice for one key keeps its order. Any
    other outcome, and every intent, stays in the first transaction: in queue order, as
    ever. The rest were already the callers' to lose in a crash (reconcile verifies their
    entries, still ``sending``), so waiting one transaction longer changes nothing they
    were promised, and they leave the commit the callers wait for.
    """
    begins = [op for op in ops if isinstance(op, Begin)]
    if not begins or not all(isinstance(op, Begin | Settle) for op in ops):
        return None
    seen: set[str] = set()
    twice: set[str] = set()
    for op in ops:
        if isinstance(op, Settle):
            (twice if op.key in seen else seen).add(op.key)
    keys = {op.intent.key for op in begins} | twice
    names = {name for op in begins for name in op.intent.leases}  # its customers, or its key
    later = [
        isinstance(op, Settle)
        and not needs_disk
        and op.owner is not None
        and bool(op.release)
        and op.key not in keys
        and names.isdisjoint(op.release)
        for op, needs_disk in zip(ops, durable, strict=True)
    ]
    return later if any(later) else None


def run_ops(db: sqlite3.Connection, ops: Sequence[Op]) -> list[Outcome]:
    """The body of a batch, inside a transaction the caller opened and will end (unless it
    is no longer open: a lone record that failed rolled it back whole)."""
    if len(ops) == 1 and isinstance(ops[0], Begin | Settle):
        # Alone in its transaction, a record needs no savepoint (two statements, most of a
        # lone write's own time on a loop that was idle): failing, it undoes the transaction.
        try:
            return _apply_set(db, ops)
        except Exception as exc:
            db.execute("ROLLBACK")
            return [(None, exc)]
    outcomes: list[Outcome] = []
    i = 0
    while i < len(ops):
        if isinstance(ops[i], Begin | Settle):
            j = i
            while j < len(ops) and isinstance(ops[j], Begin | Settle):
                j += 1
            outcomes.extend(_run_set(db, ops[i:j]))
            i = j
        else:
            outcomes.append(_run_one(db, ops[i]))
            i += 1
    return outcomes


def _run_one(db: sqlite3.Connection, op: Op) -> Outcome:
    db.execute("SAVEPOINT op")
    try:
        if isinstance(op, Begin):
            result: Any = begin_many(db, [op])[0]
        elif isinstance(op, Settle):
            result = settle_many(db, [op])[0]
        elif isinstance(op, Lease):
            result = lease_many(db, op.business, op.wanted, op.ttl)
        else:
            result = op(db)
    except Exception as exc:
        db.execute("ROLLBACK TO op")
        db.execute("RELEASE op")
        return (None, exc)
    db.execute("RELEASE op")
    return (result, None)


def _run_set(db: sqlite3.Connection, run: Sequence[Op]) -> list[Outcome]:
    db.execute("SAVEPOINT run")
    try:
        outcomes = _apply_set(db, run)
    except Exception:
        db.execute("ROLLBACK TO run")
        db.execute("RELEASE run")
        return [_run_one(db, op) for op in run]
    db.execute("RELEASE run")
    return outcomes


def _apply_set(db: sqlite3.Connection, run: Sequence[Op]) -> list[Outcome]:
    # Settles first: a begin queued beside a settle cannot be waiting on it (the guard holds
    # each customer in-process until its settle is queued), so this order is one the
    # callers could have seen anyway.
    settles = [(n, op) for n, op in enumerate(run) if isinstance(op, Settle)]
    begins = [(n, op) for n, op in enumerate(run) if isinstance(op, Begin)]
    outcomes: list[Outcome] = [(None, None)] * len(run)
    if settles:
        for (n, _), moved in zip(settles, settle_many(db, [op for _, op in settles]), strict=True):
            outcomes[n] = (moved, None)
    if begins:
        for (n, _), begun in zip(begins, begin_many(db, [op for _, op in begins]), strict=True):
            outcomes[n] = (begun, None)
    return outcomes


def open_entries_sql(business_scope: str, customers: int) -> str:
    """Open entries (sending or in doubt, with a snapshot) on some customers, oldest first."""
    return (
        f"SELECT {COLUMNS} FROM entries WHERE {business_scope} AND state IN (?, ?) AND snapshot IS NOT NULL"
        " AND key IN (SELECT key FROM entry_customers"
        f" WHERE {business_scope} AND customer IN ({marks(customers)}) AND open = 1)"
        " ORDER BY updated_at, key"
    )


def settle_many(db: sqlite3.Connection, ops: Sequence[Settle]) -> list[bool]:
    """Apply each settle, as if one after another; True for each entry that moved."""
    if len({op.key for op in ops}) < len(ops):  # one key twice: keep their order exactly
        return [moved for op in ops for moved in settle_many(db, [op])]
    business = ops[0].business
    moved: list[bool] = []
    plain: list[tuple[Any, ...]] = []
    dropping: list[tuple[Any, ...]] = []
    if all(op.expect is None for op in ops):
        # Unconditional: every entry that exists moves, and the update counts them.
        for op in ops:
            (dropping if op.drop_snapshot else plain).append(op.row)
        changed = _update(db, plain, dropping)
        if changed == len(ops):
            moved = [True] * len(ops)
        else:
            present = _existing(db, business, [op.key for op in ops])
            moved = [op.key in present for op in ops]
    elif _update_if_all_move(db, ops):
        moved = [True] * len(ops)
    else:
        states: dict[str, str] = {}
        for chunk in chunks([op.key for op in ops]):
            sql = f"SELECT key, state FROM entries WHERE business = ? AND key IN ({marks(len(chunk))})"
            states.update(db.execute(sql, (business, *chunk)))
        for op in ops:
            now = states.get(op.key)
            moves = now is not None and (op.expect is None or now in op.expect)
            moved.append(moves)
            if moves:
                (dropping if op.drop_snapshot else plain).append(op.row)
        _update(db, plain, dropping)
    mark_links(db, [(op.business, op.key, op.state) for op, moves in zip(ops, moved, strict=True) if moves])
    released = [(op.business, name, op.owner) for op in ops if op.owner is not None for name in op.release]
    if released:
        lease_rows.give_back(db, released, clock.now())
    return moved


def mark_links(db: sqlite3.Connection, moved: Sequence[tuple[str, str, str]]) -> None:
    """Keep each moved entry's customer links open exactly while it is not final.

    The open-entry check before a write reads open links only; an entry can also leave a
    final state (a write whose lease lapsed records its timeout after a reconcile settled
    it), and must then be seen again.
    """
    rows = []
    for business, key, state in moved:
        is_open = state not in _FINAL
        rows.append((is_open, business, key, is_open))
    if rows:
        db.executemany(_LINKS_SQL, rows)


def _update_if_all_move(db: sqlite3.Connection, ops: Sequence[Settle]) -> bool:
    """Apply the settles with their state conditions in the UPDATEs themselves, and keep
    them only if every entry moved (the usual case); else undo them and return False.

    Saves looking up every entry's state first; which entry did not move is only worth
    finding out when one did not.
    """
    groups: dict[tuple[tuple[str, ...] | None, bool], list[tuple[Any, ...]]] = {}
    for op in ops:
        groups.setdefault((op.expect, op.drop_snapshot), []).append(
            op.row if op.expect is None else (*op.row, *op.expect)
        )
    # One entry changes all or nothing by itself: only several need a savepoint to undo
    # those that moved when one did not.
    undo = len(ops) > 1
    if undo:
        db.execute("SAVEPOINT settle")
    changed = 0
    for (expect, drop), rows in groups.items():
        sql = _SETTLE_SQL.replace(" WHERE", ", snapshot = NULL WHERE") if drop else _SETTLE_SQL
        if expect is not None:
            sql += f" AND state IN ({marks(len(expect))})"
        changed += db.executemany(sql, rows).rowcount
    if undo:
        if changed != len(ops):
            db.execute("ROLLBACK TO settle")
        db.execute("RELEASE settle")
    return changed == len(ops)


def _update(db: sqlite3.Connection, plain: list[tuple[Any, ...]], dropping: list[tuple[Any, ...]]) -> int:
    """Apply settle rows; the number of entries changed."""
    changed = 0
    if plain:
        changed += db.executemany(_SETTLE_SQL, plain).rowcount
    if dropping:
        changed += db.executemany(_SETTLE_SQL.replace(" WHERE", ", snapshot = NULL WHERE"), dropping).rowcount
    return changed


def _existing(db: sqlite3.Connection, business: str, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(keys):
        sql = f"SELECT key FROM entries WHERE business = ? AND key IN ({marks(len(chunk))})"
        found.update(key for (key,) in db.execute(sql, (business, *chunk)))
    return found


def begin_many(db: sqlite3.Connection, ops: Sequence[Begin]) -> list[Begun]:
    """Record each intent whose key is new and whose leases are free, as if one after another.

    A fenced snapshot is kept only if no other process leased these customers since the
    fence and none of them has an open entry; otherwise the entry starts ``recorded``. An
    ``adopt`` op takes an existing unsent entry of the same write as if it recorded it.
    """
    business = ops[0].business
    moment = clock.now()
    now = moment.wall
    found: dict[str, LedgerEntry | tuple[Any, ...]] = {}
    # A key the SDK made a moment ago (random, 128 bits) is new: no need to look it up. Were
    # it not, its insert would fail the run, and the one-at-a-time replay would fail it alone.
    chosen = [op.intent.key for op in ops if op.adopt or op.intent.key_source != KeySource.GENERATED]
    for chunk in chunks(chosen):
        sql = f"SELECT {COLUMNS} FROM entries WHERE business = ? AND key IN ({marks(len(chunk))})"
        found.update((row[0], row) for row in db.execute(sql, (business, *chunk)))
    held = lease_rows.held(db, business, [name for op in ops for name in op.intent.leases], moment)
    by_customer = _open_by_customer(db, business, [op for op in ops if op.adopt or op.intent.key not in found])

    results: list[Begun] = []
    leases: list[tuple[str, str, str, LeaseEnd]] = []
    rows: list[tuple[Any, ...]] = []
    marked: list[tuple[Any, ...]] = []
    links: list[tuple[str, str, str]] = []
    for op in ops:
        intent = op.intent
        existing = found.get(intent.key)
        adopted: LedgerEntry | None = None
        if existing is not None:
            adopted = existing if isinstance(existing, LedgerEntry) else entry_from_row(existing)
            if not (op.adopt and adoptable(adopted, intent)):
                results.append(Begun(adopted, created=False))
                continue
            if _older_unsent(db, business, adopted):
                # Owed writes go in staging order per customer, across processes too.
                results.append(Begun(None, created=False, busy_until=now))
                continue
        blocking = [
            held[n][1].wall_end(moment)
            for n in intent.leases
            if n in held and held[n][0] != op.owner and held[n][1].lasts_past(moment, moment)
        ]
        if blocking:
            results.append(Begun(None, created=False, busy_until=max(blocking)))
            continue
        others = tuple(
            sorted(
                {e.key: e for c in intent.customers for e in by_customer.get(c, ()) if e.key != intent.key}.values(),
                key=lambda e: (e.updated_at, e.key),
            )
        )
        snapshot = op.snapshot
        if op.fence is not None and (
            others or any(op.fence.crossed_by(*held[n], moment) for n in intent.leases if n in held)
        ):
            snapshot = None  # read while another process may have been writing: take it again
        until = LeaseEnd.after(moment, op.lease_ttl)
        for name in intent.leases:
            held[name] = (op.owner, until)
            leases.append((business, name, op.owner, until))
        at = timestamp(now)
        if adopted is not None:
            entry = adopted
            if snapshot is not None:
                marked.append(
                    (
                        EntryState.SENDING.value,
                        dumps(snapshot),
                        now,
                        op.in_flight,
                        business,
                        intent.key,
                        adopted.state.value,
                    )
                )
                entry = attrs.evolve(
                    adopted,
                    state=EntryState.SENDING,
                    attempts=adopted.attempts + 1,
                    snapshot=snapshot,
                    updated_at=at,
                    in_flight=op.in_flight,
                )
            found[intent.key] = entry
            results.append(Begun(entry, created=True, others=others))
            continue
        state, attempts = (EntryState.RECORDED, 0) if snapshot is None else (EntryState.SENDING, 1)
        rows.append(
            (
                business,
                intent.key,
                intent.operation,
                dumps(intent.params),
                intent.digest,
                dumps(list(intent.customers)),
                intent.key_source.value,
                state.value,
                attempts,
                dumps(snapshot),
                now,
                now,
                op.in_flight,
            )
        )
        links.extend((business, customer, intent.key) for customer in intent.customers)
        entry = LedgerEntry(
            key=intent.key,
            operation=intent.operation,
            params=intent.params,
            params_digest=intent.digest,
            customers=intent.customers,
            key_source=intent.key_source,
            state=state,
            attempts=attempts,
            created_at=at,
            updated_at=at,
            snapshot=snapshot,
            in_flight=op.in_flight,
        )
        found[intent.key] = entry
        results.append(Begun(entry, created=True, others=others))
    if leases:
        lease_rows.take(db, leases)
    if rows:
        db.executemany(
            f"INSERT INTO entries (business, {COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?)",
            rows,
        )
    if marked:
        # The row was read in this transaction: the state it had is the state it has.
        db.executemany(
            "UPDATE entries SET state = ?, attempts = attempts + 1, snapshot = ?, updated_at = ?,"
            " in_flight = ? WHERE business = ? AND key = ? AND state = ?",
            marked,
        )
    if links:
        db.executemany("INSERT OR IGNORE INTO entry_customers (business, customer, key) VALUES (?, ?, ?)", links)
    return results


def _older_unsent(db: sqlite3.Connection, business: str, entry: LedgerEntry) -> bool:
    """Whether a write on one of ``entry``'s customers, recorded before it (by more than the
    microsecond times are kept to), is still unsent."""
    if not entry.customers:
        return False
    sql = (
        "SELECT 1 FROM entry_customers c JOIN entries e ON e.business = c.business AND e.key = c.key"
        f" WHERE c.business = ? AND c.customer IN ({marks(len(entry.customers))}) AND c.open = 1"
        f" AND e.state IN ({marks(len(UNSENT))}) AND e.key != ? AND e.created_at < ? LIMIT 1"
    )
    args = (business, *entry.customers, *(s.value for s in UNSENT), entry.key, entry.created_at.timestamp() - 1e-6)
    return db.execute(sql, args).fetchone() is not None


def _open_by_customer(db: sqlite3.Connection, business: str, ops: Sequence[Begin]) -> dict[str, list[LedgerEntry]]:
    """The open entries (with a snapshot) on these intents' customers, by customer, in one query."""
    by_customer: dict[str, list[LedgerEntry]] = {}
    for chunk in chunks(sorted({c for op in ops for c in op.intent.customers})):
        for row in db.execute(open_entries_sql("business = ?", len(chunk)), (business, *OPEN, business, *chunk)):
            entry = entry_from_row(row)
            for customer in entry.customers:
                by_customer.setdefault(customer, []).append(entry)
    return by_customer


def lease_many(
    db: sqlite3.Connection, business: str, wanted: Sequence[tuple[LedgerEntry, str]], ttl: float
) -> list[tuple[LedgerEntry | None, bool]]:
    """``Ledger.lease_entries`` in a few statements: the entries, their leases, the new leases."""
    moment = clock.now()
    current: dict[str, tuple[str, float]] = {}
    for chunk in chunks([entry.key for entry, _ in wanted]):
        sql = f"SELECT key, state, updated_at FROM entries WHERE business = ? AND key IN ({marks(len(chunk))})"
        current.update((key, (state, updated)) for key, state, updated in db.execute(sql, (business, *chunk)))
    found: dict[str, LedgerEntry] = {}
    changed: list[str] = []
    for entry, _ in wanted:
        now_state = current.get(entry.key)
        if now_state is None:
            continue
        if now_state[0] == entry.state.value and timestamp(now_state[1]) == entry.updated_at:
            found[entry.key] = entry  # untouched since the caller read it
        else:
            changed.append(entry.key)
    for chunk in chunks(changed):
        sql = f"SELECT {COLUMNS} FROM entries WHERE business = ? AND key IN ({marks(len(chunk))})"
        found.update((row[0], entry_from_row(row)) for row in db.execute(sql, (business, *chunk)))
    names = sorted({n for entry, _ in wanted if entry.key in found for n in found[entry.key].leases})
    holders = {
        name: holder
        for name, (holder, end) in lease_rows.held(db, business, names, moment).items()
        if end.lasts_past(moment, moment)
    }
    out: list[tuple[LedgerEntry | None, bool]] = []
    leases: list[tuple[str, str, str, LeaseEnd]] = []
    until = LeaseEnd.after(moment, ttl)
    for last, owner in wanted:
        now_entry = found.get(last.key)
        if now_entry is None or now_entry.is_final or any(holders.get(n, owner) != owner for n in now_entry.leases):
            out.append((now_entry, False))
            continue
        for name in now_entry.leases:
            holders[name] = owner
            leases.append((business, name, owner, until))
        out.append((now_entry, True))
    if leases:
        lease_rows.take(db, leases)
    return out
