"""Reconcile: settle what crashes and lost answers left open in the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

import attrs

from ._errors import ValidationError
from ._timing import CLAIM_TTL, CLOCK
from ._validate import row_limit, seconds
from .guard import WriteGuard
from .guard._outcome import ReconcileOutcome
from .guard._wrapper import Resend, Settled, wave_size
from .ledger import EntryState, LedgerEntry
from .ledger._entry import OPEN_STATES

__all__ = [
    "OUTCOMES",
    "ReconcileSummary",
    "check_options",
    "reconcile",
    "reconcile_one",
    "repeat_passes",
    "run_periodically",
]

log = logging.getLogger("shakesco_async.reconcile")
OUTCOMES = tuple(ReconcileOutcome)
_PAGES_MAX = 16  # waves in the largest page claimed at once
MAX_CONCURRENCY = 1000
"""Most reads a pass makes at once: each worker is a task, and each leases a wave of entries."""

Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each entry; total counts what the pass has claimed so
far, and grows while it claims page after page."""


@attrs.frozen
class ReconcileSummary:
    """What a reconcile pass did (or, with ``dry_run``, would do).

    ``counts`` per outcome: committed (verified applied), resent (proven not applied,
    sent again and applied), failed (the API refused it), not_applied (proven not
    applied, left for its caller), abandoned (an SDK-made key, proven not applied, not
    sent), in_doubt (the reads cannot tell; see ``in_doubt``), busy (another process
    held the lease), final (settled meanwhile).
    """

    examined: int
    counts: dict[str, int]
    """Per outcome; the keys are ``ReconcileOutcome`` members (strings: ``counts["committed"]``)."""
    in_doubt: tuple[tuple[str, str], ...]
    dry_run: bool = False

    @property
    def clean(self) -> bool:
        """True when nothing is left in doubt."""
        return not self.in_doubt


async def reconcile(
    guard: WriteGuard,
    *,
    older_than: float = 30.0,
    limit: int | None = None,
    concurrency: int = 8,
    resend: Resend = "caller",
    dry_run: bool = False,
    progress: Progress | None = None,
    states: Sequence[EntryState] = OPEN_STATES,
) -> ReconcileSummary:
    """Settle every open entry (of ``states``) older than ``older_than`` seconds.

    Entries are verified by reading state back; only writes proven not applied are
    sent again, and only those whose key the caller chose (``resend="caller"``, the
    default), since a caller that got an error for an SDK-made key may have retried
    under a new one. Safe to run from several processes at once: each pass claims its
    entries (concurrent passes get disjoint sets), settles each under its customers'
    lease, and leaves one that a live write is busy with for the next pass. Entries are
    claimed a page at a time, the next while the last is worked on.
    """
    check_options(older_than=older_than, concurrency=concurrency, resend=resend)
    limit = row_limit("limit", limit)
    pass_id = uuid.uuid4().hex
    claims: list[tuple[str, list[str]]] = []  # (owner, keys) per page, given back at the end
    counts: Counter[str] = Counter()
    doubts: list[tuple[str, str]] = []
    examined = 0

    async def pages() -> AsyncGenerator[list[LedgerEntry], None]:
        nonlocal examined
        if dry_run:  # look, do not claim
            entries = await guard.ledger.entries(states=states, older_than=older_than, limit=limit)
            examined = len(entries)
            if entries:
                yield entries
            return
        # Claimed a page at a time, the next while this one is worked on: the reads start
        # at once, and a large backlog is never all in memory (nor all claimed, its claims
        # lapsing before their turn). The cutoff stays where the pass began: entries this
        # pass left open, or that turn old meanwhile, are the next pass's.
        started = CLOCK.time()
        size, after, previous = 2 * wave_size(concurrency), None, frozenset[str]()
        while limit is None or examined < limit:
            want = size if limit is None else min(size, limit - examined)
            owner = f"reconcile:{pass_id}:{len(claims)}"
            # Cancelled while the claim is being made, the claim still ends and is given back:
            # its entries would otherwise stay out of every pass until the claims lapse.
            page = await guard.cleanups.taking(
                guard.ledger.claim_open(
                    owner=owner,
                    older_than=older_than + (CLOCK.time() - started),
                    limit=want,
                    ttl=CLAIM_TTL,
                    after=after,
                    states=states,
                ),
                functools.partial(_unclaim, guard, owner),
            )
            claims.append((owner, [e.key for e in page]))
            full = len(page) == want
            # The page before ended at ``after``: an entry of it can come again only if its
            # claim lapsed, and it is not judged twice in one pass.
            page = [e for e in page if e.key not in previous]
            if page:
                examined += len(page)
                yield page
                after, previous = page[-1].created_at, frozenset(e.key for e in page)
            if not full:
                return
            size = min(4 * size, _PAGES_MAX * wave_size(concurrency))

    def settled(key: str, outcome: Settled) -> None:
        name, detail = outcome
        counts[name] += 1
        if name == ReconcileOutcome.IN_DOUBT:
            doubts.append((key, detail))
        if progress is not None:
            progress(sum(counts.values()), examined)

    try:
        async with contextlib.aclosing(pages()) as feed:
            await guard.reconcile_many(
                feed, resend=resend, dry_run=dry_run, concurrency=concurrency, on_settled=settled
            )
    finally:
        # Given back even if the pass is cancelled again while it gives them back.
        given = guard.cleanups.finish(
            asyncio.gather(*(guard.ledger.unclaim(owner, keys) for owner, keys in claims if keys))
        )
        await given
    summary = ReconcileSummary(
        examined=examined,
        counts={name: counts.get(name, 0) for name in OUTCOMES},
        in_doubt=tuple(sorted(doubts)),
        dry_run=dry_run,
    )
    if examined:
        log.info("reconciled %d entries: %s", examined, {k: v for k, v in summary.counts.items() if v})
    return summary


