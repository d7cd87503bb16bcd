"""The SQLite ledger's lease rows: taken, renewed, given back, read and forgotten.

Every statement on the ``leases`` table is here, so that each row carries both of the
clocks ``_clock.LeaseEnd`` judges it by, and the process that took it (``_processes``): a
lease whose process has exited ends at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from ._clock import BOOT, LeaseEnd, Moment
from ._processes import holder_exited, holder_for
from ._sqlite_rows import chunks, marks

__all__ = ["forget_ended", "give_back", "held", "renew", "take"]

_TAKE_SQL = (
    "INSERT INTO leases (business, customer, owner, expires_at, boot, mono_from, mono_until, holder)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (business, customer) DO UPDATE SET owner = excluded.owner,"
    " expires_at = excluded.expires_at, boot = excluded.boot, mono_from = excluded.mono_from,"
    " mono_until = excluded.mono_until, holder = excluded.holder"
)
# A released lease keeps its row, ended now: begin's fence asks who held it lately.
_GIVE_BACK_SQL = (
    "UPDATE leases SET expires_at = MIN(expires_at, ?), mono_until = MIN(mono_until, ?)"
    " WHERE business = ? AND customer = ? AND owner = ?"
)
_RENEW_SQL = (
    "UPDATE leases SET expires_at = ?, boot = ?, mono_from = ?, mono_until = ?"
    " WHERE business = ? AND customer = ? AND owner = ?"
)


def take(db: sqlite3.Connection, leases: Iterable[tuple[str, str, str, LeaseEnd]]) -> None:
    """Lease each ``(business, customer, owner, end)``, over whatever row was there."""
    db.executemany(
        _TAKE_SQL, [(business, name, owner, *end, holder_for(owner)) for business, name, owner, end in leases]
    )


def renew(db: sqlite3.Connection, business: str, names: Sequence[str], owner: str, end: LeaseEnd) -> int:
    """Extend ``owner``'s rows on ``names`` (lapsed or not) to ``end``; how many there were."""
    return db.executemany(_RENEW_SQL, [(*end, business, name, owner) for name in names]).rowcount


def give_back(db: sqlite3.Connection, leases: Iterable[tuple[str, str, str]], at: Moment) -> None:
    """End each ``(business, customer, owner)`` lease at ``at``, if that owner still holds it."""
    db.executemany(_GIVE_BACK_SQL, [(at.wall, at.mono, business, name, owner) for business, name, owner in leases])


def held(db: sqlite3.Connection, business: str, names: Sequence[str], now: Moment) -> dict[str, tuple[str, LeaseEnd]]:
    """The lease row of each of ``names`` that has one, ended or not: its owner and end (by
    ``now`` at the latest if the process that took it has exited)."""
    found: dict[str, tuple[str, LeaseEnd]] = {}
    for chunk in chunks(sorted(set(names))):
        sql = (
            "SELECT customer, owner, expires_at, boot, mono_from, mono_until, holder FROM leases"
            f" WHERE business = ? AND customer IN ({marks(len(chunk))})"
        )
        for name, owner, *clocks, holder in db.execute(sql, (business, *chunk)):
            end = LeaseEnd(*clocks)
            if holder is not None and end.lasts_past(now, now) and holder_exited(holder, owner):
                end = end.cut_short(now)
            found[name] = (owner, end)
    return found


def forget_ended(db: sqlite3.Connection, now: Moment, memory: float) -> None:
    """Delete the leases that ended more than ``memory`` seconds ago by both clocks."""
    db.execute(
        "DELETE FROM leases WHERE expires_at < ? AND (boot IS NULL OR boot != ? OR mono_until IS NULL"
        " OR mono_until < ? OR mono_from > ?)",
        (now.wall - memory, BOOT, now.mono - memory, now.mono),
    )
