"""The ledger interface. The guard, reconcile and the CLI speak only to this."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import attrs

from .._errors import ConfigurationError, ValidationError
from .._timing import CLOCK
from .._validate import lookup, row_limit, seconds
from . import _clock as clock
from ._clock import LeaseEnd, Moment
from ._entry import MOVES_INTO, OPEN_STATES, EntryState, Intent, LedgerEntry, Settlement, forbidden_move
from ._resolve import resolve_by_hand
from ._staging import Stager, driver_transaction

__all__ = ["Begun", "Fence", "Ledger", "check_lookup"]


@attrs.frozen
class Begun:
    """The outcome of ``Ledger.begin``.

    ``created``: the intent was recorded and the leases taken, in one durable commit.
    Otherwise ``existing`` is the entry already stored under that key (no lease taken),
    or ``busy_until`` says another owner holds a lease on one of the customers.
    """

    entry: LedgerEntry | None
    created: bool
    busy_until: float | None = None
    others: tuple[LedgerEntry, ...] = ()
    """When created: earlier open entries (sending or in doubt, with a snapshot) on these customers."""


@attrs.frozen
class Fence:
    """A snapshot read before its intent is recorded: when the read began (on both clocks),
    and the prefix of this process's lease owners (whose writes the caller already keeps out)."""

    since: Moment
    mine: str

    @classmethod
    def starting_now(cls, mine: str, margin: float) -> Fence:
        """A fence for a read that starts now, ``margin`` seconds early to be safe."""
        return cls(clock.now().shifted(-margin), mine)

    def age(self) -> float:
        """Seconds since the fence's start, on the clock nobody sets."""
        return CLOCK.monotonic() - self.since.mono

    def crossed_by(self, owner: str, end: LeaseEnd, now: Moment) -> bool:
        """Whether a lease held by ``owner`` until ``end`` overlapped the read."""
        return end.reaches(self.since, now) and not owner.startswith(self.mine)


