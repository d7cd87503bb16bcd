"""The transaction wrapper every write goes through.

Phases, each ending at a durable recovery point in the ledger:

1. **begin**: record the intent (state ``recorded``) and lease the customers, in one commit.
2. **resolve**: settle any earlier write on these customers whose outcome is still open,
   while its pre-send snapshot is still the latest truth (nothing of ours ran since).
3. **snapshot + mark sending**: read the state the verifier needs, store it with state
   ``sending``. Only after that commit may the request leave. A write whose snapshot
   needs no read (a one-time claim, a repeatable write) is recorded as ``sending`` by
   phase 1 itself: one durable commit before the request leaves. So is one whose
   snapshot was read just before phase 1, when the ledger can prove (a fence) that no
   other process leased its customers since and none of their writes is still open.
4. **send once**: 200 commits; a definitive refusal fails; an unknown outcome is verified
   by reading state back. Only a write proven not applied is sent again. The caller gets
   a 200's result once the commit is queued: if the process dies before it is durable,
   the entry is still ``sending`` and reconcile verifies it as applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

import attrs

from .. import _instrumentation as instrumentation
from .._errors import (
    APIError,
    IdempotencyConflict,
    LeaseLost,
    LedgerError,
    MalformedResponse,
    OutcomeUnknown,
    ShakescoError,
    TransportError,
)
from .._retry import backoff_delay
from .._timing import CLOCK, EXTRA_WAIT, FENCE_MARGIN, FENCE_MAX_AGE, Timing
from .._validate import text
from .._wire import WireValue
from ..endpoints import ENDPOINTS_BY_PATH, Endpoint, EndpointMethods
from ..ledger import Begun, EntryState, Fence, Intent, KeySource, Ledger, LedgerEntry, Settlement
from ..ledger._entry import API_ANSWERS, MAYBE_SENT, OPEN_STATES
from ._cleanup import Cleanups
from ._decide import (
    Answer,
    Finish,
    ReconcileStep,
    Situation,
    Step,
    StepKind,
    after_attempt,
    before_attempt,
    effective_verdict,
    reconcile_step,
)
from ._events import EventKinds
from ._locks import KeyedLocks
from ._names import Owners, sdk_key
from ._outcome import (
    ReconcileOutcome,
    canonical,
    error_record,
    is_definitive,
    raise_recorded,
    refused_for_now,
    refuses_credentials,
    result_from_record,
    result_record,
)
from ._settings import GuardSettings
from ._verify import (
    VERIFIERS,
    Judgement,
    Snapshot,
    Verdict,
    changes_events,
    compare,
    known_snapshot,
    snapshot_of,
    verify,
)

__all__ = ["Resend", "Settled", "WriteGuard", "check_idempotency_key", "intent_for", "sdk_key", "wave_size"]

log = logging.getLogger("shakesco_async.guard")
R = TypeVar("R")
SendOnce = Callable[[Endpoint[Any], dict[str, WireValue], str], Awaitable[Any]]
MAX_KEY_LENGTH = 255
Resend = Literal["caller", "all", "none"]
Settled = tuple[ReconcileOutcome, str]
"""(outcome, detail)."""


def check_idempotency_key(key: object) -> str:
    return text("idempotency_key", key, MAX_KEY_LENGTH)


def intent_for(endpoint: Endpoint[Any], wire: dict[str, WireValue], key: str, source: KeySource) -> Intent:
    """What the ledger records of a write before anything is sent."""
    customers = tuple(sorted({str(wire[f]) for f in endpoint.customers}))
    return Intent(key, endpoint.path, canonical(wire), customers, source)


class _InFlight:
    """How many writes a guard and its siblings are working on: calls, owed writes being
    sent, reconcile runs (``with``: one more while inside)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    def __enter__(self) -> None:
        self.calls += 1

    def __exit__(self, *exc: object) -> None:
        self.calls -= 1