async def reconcile_one(guard: WriteGuard, entry: LedgerEntry) -> Settled:
    """Reconcile's outcome for one entry the caller has claimed (``resend="caller"``)."""
    settled: list[Settled] = []

    async def page() -> AsyncGenerator[list[LedgerEntry], None]:
        yield [entry]

    await guard.reconcile_many(page(), concurrency=1, on_settled=lambda key, outcome: settled.append(outcome))
    return settled[0]


def _unclaim(guard: WriteGuard, owner: str, taken: list[LedgerEntry]) -> Awaitable[None]:
    return guard.ledger.unclaim(owner, [e.key for e in taken])


def check_options(*, older_than: float, concurrency: int, resend: str, interval: float | None = None) -> None:
    """Refuse bad reconcile settings up front, not inside a background task."""
    if interval is not None:
        seconds("interval", interval, positive=True)
    seconds("older_than", older_than)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValidationError(f"concurrency must be an int from 1 to {MAX_CONCURRENCY}, got {concurrency!r}")
    if resend not in ("caller", "all", "none"):
        raise ValidationError(f"resend must be 'caller', 'all' or 'none', got {resend!r}")


async def run_periodically(
    guard: WriteGuard, interval: float, *, older_than: float, concurrency: int, resend: Resend
) -> None:
    """Reconcile every ``interval`` seconds until cancelled; errors are logged, never lost."""

    async def one_pass() -> bool:
        summary = await reconcile(guard, older_than=older_than, concurrency=concurrency, resend=resend)
        for key, reason in summary.in_doubt:
            log.warning("write %s is still in doubt: %s", key, reason)
        return False

    await repeat_passes(one_pass, lambda: CLOCK.sleep(interval), what="reconcile pass", retry_in=interval)


async def repeat_passes(
    one_pass: Callable[[], Awaitable[bool]], pause: Callable[[], Awaitable[None]], *, what: str, retry_in: float
) -> None:
    """Run ``one_pass`` until cancelled, with ``pause()`` between passes unless a pass says to
    go on at once (True). A failed pass is logged, and the next one starts ``retry_in`` later."""
    while True:
        try:
            again = await one_pass()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %.1fs", what, retry_in)
            await CLOCK.sleep(retry_in)
            continue
        if not again:
            await pause()
