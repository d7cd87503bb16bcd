"""The times that keep the guard safe, in one place, and the clock they are read on.

Every rule below protects one thing: a request the API may still be carrying out is
never judged, nor sent again, before it can no longer land. The guard reads time only
through a ``Clock``, so tests can run its waits on a virtual one (``VirtualClock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from .guard._settings import GuardSettings

__all__ = [
    "CLAIM_TTL",
    "EXTRA_WAIT",
    "FENCE_MARGIN",
    "FENCE_MAX_AGE",
    "IN_FLIGHT_MARGIN",
    "LEASE_MEMORY",
    "MARK_FRESH",
    "CLOCK",
    "SYSTEM_CLOCK",
    "Clock",
    "SystemClock",
    "Timing",
    "VirtualClock",
    "use_clock",
]

IN_FLIGHT_MARGIN = 1.0
"""Seconds past the client's timeout and ``verify_delay`` before a request sent under a
lease that has since ended is taken to have reached the API, or never to. Invariant:
> 0, so that clocks of the processes sharing a ledger may differ a little."""

MARK_FRESH = IN_FLIGHT_MARGIN / 2
"""Seconds a request may leave after the commit that marked it ``sending`` (its flight is
counted from the mark). Invariant: < ``IN_FLIGHT_MARGIN``; the rest of that margin is
for the clocks. Past it, the entry is read, marked and its lease renewed again."""

FENCE_MARGIN = 1.0
"""Seconds a fence starts before the snapshot read it guards: the processes of one host
share a clock, but not to the microsecond."""

FENCE_MAX_AGE = 600.0
"""Seconds a snapshot read before its intent's commit is trusted. Invariant: <
``LEASE_MEMORY``: a fence proves no lease was taken since, so the ledger must remember
every lease that ended within it."""

LEASE_MEMORY = 3600.0
"""Seconds the SQLite ledger remembers an ended lease (for fences)."""

EXTRA_WAIT = 2.0
"""Seconds a write waits for the other customer of an earlier open write it must settle.
Invariant: short of ``lease_wait``: the process holding that customer may be waiting the
same way for one this write holds, and both must give up."""

CLAIM_TTL = 300.0
"""Seconds a reconcile pass's claim on entries outlasts a reconciler that crashed."""


class Clock(Protocol):
    """Where the guard reads time and waits."""

    def monotonic(self) -> float:
        """Seconds on a clock nobody sets (deadlines, leases' ages)."""

    def time(self) -> float:
        """Seconds since the epoch (what other processes compare)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""


class SystemClock:
    """The process's clocks and the event loop's sleep."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


class _Active:
    """The clock the SDK reads: the system's, unless a test put another in (``use_clock``).
    One for the process, as the ledger's lease times and the guard's waits must agree.

    ``monotonic`` and ``time`` are the clock's own methods, bound when it is put in: a
    write reads the time several times. (The system clock's still look ``time.time`` up at
    each call, so a test that patches it, or freezegun, is obeyed.)"""

    def __init__(self) -> None:
        self.clock: Clock = SYSTEM_CLOCK
        self.monotonic: Callable[[], float] = SYSTEM_CLOCK.monotonic
        self.time: Callable[[], float] = SYSTEM_CLOCK.time

    def use(self, clock: Clock) -> None:
        self.clock, self.monotonic, self.time = clock, clock.monotonic, clock.time

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)


CLOCK = _Active()
"""Where the guard, the ledger and reconcile read time and wait."""


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Read time on ``clock`` inside the block (tests: a ``VirtualClock``)."""
    before = CLOCK.clock
    CLOCK.use(clock)
    try:
        yield clock
    finally:
        CLOCK.use(before)


class VirtualClock:
    """A clock whose waits take no real time: ``sleep(s)`` moves it ``s`` seconds ahead
    at once (and lets other tasks run). Both readings are the system's plus the time
    skipped, so it stays consistent with anything that reads the real clock meanwhile
    (a ledger's lease times): time only ever runs faster, never backwards."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self.slept: list[float] = []
        """Every wait asked of it, in order."""

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def time(self) -> float:
        return time.time() + self.skipped

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.skipped += seconds
        await asyncio.sleep(0)


@attrs.frozen
class Timing:
    """The guard's time rules for one client: its ``timeout``, ``max_retries`` and settings."""

    lease_ttl: float
    """How long a lease lasts unless renewed."""
    lease_wait: float
    """How long a write waits for another process's lease before giving up."""
    lease_slack: float
    """How long a lease may have run when its request leaves and still outlast it, the
    wait before verifying included. Invariant: > 0 (``GuardSettings.check``)."""
    verify_delay: float
    """The wait after an unknown outcome before reading state back."""
    landing: float
    """``timeout + verify_delay``: after it left, an attempt has landed or never will."""

    @classmethod
    def of(cls, settings: GuardSettings, timeout: float, max_retries: int) -> Timing:
        return cls(
            lease_ttl=settings.resolved_lease_ttl(timeout, max_retries),
            lease_wait=settings.resolved_lease_wait(timeout, max_retries),
            lease_slack=settings.lease_slack(timeout, max_retries),
            verify_delay=settings.verify_delay,
            landing=timeout + settings.verify_delay,
        )

    @property
    def in_flight(self) -> float:
        """How long after its mark an entry's request may still land: what other processes
        wait before judging it."""
        return self.landing + IN_FLIGHT_MARGIN

    @property
    def mark_fresh(self) -> float:
        """How long a mark made by the intent's commit may be used by the first attempt."""
        return min(self.lease_slack, MARK_FRESH)

    def flight_left(self, sender_in_flight: float | None, age: float) -> float:
        """Seconds until a request marked ``age`` seconds ago can no longer land.

        The sender's reckoning when it is longer (a process with a shorter timeout would
        otherwise read back while the request may be on its way); a clock stepped back
        makes it no longer than one flight.
        """
        flight = max(self.in_flight, sender_in_flight or 0.0)
        return min(flight - age, flight)