class WriteGuard:
    """At-most-once writes over an API without idempotency keys."""

    def __init__(
        self,
        *,
        reader: EndpointMethods,
        send_once: SendOnce,
        ledger: Ledger,
        settings: GuardSettings,
        timeout: float,
        max_retries: int,
    ) -> None:
        self._reader = reader
        self._send_once = send_once
        self.ledger = ledger
        self._settings = settings
        self._max_retries = max_retries
        self._timing = Timing.of(settings, timeout, max_retries)
        self._locks = KeyedLocks()
        self._events = EventKinds(settings.event_ttl)
        self._owners = Owners()
        self._cleanups = Cleanups()
        self._writing = _InFlight()

    def sibling(self, *, reader: EndpointMethods, send_once: SendOnce, timeout: float, max_retries: int) -> WriteGuard:
        """A guard for calls with another timeout and retry count, sharing this one's
        ledger, in-process locks, event cache, lease owners and cleanups: to the ledger
        and to each other, the two are one writer."""
        other = WriteGuard(
            reader=reader,
            send_once=send_once,
            ledger=self.ledger,
            settings=self._settings,
            timeout=timeout,
            max_retries=max_retries,
        )
        other._locks, other._events, other._owners, other._cleanups, other._writing = (
            self._locks,
            self._events,
            self._owners,
            self._cleanups,
            self._writing,
        )
        return other

    @property
    def cleanups(self) -> Cleanups:
        """Ledger work that must end even when its caller is cancelled (leases, claims)."""
        return self._cleanups

    # -- entry point ---------------------------------------------------------------------------
    async def execute(self, endpoint: Endpoint[R], wire: dict[str, WireValue], idempotency_key: str | None) -> R:
        """Send ``endpoint`` at most once for its idempotency key, and record what happened."""
        source = KeySource.CALLER if idempotency_key is not None else KeySource.GENERATED
        key = check_idempotency_key(idempotency_key) if idempotency_key is not None else sdk_key()
        with self._writing, instrumentation.write(endpoint.path, key) as current:
            result = await self._execute(endpoint, wire, key, source)
            current.result = result
            return result

    async def _execute(self, endpoint: Endpoint[R], wire: dict[str, WireValue], key: str, source: KeySource) -> R:
        intent = intent_for(endpoint, wire, key, source)
        customers = intent.customers
        owner = self._owners.new()
        if changes_events(endpoint.path):
            self._events.forget(str(wire["event_name"]))
        try:
            known = await known_snapshot(self._reader, self._events, endpoint.path, wire)
        except (TransportError, APIError, MalformedResponse) as exc:
            raise _before_sending(exc, endpoint.path, key) from None
        async with self._locks.hold([*(f"customer:{c}" for c in customers), f"key:{key}"]):
            fence: Fence | None = None
            unread: Exception | None = None
            if known is None:
                try:
                    known, fence = await self._read_fenced(endpoint.path, wire)
                except (TransportError, APIError, MalformedResponse) as exc:
                    unread = exc
            # A ledger that cannot fence a read made before the intent: the read starts as soon
            # as the customers are leased, beside the intent's commit, not after it.
            early = None
            if known is None and unread is None and not self.ledger.fences_snapshots:
                early = _EarlyRead(lambda: snapshot_of(self._reader, endpoint.path, wire))
            try:
                entry, others, created, leased = await self._take(
                    intent, owner, known, fence, on_leased=None if early is None else early.leased
                )
                # Its snapshot holds only if no earlier write of these customers is to be
                # settled first: then the state is read again once that is done.
                read = early.take() if early is not None and created and others == () else None
            finally:
                if early is not None:
                    early.close()
            lease = _Lease(owner, intent.leases, leased)
            try:
                if unread is not None and created:
                    await self._give_up_unsent(entry, lease, "could not read the pre-send state")
                    raise _before_sending(unread, endpoint.path, key)
                instrumentation.phase("intent recorded" if created else "entry found", state=entry.state.value)
                marked = created and entry.state == EntryState.SENDING
                made = wire if created else None
                return cast(R, await self._run(endpoint, entry, lease, others, marked=marked, wire=made, read=read))
            finally:
                if read is not None and not read.done():
                    read.cancel()
                await self._give_back(lease)
                if changes_events(endpoint.path):
                    self._events.forget(str(wire["event_name"]))

    async def _read_fenced(self, operation: str, params: Mapping[str, object]) -> tuple[Snapshot | None, Fence | None]:
        """The snapshot read before the intent's commit, and the fence that commit keeps it
        by: the ledger drops it if another process wrote these customers meanwhile. (None,
        None) where the ledger cannot fence, or the read took too long to trust: then it is
        read again once the customers are leased. Raises the read's error."""
        if not self.ledger.fences_snapshots:
            return None, None
        fence = Fence.starting_now(self._owners.prefix, FENCE_MARGIN)
        known = await snapshot_of(self._reader, operation, params)
        if fence.age() > FENCE_MAX_AGE:
            return None, None
        return known, fence

    async def send_owed(self, entry: LedgerEntry) -> Settled:
        """Send an owed entry, provably never sent (staged, or recorded under the caller's
        key), as a call sends a new write: the snapshot read first where the ledger can
        fence it, then one commit leases the customers and marks it sending. An entry
        whose customers another process holds, or that moved meanwhile, is left as it is."""
        with self._writing:
            return await self._send_owed(entry)

    async def _send_owed(self, entry: LedgerEntry) -> Settled:
        intent = Intent(entry.key, entry.operation, entry.params, entry.customers, entry.key_source)
        owner = self._owners.new()
        async with self._locks.hold([*(f"customer:{c}" for c in entry.customers), f"key:{entry.key}"]):
            fence: Fence | None = None
            try:
                known = await known_snapshot(self._reader, self._events, entry.operation, entry.params)
                if known is None:
                    known, fence = await self._read_fenced(entry.operation, entry.params)
            except (TransportError, APIError, MalformedResponse) as exc:
                return (ReconcileOutcome.NOT_APPLIED, f"the read before sending failed, nothing was sent: {exc}")
            asked = CLOCK.monotonic()
            begun = await self._begin(intent, owner, known, fence, adopt=True)
            if not begun.created or begun.entry is None:
                if begun.entry is not None and begun.entry.is_final:
                    return (ReconcileOutcome.FINAL, "settled meanwhile by another writer")
                return (ReconcileOutcome.BUSY, "another process holds it, or its customers")
            lease = _Lease(owner, intent.leases, asked)
            try:
                fresh = begun.entry
                return await self._send_owned(fresh, lease, begun.others, marked=fresh.state == EntryState.SENDING)
            finally:
                await self._give_back(lease)

    async def _take(
        self,
        intent: Intent,
        owner: str,
        known: Snapshot | None,
        fence: Fence | None,
        on_leased: Callable[[], None] | None = None,
    ) -> tuple[LedgerEntry, tuple[LedgerEntry, ...] | None, bool, float]:
        """Record the intent, or find the key's entry; return holding the customers' leases.

        The flag says whether this call recorded the entry; the float is when (monotonic)
        the call that took the leases was made, which they run from at the latest.

        Also returns the earlier open entries on these customers when ``begin`` found them
        in the same transaction (None: look them up). A ``known`` snapshot is stored by that
        same commit, which then also marks the entry ``sending`` (unless its ``fence`` fails).
        """
        deadline = CLOCK.monotonic() + self._timing.lease_wait
        while True:
            asked = CLOCK.monotonic()
            alone = self._writing.calls == 1
            begun = await self._begin(intent, owner, known, fence, on_leased=on_leased, alone=alone)
            if begun.created and begun.entry is not None:
                return begun.entry, begun.others, True, asked
            busy_until = begun.busy_until
            if begun.entry is not None:
                if begun.entry.params_digest != intent.digest or begun.entry.operation != intent.operation:
                    raise IdempotencyConflict(
                        intent.key,
                        f"idempotency key {intent.key!r} was used for {begun.entry.operation} with other parameters",
                    )
                if begun.entry.is_final and begun.entry.state != EntryState.ABANDONED:
                    return begun.entry, (), False, asked
                asked = CLOCK.monotonic()
                busy_until, fresh = await self._cleanups.taking(
                    self._lease_existing(intent, owner),
                    lambda got: None if got[0] is not None else self.ledger.release(intent.leases, owner=owner),
                )
                if fresh is not None:
                    return fresh, None, False, asked
            if CLOCK.monotonic() > deadline:
                if begun.entry is not None and begun.entry.state in MAYBE_SENT:
                    # An earlier call's attempt, maybe applied: whoever holds the lease settles it.
                    raise OutcomeUnknown(
                        intent.key, "another process holds its customers and is settling it; it stays open"
                    )
                raise LedgerError(
                    f"customers {', '.join(intent.customers)} are leased by another process; nothing was sent"
                )
            wait = max(0.0, (busy_until or 0.0) - CLOCK.time())
            await CLOCK.sleep(min(wait, 0.05) + 0.005)

    def _begin(
        self,
        intent: Intent,
        owner: str,
        known: Snapshot | None,
        fence: Fence | None,
        *,
        adopt: bool = False,
        on_leased: Callable[[], None] | None = None,
        alone: bool = False,
    ) -> Awaitable[Begun]:
        """``Ledger.begin`` for this call; if the caller is cancelled meanwhile, it still ends,
        and what it recorded is given up as never sent (``_unbegin``)."""
        return self._cleanups.taking(
            self.ledger.begin(
                intent,
                owner=owner,
                lease_ttl=self._timing.lease_ttl,
                snapshot=known,
                fence=fence,
                in_flight=self._timing.in_flight,
                adopt=adopt,
                on_leased=on_leased,
                alone=alone,
            ),
            lambda begun: self._unbegin(begun, intent, owner),
        )

    async def _lease_existing(self, intent: Intent, owner: str) -> tuple[float | None, LedgerEntry | None]:
        """Lease the customers of the key's entry and read it again: (busy until, None) or (None, entry)."""
        busy_until = await self.ledger.acquire(intent.leases, owner=owner, lease_ttl=self._timing.lease_ttl)
        if busy_until is not None:
            return busy_until, None
        try:
            fresh = await self.ledger.get(intent.key)
        except Exception:
            await self.ledger.release(intent.leases, owner=owner)
            raise
        assert fresh is not None
        return None, fresh

    def _acquire(self, names: Sequence[str], owner: str) -> Awaitable[float | None]:
        """``Ledger.acquire``, its leases given back if the caller is cancelled meanwhile."""
        return self._cleanups.taking(
            self.ledger.acquire(names, owner=owner, lease_ttl=self._timing.lease_ttl),
            lambda busy: self.ledger.release(names, owner=owner) if busy is None else None,
        )

    def _unbegin(self, begun: Begun, intent: Intent, owner: str) -> Awaitable[bool] | None:
        """Undo a ``begin`` whose caller was cancelled: its request never left, so the entry
        is given up as not sent, and its leases with it."""
        if not begun.created:
            return None  # a begin that recorded nothing took no lease
        state = EntryState.ABANDONED if intent.key_source == KeySource.GENERATED else EntryState.RECORDED
        return self.ledger.settle(
            intent.key, Settlement(state, reason=_CANCELLED, release=intent.leases, owner=owner, expect=OPEN_STATES)
        )

    async def drain(self) -> None:
        """Wait for the ledger work cancelled calls left behind (giving back their leases)."""
        await self._cleanups.drain()

    # -- the phases ------------------------------------------------------------------------------
    async def _run(
        self,
        endpoint: Endpoint[Any],
        entry: LedgerEntry,
        lease: _Lease,
        others: tuple[LedgerEntry, ...] | None,
        *,
        marked: bool,
        wire: dict[str, WireValue] | None = None,
        read: asyncio.Task[Snapshot] | None = None,
    ) -> object:
        if entry.state == EntryState.COMMITTED:
            assert entry.result is not None
            return result_from_record(entry.result, entry.key, replayed=True)
        if entry.state == EntryState.FAILED:
            assert entry.error is not None
            raise_recorded(entry.error)
        if entry.state in MAYBE_SENT and not marked:
            # The same key again after a crash or an OutcomeUnknown: settle it before anything else.
            # It may have been applied, so until it is settled this call ends as a receipt or
            # pending, never as an error that would say "not applied".
            try:
                replayed = await self._settle_open(entry, lease)
            except OutcomeUnknown:
                raise
            except ShakescoError as exc:
                raise OutcomeUnknown(entry.key, f"an earlier attempt could not be settled now: {exc}") from exc
            if replayed is not None:
                return replayed
        if others is None:
            others = tuple(await self.ledger.open_entries(entry.customers, exclude=entry.key))
        await self._resolve_others(entry, lease, others)
        return await self._send(endpoint, entry, lease, marked=marked, wire=wire, read=read)

    async def _finish(
        self, entry: LedgerEntry, lease: _Lease, state: EntryState, *, sent: bool = False, **details: Any
    ) -> bool:
        """The call's last word on its entry, committed together with giving up its leases;
        False when the entry did not move.

        Only what the API said (applied, refused) may replace a final state. A verdict of
        not applied, or of doubt, never undoes what another writer settled meanwhile: an
        entry put back to ``recorded`` after it was sent would be sent again.

        ``sent``: this call's request may have left. Then what the API did is the caller's
        answer, whatever the ledger does: told "LedgerError, nothing was sent" about an
        applied write, a caller might send it again under a new key. A failed record is
        logged instead; the entry stays open with its snapshot, and the customer's next
        write or reconcile verifies it.
        """
        if state not in API_ANSWERS:
            details.setdefault("expect", OPEN_STATES)
        if state == EntryState.IN_DOUBT:
            instrumentation.in_doubt(entry.operation, entry.key, str(details.get("reason", "")))
        try:
            moved = await self.ledger.settle(
                entry.key, Settlement(state, release=lease.names, owner=lease.owner, **details)
            )
        except Exception as exc:  # whatever the ledger raises, after a send the API's answer stands
            if not sent:
                raise
            log.error(
                "write %s %s: its outcome (%s) could not be recorded (%s); the entry stays open, and the"
                " customer's next write or reconcile verifies it",
                entry.operation,
                entry.key,
                state.value,
                exc,
            )
            return False
        lease.released = True
        return moved

    async def _give_back(self, lease: _Lease) -> None:
        """Release the leases a call still holds. A failure is logged, not raised: it must not
        hide the call's own outcome, and the leases end anyway (they lapse with SQLite, and
        with PostgreSQL end with the ledger's connection)."""
        if lease.released:
            return
        try:
            await self._cleanups.finish(self.ledger.release(lease.names, owner=lease.owner))
        except LedgerError as exc:
            log.warning("could not give back the leases of %s (%s); they end when they lapse", lease.names, exc)

    async def _settle_open(self, entry: LedgerEntry, lease: _Lease) -> object | None:
        """Judge an entry an earlier call left open: its receipt if applied, None if not."""
        await self._landed(entry, wait=True, lease=lease)
        judgement = await self._judge(entry)
        if not await self._still_held(lease):
            raise self._lost(entry)
        if judgement.verdict == Verdict.APPLIED:
            await self._finish(entry, lease, EntryState.COMMITTED, result=_VERIFIED)
            return result_from_record(_VERIFIED, entry.key, replayed=True)
        if judgement.verdict != Verdict.NOT_APPLIED:
            await self._finish(entry, lease, EntryState.IN_DOUBT, reason=judgement.reason)
            raise OutcomeUnknown(entry.key, judgement.reason)
        return None

    async def _landed(
        self, entry: LedgerEntry, *, wait: bool, lease: _Lease | None = None, also: Sequence[str] = ()
    ) -> bool:
        """Whether the last request sent for ``entry`` can no longer be on its way (with
        ``wait``: once it cannot, keeping the caller's ``lease``, and the leases ``also``
        held with it, for that long). Its writer's lease can end before that: a PostgreSQL
        lock ends at once with a dead process's or a lost session's connection, and a call
        cancelled while waiting for its answer gives its lease back. Read before the API has
        the request, a write reads as not applied and would be sent again.
        """
        if entry.state != EntryState.SENDING:
            return True
        age = (await self.ledger.now() - entry.updated_at).total_seconds()
        left = self._timing.flight_left(entry.in_flight, age)
        if left <= 0:
            return True
        if wait:
            log.info("write %s %s may still be on its way; judging it in %.1fs", entry.operation, entry.key, left)
            if lease is not None:
                await self._outlast(lease, left, also)
            await CLOCK.sleep(left)
        return wait

    async def _outlast(self, lease: _Lease, wait: float, also: Sequence[str]) -> None:
        """Renew the caller's leases, if need be, to outlast a wait of ``wait`` seconds with
        time left to judge after it: the write waited for may have a longer flight than
        this client's lease allows for (its sender's timeout), and a lease lapsing in the
        wait would let another process write the customer while its state is being judged."""
        if CLOCK.monotonic() + wait - lease.since <= self._timing.lease_slack:
            return
        asked = CLOCK.monotonic()
        names = [*lease.names, *also]
        if not await self.ledger.renew(names, owner=lease.owner, lease_ttl=self._timing.lease_ttl + wait):
            raise LeaseLost(f"the lease on customers {', '.join(names)} lapsed and another process took one")
        lease.since = asked + wait  # a lease of the usual length, starting once the wait ends

    async def _still_held(self, lease: _Lease, also: Sequence[str] = ()) -> bool:
        """Whether the call still holds its customers (and ``also``), asked after reading
        their state and before acting on it. A verdict read while another process may
        have been writing them says nothing about this write: a PostgreSQL lease ends with
        its session, at any moment, and a SQLite one once its TTL has run out."""
        if not self.ledger.leases_end_with_a_session and CLOCK.monotonic() - lease.since <= self._timing.lease_slack:
            return True  # a SQLite lease cannot end before its TTL, and this one has time left
        asked = CLOCK.monotonic()
        if not await self.ledger.renew([*lease.names, *also], owner=lease.owner, lease_ttl=self._timing.lease_ttl):
            return False
        lease.since = asked
        return True

    def _lost(self, entry: LedgerEntry) -> OutcomeUnknown:
        log.warning(
            "write %s %s: its lease ended while its outcome was being judged; left for reconcile",
            entry.operation,
            entry.key,
        )
        return OutcomeUnknown(
            entry.key,
            "the lease on its customers ended while its outcome was being read (the ledger's session was"
            " lost); the entry stays open with its snapshot, and the next write on these customers or"
            " reconcile settles it",
        )

    async def _judge(self, entry: LedgerEntry) -> Judgement:
        if entry.snapshot is None:
            return Judgement(Verdict.UNEXPLAINED, entry.reason or "no usable snapshot; resolve by hand")
        return await self._verified(entry, entry.snapshot)

    async def resolve(self, entry: LedgerEntry, lease: _Lease | None = None, also: Sequence[str] = ()) -> Judgement:
        """Judge an open entry (caller holds its customers' leases: ``lease``, with ``also``)
        and record the verdict; ``LeaseLost``, recording nothing, if the lease ended meanwhile."""
        judgement = await self._judge(entry)
        if lease is not None and not await self._still_held(lease, also):
            raise LeaseLost(f"the lease on customers {', '.join(entry.customers)} ended while {entry.key} was judged")
        if judgement.verdict == Verdict.APPLIED:
            await self.ledger.settle(entry.key, Settlement(EntryState.COMMITTED, result=_VERIFIED, expect=MAYBE_SENT))
        elif judgement.verdict == Verdict.NOT_APPLIED:
            state = EntryState.RECORDED if entry.key_source == KeySource.CALLER else EntryState.ABANDONED
            await self.ledger.settle(entry.key, Settlement(state, reason="verified not applied", expect=MAYBE_SENT))
        elif judgement.verdict == Verdict.UNEXPLAINED:
            await self.ledger.settle(
                entry.key, Settlement(EntryState.IN_DOUBT, reason=judgement.reason, expect=MAYBE_SENT)
            )
        return judgement

    async def _resolve_others(
        self, entry: LedgerEntry, lease: _Lease, others: tuple[LedgerEntry, ...], *, caller: bool = True
    ) -> None:
        """Settle earlier open writes on these customers while their snapshots still hold."""
        owner = lease.owner
        for other in others:
            if other.key == entry.key or other.snapshot is None:
                continue
            extra = [c for c in other.customers if c not in entry.customers]
            if extra and not await self._wait_for(extra, owner):
                # Its other customer is another process's now. Sent, this write would change
                # the state that earlier write is to be judged by: it is not sent, and the
                # earlier one keeps its snapshot for whoever holds both next (reconcile).
                await self._give_up_unsent(
                    entry, lease, f"an earlier write {other.key!r} waits on a busy customer", caller=caller
                )
                raise LedgerError(
                    f"earlier write {other.key!r} on this customer is still open, and its other customer"
                    f" ({', '.join(extra)}) is leased by another process; nothing was sent. Retry with the"
                    " same idempotency key once that process is done"
                )
            try:
                await self._landed(other, wait=True, lease=lease, also=extra)
                judgement = await self.resolve(other, lease, extra)
            finally:
                await self._cleanups.finish(self.ledger.release(extra, owner=owner))
            if judgement.verdict == Verdict.UNREADABLE:
                await self._give_up_unsent(
                    entry, lease, "cannot verify an earlier write on this customer", caller=caller
                )
                raise TransportError(
                    f"cannot verify earlier write {other.key!r} on this customer ({judgement.reason});"
                    " nothing was sent",
                    sent=False,
                )
            if judgement.verdict == Verdict.UNEXPLAINED:
                await self._supersede(other, entry.key)

    async def _wait_for(self, names: Sequence[str], owner: str) -> bool:
        """Lease ``names`` for ``owner``, waiting a moment for another process to be done.

        Not the whole ``lease_wait``: that process may be waiting the same way for a customer
        this call holds (both settling one earlier transfer), and both give up sooner."""
        deadline = CLOCK.monotonic() + min(self._timing.lease_wait, EXTRA_WAIT)
        while (busy_until := await self._acquire(names, owner)) is not None:
            if CLOCK.monotonic() > deadline:
                return False
            await CLOCK.sleep(min(max(0.0, busy_until - CLOCK.time()), 0.05) + 0.005)
        return True

    async def _supersede(self, other: LedgerEntry, by: str) -> None:
        # Once a later write is sent, this snapshot no longer describes the state before `other`.
        await self.ledger.settle(
            other.key,
            Settlement(
                EntryState.IN_DOUBT,
                reason=f"superseded by {by} before it could be verified; resolve by hand",
                expect=MAYBE_SENT,
                drop_snapshot=True,
            ),
        )

    async def _give_up_unsent(
        self, entry: LedgerEntry, lease: _Lease, reason: str, *, sent: bool = False, caller: bool = True
    ) -> None:
        """The write provably did not apply. If its ``caller`` is about to hear so (an
        error), it is given up, whoever made its key, so nothing sends it on its own later
        (the caller's retry with the same key sends it, once); if that cannot be recorded,
        the entry stays open, to be finished by reconcile, and the caller hears it is
        pending. Reconcile, finishing a pending write, leaves one with the caller's key
        open for its next pass instead."""
        if not caller:
            state = EntryState.ABANDONED if entry.key_source == KeySource.GENERATED else EntryState.RECORDED
            await self._finish(entry, lease, state, sent=sent, reason=reason)
            return
        try:
            moved = await self._finish(entry, lease, EntryState.ABANDONED, sent=sent, reason=f"given up: {reason}")
        except LedgerError as exc:
            raise OutcomeUnknown(
                entry.key, f"{reason}; giving it up could not be recorded ({exc}), so reconcile finishes it"
            ) from exc
        if sent and not moved:  # the record failed and was logged: it stays open
            raise OutcomeUnknown(entry.key, f"{reason}; giving it up could not be recorded, so reconcile finishes it")

    async def _send(
        self,
        endpoint: Endpoint[Any],
        entry: LedgerEntry,
        lease: _Lease,
        *,
        marked: bool = False,
        wire: dict[str, WireValue] | None = None,
        caller: bool = True,
        read: asyncio.Task[Snapshot] | None = None,
    ) -> object:
        """Send until applied, refused, or in doubt: the driver of ``_decide``'s steps.
        ``marked``: the intent's commit already recorded the entry as sending, with its
        snapshot. ``wire``: the request, when this call made the entry from it (else it is
        rebuilt from the entry's parameters). ``caller``: a caller hears the outcome
        (reconcile, finishing a pending write, is none: see ``_give_up_unsent``). ``read``:
        the first attempt's snapshot, being read since the customers were leased.

        An attempt verified not applied may still be carried out (the API had it, and
        finished after the verification read). So once one was, every later step of the
        call also judges the state against the first attempt's snapshot: the read taken
        before each new attempt, and the state behind a refusal of one.
        """
        if wire is None:
            wire = endpoint.prepare(entry.params)
        first: Snapshot | None = None  # the state before this call's first attempt
        unknown: Exception | None = None  # why an attempt before this one may still land
        attempt = 0
        while True:
            attempt += 1
            # A marked entry may have waited before its request leaves (settling earlier
            # writes takes reads and waits; a loop can stall). Whoever judges it counts its
            # flight from the mark, with a margin, and its lease may be used up: past that
            # margin it is read, marked and renewed again, like any other attempt.
            reuse = marked and attempt == 1
            if reuse and CLOCK.monotonic() - lease.since <= self._timing.mark_fresh:
                assert entry.snapshot is not None
                snapshot: Snapshot = entry.snapshot
            else:
                snapshot = await self._read_before(entry, lease, caller, early=read if attempt == 1 else None)
                if first is not None and unknown is not None:
                    moved = compare(entry.operation, entry.params, first, snapshot)
                    step = before_attempt(None if moved is None else moved.verdict)
                    if step.kind != StepKind.SEND:
                        assert moved is not None
                        if not await self._still_held(lease):
                            raise self._lost(entry) from unknown
                        return await self._settle_verdict(step, entry, lease, moved, unknown)
                settled = await self._mark(entry, lease, snapshot, counted=reuse, unknown=unknown, caller=caller)
                if settled is not _MARKED:
                    return settled
            first = snapshot if first is None else first
            outcome = await self._attempt(endpoint, wire, entry.key, attempt)
            again = await self._after(entry, lease, outcome, attempt, snapshot, first, unknown, caller)
            if isinstance(again, _Again):
                unknown = again.unknown
                continue
            return again

    async def _attempt(self, endpoint: Endpoint[Any], wire: dict[str, WireValue], key: str, n: int) -> _Outcome:
        """Send once; what came back, classified for ``_decide``."""
        left_at = CLOCK.monotonic()
        instrumentation.phase("sending", attempt=n)
        try:
            result = await self._send_once(endpoint, wire, key)
        except APIError as exc:
            instrumentation.phase("answered", status=exc.status)
            if is_definitive(exc):
                return _Outcome(Answer.REFUSED, left_at, exc)
            if refuses_credentials(exc):
                return _Outcome(Answer.KEY_REFUSED, left_at, exc)
            if refused_for_now(exc):
                return _Outcome(Answer.NOT_NOW, left_at, exc, retry_after=exc.retry_after)
            return _Outcome(Answer.UNKNOWN, left_at, exc)  # a 5xx or a redirect
        except TransportError as exc:
            return _Outcome(Answer.NOT_SENT if exc.sent is False else Answer.UNKNOWN, left_at, exc)
        except MalformedResponse as exc:
            return _Outcome(Answer.UNKNOWN, left_at, exc)
        instrumentation.phase("answered", status=200)
        return _Outcome(Answer.OK, left_at, None, result=result)

    async def _after(
        self,
        entry: LedgerEntry,
        lease: _Lease,
        outcome: _Outcome,
        attempt: int,
        snapshot: Snapshot,
        first: Snapshot,
        unknown: Exception | None,
        caller: bool,
    ) -> object:
        """Perform the steps ``after_attempt`` chooses for one attempt's outcome until one
        ends the call (returns its result or raises) or sends again (``_Again``)."""
        error = outcome.error
        repeatable = VERIFIERS[entry.operation].repeatable
        situation = Situation(
            outcome.answer,
            attempt,
            self._max_retries,
            repeatable,
            earlier_unknown=unknown is not None,
            left_at=outcome.left_at,
            landing=self._timing.landing,
            verify_delay=self._timing.verify_delay,
            retry_after=outcome.retry_after,
            now=CLOCK.monotonic(),
        )
        judgement: Judgement | None = None
        while True:  # each pass judges a situation whose ``now`` was just taken
            step = after_attempt(situation)
            if step.confirm and not await self._still_held(lease):
                raise self._lost(entry) from error
            kind = step.kind
            if kind == StepKind.COMMIT:
                record = result_record(outcome.result)
                await self._finish(entry, lease, EntryState.COMMITTED, sent=True, result=record, wait=False)
                return result_from_record(record, entry.key, replayed=False)
            assert error is not None
            if kind in (StepKind.VERIFY, StepKind.CHECK_REFUSAL):
                if step.why:  # waiting for the attempt to land: the lease must outlast the wait
                    log.info(
                        "write %s %s: not seen applied yet, and %s; judging it in %.1fs",
                        entry.operation,
                        entry.key,
                        step.why,
                        step.wait,
                    )
                    await self._outlast(lease, step.wait, ())
                if step.wait > 0:
                    await CLOCK.sleep(step.wait)
                read_at = CLOCK.monotonic()
                judgement = await self._verified(entry, snapshot if kind == StepKind.VERIFY else first)
                log.info(
                    "write %s %s: %s (%s); verified: %s",
                    entry.operation,
                    entry.key,
                    "outcome unknown" if kind == StepKind.VERIFY else "refused after an unknown outcome",
                    error,
                    judgement.verdict.value,
                )
                situation = attrs.evolve(
                    situation,
                    verdict=judgement.verdict,
                    read_at=read_at,
                    waited=situation.waited or bool(step.why),
                    now=CLOCK.monotonic(),
                )
            elif kind in (StepKind.COMMIT_VERIFIED, StepKind.IN_DOUBT):
                assert judgement is not None
                return await self._settle_verdict(step, entry, lease, judgement, error)
            elif kind == StepKind.FAIL:
                assert isinstance(error, APIError)
                await self._finish(entry, lease, EntryState.FAILED, sent=True, error=error_record(error))
                raise error
            elif kind == StepKind.GIVE_UP:
                await self._give_up_unsent(entry, lease, f"{step.why}: {error}", sent=True, caller=caller)
                raise error
            else:
                assert kind == StepKind.SEND_AGAIN
                delay = backoff_delay(attempt, retry_after=step.retry_after)
                log.info(
                    "write %s %s not applied (%s); sending again in %.2fs", entry.operation, entry.key, error, delay
                )
                await CLOCK.sleep(delay)
                return _Again(error if outcome.answer == Answer.UNKNOWN else unknown)

    async def _read_before(
        self, entry: LedgerEntry, lease: _Lease, caller: bool, early: asyncio.Task[Snapshot] | None = None
    ) -> Snapshot:
        """The snapshot before an attempt (``early``: the read already under way); a failed
        read gives the write up, unsent."""
        try:
            return await (early if early is not None else self._snapshot(entry))
        except (TransportError, APIError, MalformedResponse) as exc:
            await self._give_up_unsent(entry, lease, "could not read the pre-send state", caller=caller)
            if not caller:  # not the write's own answer: a 4xx of the read must not read as a refusal
                raise _Unsent(str(_before_sending(exc, entry.operation, entry.key))) from exc
            raise _before_sending(exc, entry.operation, entry.key) from None

    async def _mark(
        self,
        entry: LedgerEntry,
        lease: _Lease,
        snapshot: Snapshot,
        *,
        counted: bool,
        unknown: Exception | None,
        caller: bool,
    ) -> object:
        """Record ``snapshot`` and mark the entry sending, renewing the lease; ``_MARKED``, or
        the answer another writer recorded meanwhile. ``counted``: the intent's commit
        counted this attempt."""
        asked = CLOCK.monotonic()
        try:
            await self.ledger.mark_sending(
                entry.key,
                snapshot=snapshot,
                owner=lease.owner,
                customers=lease.names,
                lease_ttl=self._timing.lease_ttl,
                in_flight=self._timing.in_flight,
                attempt=not counted,
            )
        except LedgerError as exc:  # LeaseLost among them: this attempt never leaves
            if unknown is not None:  # but one before it may still land
                raise OutcomeUnknown(
                    entry.key, f"an earlier attempt may still land, and no other can be sent ({exc})"
                ) from exc
            settled = await self._answered_meanwhile(entry.key)
            if settled is not None:  # another writer recorded the API's answer: that is ours
                return settled
            await self._give_up_unsent(entry, lease, str(exc), caller=caller)
            raise
        lease.since = asked
        return _MARKED

    async def _answered_meanwhile(self, key: str) -> object | None:
        """The API's answer another writer recorded for ``key`` (its receipt; its refusal is
        raised), or None. A write refused a mark because it is settled must not end as an
        error that says "not applied"."""
        try:
            fresh = await self.ledger.get(key)
        except LedgerError:
            return None
        if fresh is None or fresh.state not in API_ANSWERS:
            return None
        if fresh.state == EntryState.FAILED:
            assert fresh.error is not None
            raise_recorded(fresh.error)
        assert fresh.result is not None
        return result_from_record(fresh.result, key, replayed=True)

    async def _snapshot(self, entry: LedgerEntry) -> Snapshot:
        known = await known_snapshot(self._reader, self._events, entry.operation, entry.params)
        return known if known is not None else await snapshot_of(self._reader, entry.operation, entry.params)

    async def _verified(self, entry: LedgerEntry, before: Snapshot) -> Judgement:
        judgement = await verify(self._reader, entry.operation, entry.params, before)
        verdict = effective_verdict(judgement.verdict, VERIFIERS[entry.operation].repeatable)
        if verdict != judgement.verdict:
            judgement = Judgement(verdict, "sending it again is harmless")
        instrumentation.verified(entry.operation, entry.key, judgement.verdict.value, judgement.reason)
        return judgement

    async def _settle_verdict(
        self, step: Step, entry: LedgerEntry, lease: _Lease, judgement: Judgement, error: Exception
    ) -> object:
        """Record a verdict other than not applied (the lease confirmed by the caller):
        applied (a verified receipt), or in doubt (raised)."""
        if step.kind == StepKind.COMMIT_VERIFIED:
            if step.late:
                log.warning(
                    "write %s %s: an attempt verified not applied was carried out later", entry.operation, entry.key
                )
            await self._finish(entry, lease, EntryState.COMMITTED, sent=True, result=_VERIFIED)
            return result_from_record(_VERIFIED, entry.key, replayed=False)
        reason = f"{judgement.reason} (after: {error})"
        await self._finish(entry, lease, EntryState.IN_DOUBT, sent=True, reason=reason)
        raise OutcomeUnknown(entry.key, reason) from error

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile_many(
        self,
        pages: AsyncIterable[Sequence[LedgerEntry]],
        *,
        resend: Resend = "caller",
        dry_run: bool = False,
        concurrency: int = 8,
        on_settled: Callable[[str, Settled], None] = lambda key, settled: None,
    ) -> None:
        """Settle open entries through the same verification as a write; never blocks on a lease.

        Entries go in waves whose customers are disjoint: a wave's customers are held
        in-process and leased with one ledger commit, then its entries are judged
        ``concurrency`` at a time, so the reads, not the ledger, set the pace. The next
        page is taken only once the page before the current one has ended: at most two
        are held at a time.
        """
        with self._writing:
            await self._reconcile_many(pages, resend, dry_run, concurrency, on_settled)

    async def _reconcile_many(
        self,
        pages: AsyncIterable[Sequence[LedgerEntry]],
        resend: Resend,
        dry_run: bool,
        concurrency: int,
        on_settled: Callable[[str, Settled], None],
    ) -> None:
        # Two waves at a time: the next one is leased while the last reads of this one finish.
        waves_gate = asyncio.Semaphore(2)
        # ``concurrency`` workers take the leased entries of every wave in turn: no task per entry.
        queue: asyncio.Queue[tuple[_Wave, LedgerEntry, _Lease]] = asyncio.Queue()

        async def worker() -> None:
            while True:
                wave, entry, lease = await queue.get()
                try:
                    on_settled(entry.key, await self._reconcile_leased(entry, lease, resend, dry_run))
                except Exception as exc:  # the wave raises it, once all of it is settled
                    wave.done_one(exc)
                else:
                    wave.done_one()

        async def run(entries: list[LedgerEntry]) -> None:
            names = [*(f"customer:{c}" for e in entries for c in e.customers), *(f"key:{e.key}" for e in entries)]
            async with waves_gate, self._locks.hold(names):
                owners = [self._owners.new() for _ in entries]
                wanted = list(zip(entries, owners, strict=True))
                asked = CLOCK.monotonic()
                found = await self._cleanups.taking(
                    self.ledger.lease_entries(wanted, lease_ttl=self._timing.lease_ttl),
                    lambda found: self._release_leased(found, owners),
                )
                wave = _Wave()
                for entry, (fresh, leased), owner in zip(entries, found, owners, strict=True):
                    # Every leased entry is handed out, even after a callback fails: a lease
                    # taken must be settled and given back.
                    if fresh is None or fresh.is_final:
                        wave.report(on_settled, entry.key, (ReconcileOutcome.FINAL, ""))
                    elif not leased:
                        wave.report(on_settled, entry.key, (ReconcileOutcome.BUSY, "another process holds the lease"))
                    else:
                        wave.pending += 1
                        queue.put_nowait((wave, fresh, _Lease(owner, fresh.leases, asked)))
                await wave.settled()  # the in-process locks are held until every entry is settled
                if wave.error is not None:
                    raise wave.error

        runs: list[asyncio.Task[None]] = []

        async def feed() -> None:
            before: list[asyncio.Task[None]] = []
            async for page in pages:
                current = [asyncio.create_task(run(w)) for w in _waves(page, size=wave_size(concurrency))]
                runs.extend(current)
                if before:
                    await asyncio.wait(before)
                if any(not t.cancelled() and t.exception() is not None for t in runs if t.done()):
                    return  # the pass ends with that error: take nothing more
                before = current

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        fed: BaseException | None = None
        try:
            try:
                await feed()
            except Exception as exc:  # e.g. a claim failed: what was taken is settled first
                fed = exc
            # Every wave runs to its end even when one fails, so that none is cut off
            # between leasing its customers and settling them: then the first error.
            ended = await asyncio.gather(*runs, return_exceptions=True)
        finally:
            for task in (*runs, *workers):
                task.cancel()
            await asyncio.gather(*runs, *workers, return_exceptions=True)
            # Entries leased but not yet taken by a worker (the pass was cancelled).
            left = [queue.get_nowait() for _ in range(queue.qsize())]
            if left:
                await self._cleanups.finish(
                    asyncio.gather(*(self.ledger.release(lease.names, owner=lease.owner) for _, _, lease in left))
                )
        for outcome in (*ended, fed):
            if isinstance(outcome, BaseException):
                raise outcome

    async def _release_leased(self, found: Sequence[tuple[LedgerEntry | None, bool]], owners: Sequence[str]) -> None:
        await asyncio.gather(
            *(
                self.ledger.release(entry.leases, owner=owner)
                for (entry, leased), owner in zip(found, owners, strict=True)
                if leased and entry is not None
            )
        )

    async def _reconcile_leased(self, entry: LedgerEntry, lease: _Lease, resend: Resend, dry_run: bool) -> Settled:
        try:
            return await self._reconcile_held(entry, lease, resend, dry_run)
        finally:
            await self._give_back(lease)

    async def _reconcile_held(self, entry: LedgerEntry, lease: _Lease, resend: Resend, dry_run: bool) -> Settled:
        """The driver of ``_decide.reconcile_step`` for one leased entry."""
        unsettled = entry.state in MAYBE_SENT and entry.snapshot is not None
        landed = await self._landed(entry, wait=False) if unsettled else True
        judgement: Judgement | None = None
        while True:
            step = reconcile_step(
                state=entry.state,
                has_snapshot=entry.snapshot is not None,
                landed=landed,
                verdict=None if judgement is None else judgement.verdict,
                why=(entry.reason or "") if judgement is None else judgement.reason,
                generated=entry.key_source == KeySource.GENERATED,
                resend=resend,
                dry_run=dry_run,
            )
            if step.kind == Finish.JUDGE:
                judgement = await self._judge(entry)
                if not await self._still_held(lease):
                    return (ReconcileOutcome.BUSY, "the lease on its customers ended while it was judged")
                continue
            if step.kind == Finish.SEND:
                break
            assert step.outcome is not None
            if step.kind == Finish.RECORD and not dry_run and not await self._record(entry, lease, step):
                return (ReconcileOutcome.FINAL, "settled meanwhile by another writer")
            return (step.outcome, step.detail)
        return await self._send_owned(entry, lease, None)

    async def _send_owned(
        self, entry: LedgerEntry, lease: _Lease, others: tuple[LedgerEntry, ...] | None, *, marked: bool = False
    ) -> Settled:
        """Send a leased entry no caller waits for (reconcile's, the sender's), after settling
        the earlier open writes on its customers (``others``; None: look them up)."""
        try:
            if others is None:
                others = tuple(await self.ledger.open_entries(entry.customers, exclude=entry.key))
            await self._resolve_others(entry, lease, others, caller=False)
            await self._send(ENDPOINTS_BY_PATH[entry.operation], entry, lease, marked=marked, caller=False)
        except OutcomeUnknown as exc:
            return (ReconcileOutcome.IN_DOUBT, exc.reason)
        except _Unsent as exc:
            return (ReconcileOutcome.NOT_APPLIED, str(exc))
        except LeaseLost as exc:  # nothing sent; the entry is the new lease holder's to settle
            return (ReconcileOutcome.BUSY, str(exc))
        except LedgerError:
            # Raised only before anything was sent (after a send, a failed record is logged):
            # the ledger is failing, so the pass fails, and the entry, still open, is judged
            # by the next one.
            raise
        except APIError as exc:
            return (ReconcileOutcome.FAILED if is_definitive(exc) else ReconcileOutcome.NOT_APPLIED, str(exc))
        except ShakescoError as exc:
            return (ReconcileOutcome.NOT_APPLIED, str(exc))
        return (ReconcileOutcome.RESENT, "sent again and applied")

    async def _record(self, entry: LedgerEntry, lease: _Lease, step: ReconcileStep) -> bool:
        """Record reconcile's verdict. A verdict read from the API is queued, not awaited:
        reconcile's last commit is ordered after it, and one lost to a crash leaves the entry
        open to be judged again."""
        if step.state == EntryState.COMMITTED:
            return await self._finish(entry, lease, step.state, result=_VERIFIED, expect=MAYBE_SENT, wait=False)
        if step.state == EntryState.IN_DOUBT:
            return await self._finish(entry, lease, step.state, reason=step.detail, expect=MAYBE_SENT, wait=False)
        assert step.state is not None
        return await self._finish(entry, lease, step.state, reason="not applied; reconcile did not send it")


