"""A person's verdict on a write no read could decide: "I checked with Shakesco: it was
applied (tx 0x…)", or "it was not". Recorded with who, when and why, under the lease of
the write's customers, and never while its last request may still be on its way."""

from __future__ import annotations

import getpass
import socket
import uuid
from typing import TYPE_CHECKING, Any

from .._errors import LedgerError, ValidationError
from .._validate import text
from ._entry import SENDABLE_STATES, EntryState, LedgerEntry, Settlement

if TYPE_CHECKING:
    from ._base import Ledger

__all__ = ["RESOLVABLE", "resolve_by_hand"]

RESOLVABLE = SENDABLE_STATES
"""What a person may resolve: writes left open or given up, never a final answer of the API's."""
_UNKNOWN_FLIGHT = 60.0  # seconds, for an entry that did not record its sender's reckoning
_LEASE = 30.0


def _someone() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def resolve_by_hand(
    ledger: Ledger, key: str, *, applied: bool, note: str, tx_hash: str | None = None, by: str | None = None
) -> LedgerEntry:
    """See ``Ledger.resolve``."""
    if not isinstance(applied, bool):
        raise ValidationError(f"applied must be True or False, got {type(applied).__name__}")
    note = text("note", note, 1000)
    who = text("by", by, 256) if by is not None else _someone()
    if tx_hash is not None:
        if not applied:
            raise ValidationError("tx_hash goes only with applied=True")
        tx_hash = text("tx_hash", tx_hash)
    found = await ledger.get(key)
    if found is None:
        raise LedgerError(f"no entry {key!r} in this ledger")
    _check(found)
    owner = f"resolve:{uuid.uuid4().hex}"
    if await ledger.acquire(found.leases, owner=owner, lease_ttl=_LEASE) is not None:
        raise LedgerError(f"a process is writing customers {', '.join(found.customers)} now; try again shortly")
    moved = False
    try:
        entry = await ledger.get(key)  # again, under the lease: what a writer may have done meanwhile
        assert entry is not None
        _check(entry)
        await _not_in_flight(ledger, entry)
        when = (await ledger.now()).isoformat(timespec="seconds")
        verdict = "applied" + (f" (tx {tx_hash})" if tx_hash else "") if applied else "not applied"
        reason = f"resolved by hand by {who} at {when}: {verdict}: {note}"
        details: dict[str, Any] = {"reason": reason, "expect": (entry.state,)}
        if applied:
            resolution = {"by": who, "at": when, "note": note}
            details["result"] = {"kind": "receipt", "tx_hash": tx_hash, "verified": False, "resolved": resolution}
        # Not applied: given up, like an SDK-made key proven not applied. Reconcile leaves it;
        # the caller's retry with the same key sends it, once.
        state = EntryState.COMMITTED if applied else EntryState.ABANDONED
        moved = await ledger.settle(key, Settlement(state, release=entry.leases, owner=owner, **details))
    finally:
        if not moved:
            await ledger.release(found.leases, owner=owner)
    if not moved:
        raise LedgerError(f"entry {key!r} changed while it was being resolved; look at it again")
    final = await ledger.get(key)
    assert final is not None
    return final


def _check(entry: LedgerEntry) -> None:
    if entry.state not in RESOLVABLE:
        raise LedgerError(
            f"entry {entry.key!r} is {entry.state.value}: the API's own answer, not for a person to change"
        )


async def _not_in_flight(ledger: Ledger, entry: LedgerEntry) -> None:
    if entry.state != EntryState.SENDING:
        return
    flight = entry.in_flight if entry.in_flight is not None else _UNKNOWN_FLIGHT
    left = flight - (await ledger.now() - entry.updated_at).total_seconds()
    if left > 0:
        raise LedgerError(f"entry {entry.key!r} may still be on its way to the API for {left:.0f}s: resolve it after")
