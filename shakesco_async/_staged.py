"""Staged writes: recorded in the application's own transaction, sent once it commits.

``client.staged(conn)`` has every write method of the client; each validates its input,
records the write as a ``staged`` ledger entry through ``conn`` (inside the application's
open transaction) and returns its idempotency key at once. Commit, and the write is owed;
roll back, and it never existed. The sender (``client.start_sender()``) sends what was
staged through the write guard, oldest first, so a customer's writes go in staging order;
``client.result_of(key)`` waits for a write's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from ._errors import LedgerError, OutcomeUnknown, ShakescoError, ValidationError
from ._timing import CLOCK
from .endpoints import Endpoint
from .endpoints.cashback import CashbackEndpoints
from .endpoints.events import EventEndpoints
from .endpoints.governance import GovernanceEndpoints
from .endpoints.promotions import PromotionEndpoints
from .endpoints.rewards import RewardEndpoints
from .endpoints.staking import StakingEndpoints
from .endpoints.transfers import TransferEndpoints
from .endpoints.vesting import VestingEndpoints
from .guard._names import sdk_key
from .guard._outcome import raise_recorded, result_from_record
from .guard._wrapper import check_idempotency_key, intent_for
from .ledger import EntryState, KeySource, Ledger
from .ledger._staging import Stager

if TYPE_CHECKING:
    pass

__all__ = ["NotApplied", "StagedWrites", "result_of"]

log = logging.getLogger("shakesco_async.sender")
P = ParamSpec("P")
_Staged = Callable[Concatenate["StagedWrites", P], Awaitable[str]]


class NotApplied(ShakescoError):
    """``result_of``: the write was proven not applied and given up (its caller was told so);
    sending it again takes a call with the same idempotency key."""


def _staged(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, Any]],
) -> Callable[Concatenate[StagedWrites, P], Awaitable[str]]:
    """The client's write method, staged: same parameters, returns the idempotency key."""
    staged: Callable[Concatenate[StagedWrites, P], Awaitable[str]] = method
    return staged


class StagedWrites:
    """Every write method of the client, recorded through ``conn`` in its open transaction.

    Each returns the write's idempotency key (``idempotency_key=`` if given, else an
    SDK-made one) once the entry is recorded; nothing is sent until the transaction has
    committed and the sender takes it. Bad input raises before anything is recorded.
    """

    def __init__(self, record: Stager, conn: object, check_open: Callable[[], None]) -> None:
        self._record = record
        self._conn = conn
        self._check_open = check_open

    def __repr__(self) -> str:
        return f"StagedWrites(conn={type(self._conn).__module__}.{type(self._conn).__name__})"

    async def _call(self, endpoint: Endpoint[Any], /, *, idempotency_key: str | None = None, **params: Any) -> str:
        self._check_open()
        if not endpoint.is_write:
            raise ValidationError(f"{endpoint.name}() is a read: only writes can be staged")
        wire = endpoint.prepare(params)
        key = check_idempotency_key(idempotency_key) if idempotency_key is not None else sdk_key()
        # The application holds the key (it is returned), and the write is owed: like a
        # caller's key, reconcile sends it while it is provably not applied.
        intent = intent_for(endpoint, wire, key, KeySource.CALLER)
        await self._record(intent)
        return key

    # The client's write methods, one row each: their bodies call ``_call`` above.
    claim_tokens = _staged(RewardEndpoints.claim_tokens)
    redeem_tokens = _staged(RewardEndpoints.redeem_tokens)
    expire_tokens = _staged(RewardEndpoints.expire_tokens)
    claim_pending_rewards = _staged(RewardEndpoints.claim_pending_rewards)
    transfer_tokens = _staged(TransferEndpoints.transfer_tokens)
    upgrade_to_shakesco = _staged(TransferEndpoints.upgrade_to_shakesco)
    receive_from_shakesco = _staged(TransferEndpoints.receive_from_shakesco)
    set_staking_rate = _staged(StakingEndpoints.set_staking_rate)
    create_stake = _staged(StakingEndpoints.create_stake)
    unstake = _staged(StakingEndpoints.unstake)
    prune_inactive_stakes = _staged(StakingEndpoints.prune_inactive_stakes)
    create_vesting_grant = _staged(VestingEndpoints.create_vesting_grant)
    claim_vested_tokens = _staged(VestingEndpoints.claim_vested_tokens)
    cancel_vesting = _staged(VestingEndpoints.cancel_vesting)
    set_happy_hour = _staged(PromotionEndpoints.set_happy_hour)
    end_happy_hour = _staged(PromotionEndpoints.end_happy_hour)
    set_daily_cap = _staged(PromotionEndpoints.set_daily_cap)
    remove_daily_cap = _staged(PromotionEndpoints.remove_daily_cap)
    set_tiers = _staged(GovernanceEndpoints.set_tiers)
    set_voting_ratio = _staged(GovernanceEndpoints.set_voting_ratio)
    set_cashback = _staged(CashbackEndpoints.set_cashback)
    process_cashback = _staged(CashbackEndpoints.process_cashback)
    set_event_details = _staged(EventEndpoints.set_event_details)


async def result_of(ledger: Ledger, key: str, *, wait: float | None, poll: float = 1.0) -> object:
    """Wait until the write under ``key`` is settled: its receipt (or link), or its error.

    ``OutcomeUnknown`` when it is in doubt, or still pending after ``wait`` seconds (the
    sender goes on with it); ``NotApplied`` when it was given up; ``LedgerError`` when no
    write has that key (never staged, or its transaction rolled back).
    """
    deadline = None if wait is None else CLOCK.monotonic() + wait
    pause = min(0.05, poll)
    while True:
        # Watched before reading: a settle in this process after the read still wakes this.
        settled = ledger.watch(key)
        try:
            entry = await ledger.get(key)
            if entry is None:
                raise LedgerError(f"no write has the idempotency key {key!r} (never staged, or rolled back)")
            answer = _answer(key, entry.state, entry.result, entry.error, entry.reason)
            if answer is not _PENDING:
                return answer
            if deadline is not None and CLOCK.monotonic() >= deadline:
                raise OutcomeUnknown(key, f"still {entry.state.value} after {wait:g}s; the sender goes on with it")
            # Woken when this process settles it; read again now and then for other processes.
            left = pause if deadline is None else max(0.0, min(pause, deadline - CLOCK.monotonic()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    move = await settled
                    if move is not None:  # the move itself: no need to read the entry again
                        answer = _answer(key, move.state, move.result, move.error, move.reason)
                        if answer is not _PENDING:
                            return answer
        finally:
            ledger.unwatch(key, settled)
        pause = min(pause * 2, poll)


_PENDING = object()


def _answer(
    key: str, state: EntryState, result: dict[str, Any] | None, error: dict[str, Any] | None, reason: str | None
) -> object:
    """The outcome a write in ``state`` has for its waiter (its receipt, or raised), or
    ``_PENDING`` while it has none yet."""
    if state == EntryState.COMMITTED and result is not None:
        return result_from_record(result, key, replayed=True)
    if state == EntryState.FAILED and error is not None:
        raise_recorded(error)
    if state == EntryState.ABANDONED:
        raise NotApplied(f"write {key!r} was proven not applied and given up: {reason}")
    if state == EntryState.IN_DOUBT:
        raise OutcomeUnknown(key, reason or "in doubt")
    return _PENDING