def wave_size(concurrency: int) -> int:
    """How many entries reconcile leases in one commit, for ``concurrency`` readers."""
    return max(8 * concurrency, 64)


def _waves(entries: Sequence[LedgerEntry], size: int) -> Iterator[list[LedgerEntry]]:
    """Split entries, in order, into waves of at most ``size`` with no lease name shared in a wave."""
    pending = list(entries)
    while pending:
        wave: list[LedgerEntry] = []
        used: set[str] = set()
        rest: list[LedgerEntry] = []
        for n, entry in enumerate(pending):
            if len(wave) >= size or n >= size * 8:  # bounded look-ahead: no quadratic pile-ups
                rest.extend(pending[n:])
                break
            names = set(entry.leases)
            if names & used:
                rest.append(entry)
            else:
                wave.append(entry)
                used |= names
        yield wave
        pending = rest


_CANCELLED = "cancelled before it was sent"
_VERIFIED: dict[str, Any] = {"kind": "receipt", "tx_hash": None, "verified": True}


class _EarlyRead:
    """A snapshot read started once the customers are leased (``leased``), while the
    intent's commit is still under way; one at a time, none once ``close``d."""

    __slots__ = ("_closed", "_start", "_task")

    def __init__(self, start: Callable[[], Awaitable[Snapshot]]) -> None:
        self._start = start
        self._task: asyncio.Task[Snapshot] | None = None
        self._closed = False

    def leased(self) -> None:
        if self._closed:  # the call is gone (its begin ran on without it)
            return
        self._drop()  # a try whose begin found the key leased too: its read is not this one's
        self._task = asyncio.ensure_future(self._start())

    def take(self) -> asyncio.Task[Snapshot] | None:
        task, self._task = self._task, None
        return task

    def close(self) -> None:
        self._closed = True
        self._drop()

    def _drop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task.add_done_callback(_retrieved)
            self._task = None


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a dropped task's outcome as seen (asyncio logs an exception nobody retrieved)."""
    if not task.cancelled():
        task.exception()