class Ledger(abc.ABC):
    """Durable record of every guarded write, and per-customer leases.

    Every method is atomic. A ledger is bound to one business (the API key's
    fingerprint); the key itself is never stored.

    The methods that take leases (``begin``, ``acquire``, ``lease_entries``) return an
    awaitable, which may be work already under way (a queued batch, say): a caller that
    is cancelled stops waiting, not the work, and the guard then gives back what the call
    took once it ends.
    """

    business: str
    fences_snapshots: bool = False
    """Whether ``begin`` can check a ``fence`` (else the guard records, then reads)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the write path ------------------------------------------------------------------
    @abc.abstractmethod
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
        on_leased: Callable[[], None] | None = None,
        alone: bool = False,
    ) -> Awaitable[Begun]:
        """Record ``intent`` (state ``recorded``) and lease its customers, durably, or report why not.

        With a ``snapshot``, the entry starts as ``sending`` with it, so the request may
        leave as soon as this returns. A snapshot read from the API before this call comes
        with a ``fence``: it is kept only if no other process leased these customers since
        ``fence.since`` and none of them has an open entry; otherwise the entry starts
        ``recorded`` as without one. A backend without ``fences_snapshots`` never keeps a
        fenced snapshot. ``in_flight`` is stored as the entry's ``in_flight``.

        ``adopt``: an entry already under the key that was provably never sent (``staged``
        or ``recorded``) for the same operation and parameters is taken as if this call
        recorded it (``created``): its customers leased and, as above, its snapshot stored
        and the entry marked ``sending``, in one commit. Any other entry is returned as
        found, nothing leased.

        ``on_leased``: called once the customers are leased, before the intent's commit, by
        a backend that takes the two in separate steps (the guard then reads the state
        the write's proof needs beside that commit); a backend that does both in one
        commit need not call it.

        ``alone``: a hint that the caller has no other write in flight, so nothing else
        would run on the event loop while this commit waits for the disk; a backend may
        then commit on the loop's own thread rather than pay two hops to a thread.
        """

    @abc.abstractmethod
    def acquire(self, customers: Sequence[str], *, owner: str, lease_ttl: float) -> Awaitable[float | None]:
        """Lease ``customers`` for ``owner``; None on success, else when the blocking lease expires."""

    def lease_entries(
        self, wanted: Sequence[tuple[LedgerEntry, str]], *, lease_ttl: float
    ) -> Awaitable[list[tuple[LedgerEntry | None, bool]]]:
        """For each (entry as last read, owner): lease the open entry's customers for that
        owner; return the entry as of then, and whether it was leased.

        Nothing is leased for an entry that is missing or final, or whose leases another
        owner holds (then the flag is False). A backend may do all of it in one commit.
        """
        return self._lease_entries_one_by_one(wanted, lease_ttl)

    async def _lease_entries_one_by_one(
        self, wanted: Sequence[tuple[LedgerEntry, str]], lease_ttl: float
    ) -> list[tuple[LedgerEntry | None, bool]]:
        out: list[tuple[LedgerEntry | None, bool]] = []
        for last, owner in wanted:
            key = last.key
            entry = await self.get(key)
            if (
                entry is None
                or entry.is_final
                or await self.acquire(entry.leases, owner=owner, lease_ttl=lease_ttl) is not None
            ):
                out.append((entry, False))
            else:
                fresh = await self.get(key)
                if fresh is None or fresh.is_final:
                    await self.release(entry.leases, owner=owner)
                    out.append((fresh, False))
                else:
                    out.append((fresh, True))
        return out

    @abc.abstractmethod
    async def release(self, customers: Sequence[str], *, owner: str) -> None:
        """Give up the leases ``owner`` holds on ``customers``."""

    async def _refuse_forbidden(self, key: str, state: EntryState) -> None:
        """After a move asked for without ``expect`` did not happen: a move the state
        machine forbids is an error (an entry that is gone, or that moved meanwhile into a
        state it may still leave, is not)."""
        entry = await self.get(key)
        if entry is not None and entry.state not in MOVES_INTO[state]:
            raise forbidden_move(key, entry.state, state)

    @property
    def leases_end_with_a_session(self) -> bool:
        """Whether a lease can end before its TTL, with a database session (PostgreSQL's
        advisory locks); SQLite's last their TTL unless renewed."""
        return False

    async def renew(self, customers: Sequence[str], *, owner: str, lease_ttl: float) -> bool:
        """Extend ``owner``'s leases on ``customers`` to ``lease_ttl`` from now if no other
        owner has held one of them since they were taken (one that lapsed unclaimed is
        renewed); else False, changing nothing. By default ``acquire``, which suits
        leases that cannot lapse."""
        return await self.acquire(customers, owner=owner, lease_ttl=lease_ttl) is None

    @abc.abstractmethod
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
        """Durably record that the request may now be sent (and the pre-send snapshot, and
        how long it may be on its way: ``in_flight``); renews the lease. ``attempt``: this
        mark is for a new attempt (``attempts`` counts it); False marks again an attempt
        not sent yet, so that it is judged from the time it leaves.

        Raises ``LeaseLost``, changing nothing, when ``owner`` no longer holds ``customers``.
        """

    @abc.abstractmethod
    async def settle(self, key: str, move: Settlement) -> bool:
        """Make ``move`` (see ``Settlement``); True if the entry moved. A move the state table
        forbids, asked without ``expect``, raises ``LedgerError``. With ``wait=False`` a
        backend that can order later calls after it returns True once it is queued; one
        that cannot waits anyway."""

    @abc.abstractmethod
    async def open_entries(self, customers: Sequence[str], *, exclude: str) -> list[LedgerEntry]:
        """Entries on these customers still sending or in doubt, with a snapshot, oldest first."""

    @abc.abstractmethod
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
        """Claim open entries (``states``, some of ``OPEN_STATES``) untouched for ``older_than``
        seconds, oldest first.

        Concurrent reconcilers get disjoint sets: an entry stays claimed by ``owner`` for
        ``ttl`` seconds (or until its owner claims again), so a crashed reconciler's claims lapse.
        ``after`` pages on: only entries created at or after it, to the microsecond (the last one of the page
        before, whose own claim keeps it out), so no page scans what earlier pages took.
        """

    @abc.abstractmethod
    async def unclaim(self, owner: str, keys: Sequence[str]) -> None:
        """Give back ``owner``'s claims on these entries (found by key: no scan of the ledger)."""

    @abc.abstractmethod
    async def prune(self, *, older_than: float) -> int:
        """Delete final entries (committed, failed, abandoned) created and last changed more
        than ``older_than`` seconds ago; returns how many. Open entries are never deleted.

        An entry is its idempotency key's record: a later call with a pruned key is a new
        write. Keep ``older_than`` longer than any job could be redelivered with a key.
        """

    # -- inspection ----------------------------------------------------------------------
    async def resolve(
        self, key: str, *, applied: bool, note: str, tx_hash: str | None = None, by: str | None = None
    ) -> LedgerEntry:
        """Record a person's verdict on a write no read could decide (in doubt, or given up):
        ``applied=True`` ("Shakesco shows it, tx 0x…") makes it committed, and a replay of its
        key answers with ``tx_hash``; ``applied=False`` gives it up, and the caller's retry
        with the same key sends it once. ``note`` says why; ``by`` who (by default
        user@host). Kept in the entry's reason with the time. Refused (``LedgerError``) for
        a final answer of the API's, while the customers are leased by a writer, or while
        the write's last request may still be on its way."""
        return await resolve_by_hand(self, key, applied=applied, note=note, tx_hash=tx_hash, by=by)

    async def stage(self, conn: object, intent: Intent) -> None:
        """Record ``intent`` as a ``staged`` entry through ``conn``, the application's own
        connection, inside its open transaction: owed once that commits, never if it rolls
        back. A key staged before with the same parameters is left as it is."""
        raise ConfigurationError(f"{type(self).__name__} cannot stage writes through an application's connection")

    def staging_kind(self, conn: object) -> str:
        """Which driver ``conn`` is (``_staging.connection_kind``), if this ledger can stage
        writes through it; else ``ConfigurationError``."""
        raise ConfigurationError(f"{type(self).__name__} cannot stage writes through an application's connection")

    @contextlib.asynccontextmanager
    async def transaction(self, conn: object) -> AsyncIterator[Stager]:
        """A transaction of the application's on ``conn``, yielding what records a write as
        staged in it: committed when the block ends, rolled back (and the error raised)
        when it raises."""
        async with driver_transaction(conn, self.staging_kind(conn)):
            yield functools.partial(self.stage, conn)

    def watch(self, key: str) -> asyncio.Future[Settlement | None]:
        """A future that resolves once this ledger object next settles ``key`` (in this
        process: writes settled by other processes are seen by reading the entry again),
        to the move made (None: read the entry to know it)."""
        watchers: dict[str, set[asyncio.Future[Settlement | None]]] = self.__dict__.setdefault("_watchers", {})
        settled: asyncio.Future[Settlement | None] = asyncio.get_running_loop().create_future()
        watchers.setdefault(key, set()).add(settled)
        return settled

    def unwatch(self, key: str, settled: asyncio.Future[Settlement | None]) -> None:
        """Stop keeping ``settled`` for ``key`` (its waiter reads the entry instead)."""
        watchers: dict[str, set[asyncio.Future[Settlement | None]]] = self.__dict__.get("_watchers", {})
        waiting = watchers.get(key)
        if waiting is not None:
            waiting.discard(settled)
            if not waiting:
                del watchers[key]

    def _settled(self, key: str, move: Settlement | None = None) -> None:
        """Wake whoever watches ``key`` (each backend's ``settle``, once the entry moved by ``move``)."""
        for settled in self.__dict__.get("_watchers", {}).pop(key, ()):
            if not settled.done():
                settled.set_result(move)

    async def staged_arrived(self, at_most: float) -> None:
        """Return once a write may have been staged (a transaction that staged one committed),
        or after ``at_most`` seconds. Without a way to be told, this waits ``at_most``."""
        await CLOCK.sleep(at_most)

    async def now(self) -> datetime:
        """The time on the clock the entries' ``updated_at`` is read from (this host's here)."""
        return datetime.fromtimestamp(CLOCK.time(), UTC)

    @abc.abstractmethod
    async def get(self, key: str) -> LedgerEntry | None:
        """The entry stored under ``key``."""

    async def entries(
        self,
        *,
        states: Sequence[EntryState] | None = None,
        customer: str | None = None,
        older_than: float | None = None,
        limit: int | None = None,
        newest: bool = False,
        key: str | None = None,
    ) -> list[LedgerEntry]:
        """Entries, oldest first (``newest``: newest first), filtered by state, customer,
        age in seconds and key."""
        found = await self.entries_by_business(
            states=states, customer=customer, older_than=older_than, limit=limit, newest=newest, key=key
        )
        return [entry for _, entry in found]

    @abc.abstractmethod
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
        """``entries``, each with the business it is kept under (a view of every business
        holds several)."""

    @abc.abstractmethod
    async def counts(self) -> dict[EntryState, int]:
        """How many entries are in each state."""


def check_lookup(
    *,
    key: object = None,
    customer: object = None,
    states: object = None,
    older_than: object = None,
    limit: object = None,
) -> None:
    """The inspection methods' arguments (``get``, ``entries``), checked before any read:
    a ``ValidationError`` says what is wrong, where the database would raise an error of
    its own (a lone surrogate, a limit of text) or quietly match nothing (a key of 5)."""
    if key is not None:
        lookup("key", key)
    if customer is not None:
        lookup("customer", customer)
    if states is not None and (
        isinstance(states, str | bytes)
        or not isinstance(states, Sequence)
        or not all(isinstance(state, EntryState) for state in states)
    ):
        raise ValidationError(f"states must be a sequence of EntryState, got {type(states).__name__}")
    if older_than is not None:
        seconds("older_than", older_than)
    row_limit("limit", limit)
