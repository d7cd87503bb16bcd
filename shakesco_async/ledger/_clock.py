"""When a lease ends, by two clocks.

A lease must outlive the request sent under it, and that request's deadline runs on the
monotonic clock (the event loop's). The wall clock can be stepped (an NTP correction, a
clock set by hand, a host resumed from suspend) while a request is in flight; a lease
judged by it alone would lapse under the request, and another process would send again.
So each lease also records this boot's monotonic clock, which nobody sets and which every
process of the host shares, and a lease lasts while *either* clock says it does: a
stepped wall clock can then only make a lease last longer, never shorter. A lease from
another boot (or a system without a boot id) is judged by the wall clock alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .._timing import CLOCK

__all__ = ["BOOT", "LeaseEnd", "Moment", "boot_id", "now"]


def boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str:
    """This boot's id (Linux), or "" where there is none: then leases use the wall clock only."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


BOOT = boot_id()


class Moment(NamedTuple):
    """One instant, read on both clocks."""

    wall: float
    mono: float

    def shifted(self, seconds: float) -> Moment:
        """This moment moved by ``seconds`` (earlier if negative) on both clocks."""
        return Moment(self.wall + seconds, self.mono + seconds)


def now() -> Moment:
    return Moment(CLOCK.time(), CLOCK.monotonic())


class LeaseEnd(NamedTuple):
    """When a lease ends (or ended): on the wall clock and, if known, on the monotonic clock
    of boot ``boot``, for a lease taken at ``mono_from`` on it."""

    wall: float
    boot: str | None = None
    mono_from: float | None = None
    mono: float | None = None

    @classmethod
    def after(cls, start: Moment, ttl: float) -> LeaseEnd:
        """A lease taken at ``start`` for ``ttl`` seconds."""
        return cls(start.wall + ttl, BOOT or None, start.mono, start.mono + ttl)

    def _monotonic(self, now: Moment) -> float | None:
        # A lease taken "later" than now on this clock comes from another time namespace
        # (a container restored from a checkpoint): its monotonic times mean nothing here.
        if self.mono is None or self.mono_from is None or not BOOT or self.boot != BOOT or self.mono_from > now.mono:
            return None
        return self.mono

    def lasts_past(self, moment: Moment, now: Moment) -> bool:
        """Whether the lease had not ended by ``moment``, by either clock (``now``: the present)."""
        mono = self._monotonic(now)
        return self.wall > moment.wall or (mono is not None and mono > moment.mono)

    def reaches(self, moment: Moment, now: Moment) -> bool:
        """Whether the lease lasted until ``moment`` at least, by either clock."""
        mono = self._monotonic(now)
        return self.wall >= moment.wall or (mono is not None and mono >= moment.mono)

    def cut_short(self, at: Moment) -> LeaseEnd:
        """This lease, ended by ``at`` at the latest on both clocks."""
        return self._replace(wall=min(self.wall, at.wall), mono=None if self.mono is None else min(self.mono, at.mono))

    def wall_end(self, now: Moment) -> float:
        """When it ends, on the wall clock: the later of its own and the monotonic clock's."""
        mono = self._monotonic(now)
        return self.wall if mono is None else max(self.wall, now.wall + (mono - now.mono))
