"""What the ledger stores about one guarded write."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs

from .._errors import LedgerError
from ._json import canonical_json

__all__ = [
    "API_ANSWERS",
    "FINAL_STATES",
    "MAYBE_SENT",
    "OPEN_STATES",
    "SENDABLE_STATES",
    "UNSENT",
    "EntryState",
    "Settlement",
    "not_sendable",
    "Intent",
    "KeySource",
    "LedgerEntry",
    "adoptable",
    "lease_names",
    "params_digest",
]


class EntryState(enum.StrEnum):
    """Where a guarded write stands. Each state is a recovery point."""

    RECORDED = "recorded"
    """Intent is durable; the request has provably not been sent (safe to send)."""
    STAGED = "staged"
    """Recorded through the application's own transaction (``client.staged(conn)``): owed once
    that transaction commits, provably not sent yet; the sender sends it."""
    SENDING = "sending"
    """The request may have been sent; only verification can tell whether it applied."""
    COMMITTED = "committed"
    """Applied: answered 200, or proven applied by reading state back."""
    FAILED = "failed"
    """The API refused it with a definitive error; it was not applied."""
    IN_DOUBT = "in_doubt"
    """May or may not have applied and the reads could not tell; never re-sent automatically."""
    ABANDONED = "abandoned"
    """Proven not applied and not re-sent (an SDK-made key whose caller is gone)."""


# The named groups of states; nothing else in the SDK spells out a set of states.
MAYBE_SENT = (EntryState.SENDING, EntryState.IN_DOUBT)
"""A request may have left: only reading state back can settle these."""
UNSENT = (EntryState.STAGED, EntryState.RECORDED)
"""Provably not sent yet, and owed: the sender's to send."""
OPEN_STATES = (*UNSENT, *MAYBE_SENT)
"""Not settled: reconcile's to finish."""
API_ANSWERS = (EntryState.COMMITTED, EntryState.FAILED)
"""The API's own answer: nothing leaves these for another state."""
FINAL_STATES = frozenset({*API_ANSWERS, EntryState.ABANDONED})
SENDABLE_STATES = (*OPEN_STATES, EntryState.ABANDONED)
"""The states an entry may be marked ``sending`` from: never the API's own answer
(committed, failed), which a new attempt would reopen. Each backend checks it in the
statement that marks the entry."""


MOVES_INTO: dict[EntryState, tuple[EntryState, ...]] = {
    EntryState.STAGED: (),  # made only by staging, in the application's transaction
    EntryState.RECORDED: OPEN_STATES,
    EntryState.SENDING: SENDABLE_STATES,
    EntryState.IN_DOUBT: OPEN_STATES,
    EntryState.COMMITTED: (*SENDABLE_STATES, EntryState.COMMITTED),
    EntryState.FAILED: (*OPEN_STATES, EntryState.FAILED),
    EntryState.ABANDONED: SENDABLE_STATES,
}
"""The state machine: from which states an entry may move into each. Nothing leaves the
API's own answers (committed, failed) for another state, and a given-up write is not
reopened but by its caller's retry (``sending``) or a person (``committed``). Both
backends apply it in the statement that moves the entry."""


def _states(states: Iterable[EntryState] | None) -> tuple[EntryState, ...] | None:
    return None if states is None else tuple(states)


def _names(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


@attrs.frozen
class Settlement:
    """One entry's move to ``state`` (``Ledger.settle``), and what goes with it.

    ``result`` / ``error``: the receipt or the refusal, for ``committed`` / ``failed``;
    ``reason``: why, for any other state. ``expect``: move only from one of these states
    (else the state table's moves into ``state``, and a forbidden move raises).
    ``drop_snapshot``: forget the pre-send snapshot once a later write has made it stale.
    ``release``: give up ``owner``'s leases on these names in the same commit.
    ``wait=False``: a backend may return once the move is queued rather than durable,
    provided everything asked of the ledger afterwards is ordered after it.
    """

    state: EntryState
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    expect: tuple[EntryState, ...] | None = attrs.field(default=None, converter=_states)
    drop_snapshot: bool = False
    release: tuple[str, ...] = attrs.field(default=(), converter=_names)
    owner: str | None = None
    wait: bool = True


def allowed_moves(state: EntryState, expect: Sequence[EntryState] | None) -> tuple[EntryState, ...]:
    """The states an entry may be moved into ``state`` from: the table's, narrowed to ``expect``."""
    allowed = MOVES_INTO[state]
    return allowed if expect is None else tuple(s for s in allowed if s in expect)


def forbidden_move(key: str, current: EntryState, state: EntryState) -> LedgerError:
    return LedgerError(f"entry {key!r} cannot move from {current.value} to {state.value}")


def not_sendable(key: str) -> LedgerError:
    """What marking an entry outside ``SENDABLE_STATES`` (or a missing one) raises."""
    return LedgerError(f"entry {key!r} is settled (or gone): it cannot be sent again; nothing was sent")


class KeySource(enum.StrEnum):
    """Who chose the idempotency key; reconcile re-sends only caller-chosen ones by default."""

    CALLER = "caller"
    GENERATED = "generated"


Params = dict[str, str | int | bool]


def lease_names(customers: tuple[str, ...], key: str) -> tuple[str, ...]:
    """What a write leases: its customers, or, for a write with none, its own key."""
    return customers or (f"\x1fkey:{key}",)  # a control character: no customer ref can clash


def params_digest(operation: str, params: Params) -> str:
    """A stable digest of the operation and its canonical parameters."""
    return hashlib.sha256(canonical_json([operation, params]).encode()).hexdigest()


@attrs.frozen
class Intent:
    """A write about to be recorded: what the guard knows before sending anything."""

    key: str
    operation: str
    params: Params
    customers: tuple[str, ...]
    key_source: KeySource
    digest: str = attrs.field(
        init=False, repr=False, default=attrs.Factory(lambda i: params_digest(i.operation, i.params), takes_self=True)
    )
    """The digest of operation and parameters, computed once."""

    @property
    def leases(self) -> tuple[str, ...]:
        """What this write leases: its customers, or its own key when it has none."""
        return lease_names(self.customers, self.key)


@attrs.frozen
class LedgerEntry:
    """One row of the ledger. ``params`` are the wire values, amounts as exact decimal strings."""

    key: str
    operation: str
    params: Params
    params_digest: str
    customers: tuple[str, ...]
    key_source: KeySource
    state: EntryState
    attempts: int
    created_at: datetime
    updated_at: datetime
    snapshot: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    in_flight: float | None = None
    """Seconds after ``updated_at`` that the last request sent for it may still reach the
    API, as the process that marked it sending reckoned (its timeout, ``verify_delay`` and a
    margin); None if not recorded."""

    @property
    def is_final(self) -> bool:
        """Whether the entry is settled (committed, failed or abandoned)."""
        return self.state in FINAL_STATES

    @property
    def leases(self) -> tuple[str, ...]:
        """What a write of this entry leases: its customers, or its own key when it has none."""
        return lease_names(self.customers, self.key)


def adoptable(entry: LedgerEntry, intent: Intent) -> bool:
    """Whether ``Ledger.begin(adopt=True)`` may take ``entry`` as ``intent``'s own: the same
    write, provably never sent (an entry that may have been sent is settled by
    verification, never taken over)."""
    return entry.state in UNSENT and entry.params_digest == intent.digest and entry.operation == intent.operation
