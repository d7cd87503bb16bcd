"""Taking a write's snapshot and judging it, by the verifier its endpoint row declares.

The verifiers themselves (what to read, how to judge) live beside the endpoints' rows
(``endpoints/_proofs.py``); this module is how the guard uses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import APIError, MalformedResponse, TransportError
from ..endpoints import ENDPOINTS_BY_PATH, EndpointMethods
from ..endpoints._proofs import Judgement, Snapshot, Verdict, Verifier
from ._events import EventKinds

__all__ = [
    "VERIFIERS",
    "Judgement",
    "Snapshot",
    "Verdict",
    "Verifier",
    "changes_events",
    "compare",
    "known_snapshot",
    "snapshot_of",
    "verify",
]

Params = Mapping[str, Any]

VERIFIERS: Mapping[str, Verifier] = {
    e.path: e.proof for e in ENDPOINTS_BY_PATH.values() if e.is_write and e.proof is not None
}
"""Each write endpoint's verifier, by path: a view of the endpoint rows."""

_ONE_TIME = {"kind": "one_time"}


def _verifier(operation: str, before: Snapshot) -> Verifier:
    verifier = VERIFIERS[operation]
    if verifier.one_time is not None and before.get("kind") == "one_time":
        return verifier.one_time
    return verifier


async def known_snapshot(
    reader: EndpointMethods, events: EventKinds, operation: str, params: Params
) -> Snapshot | None:
    """A snapshot that needs no read of customer state, or None when one must be taken.

    Repeatable writes need none; a claim of a one-time event is judged by
    ``/has-claimed-event`` alone, whatever the state before.
    """
    verifier = VERIFIERS[operation]
    if verifier.repeatable:
        return {}
    if verifier.one_time is not None and await events.one_time(reader, params["event_name"]):
        return dict(_ONE_TIME)
    return None


async def snapshot_of(reader: EndpointMethods, operation: str, params: Params) -> Snapshot:
    """The pre-send state. Raises the read's error when it cannot be taken."""
    return await VERIFIERS[operation].read(reader, params)


async def verify(reader: EndpointMethods, operation: str, params: Params, before: Snapshot) -> Judgement:
    """Read the state now and judge it against ``before``."""
    verifier = _verifier(operation, before)
    try:
        after = await verifier.read(reader, params)
    except (TransportError, APIError, MalformedResponse) as exc:
        return Judgement(Verdict.UNREADABLE, f"verification read failed: {exc}")
    return verifier.judged(params, before, after)


def compare(operation: str, params: Params, before: Snapshot, after: Snapshot) -> Judgement | None:
    """Judge ``after``, a later pre-send snapshot of the same write, against ``before``.

    None when either was not read from the API (a repeatable write's, a one-time claim's):
    such a snapshot says nothing about the state.
    """
    verifier = _verifier(operation, before)
    if verifier.repeatable or verifier is VERIFIERS[operation].one_time or _verifier(operation, after) is not verifier:
        return None
    return verifier.judged(params, before, after)


def changes_events(operation: str) -> bool:
    """Whether the write changes an event's kind (the guard's cache then forgets it)."""
    return VERIFIERS[operation].changes_events