class _Lease:
    """The leases one call holds, since when (monotonic, at the latest), and whether its
    final commit already gave them up."""

    __slots__ = ("names", "owner", "released", "since")

    def __init__(self, owner: str, names: tuple[str, ...], since: float) -> None:
        self.owner = owner
        self.names = names
        self.since = since
        self.released = False


class _Wave:
    """The entries of one reconcile wave still being settled, and the first error among them."""

    __slots__ = ("_done", "error", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self.error: Exception | None = None
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done_one(self, error: Exception | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.pending -= 1
        if self.pending == 0 and not self._done.done():
            self._done.set_result(None)

    def report(self, on_settled: Callable[[str, Settled], None], key: str, settled: Settled) -> None:
        try:
            on_settled(key, settled)
        except Exception as exc:
            if self.error is None:
                self.error = exc

    async def settled(self) -> None:
        if self.pending:
            await self._done


@attrs.frozen
class _Outcome:
    """One attempt, as it came back: ``result`` for a 200, else ``error``."""

    answer: Answer
    left_at: float
    error: Exception | None
    result: Any = None
    retry_after: float | None = None


@attrs.frozen
class _Again:
    """Send again; ``unknown``: why an attempt before the next one may still land."""

    unknown: Exception | None


_MARKED = object()


class _Unsent(Exception):
    """A write no caller waits for was not sent: the read before it failed (it stays owed)."""


def _before_sending(exc: Exception, operation: str, key: str) -> Exception:
    """``exc``, a failed read the guard made before sending, saying which write it was for
    (a caller of ``redeem_tokens`` would otherwise read only "GET /total-spent: cannot
    connect") and that nothing was sent."""
    exc.args = (f"{operation} (key {key!r}): the read before sending failed, nothing was sent: {exc}", *exc.args[1:])
    if isinstance(exc, TransportError):
        exc.sent = False
    return exc
