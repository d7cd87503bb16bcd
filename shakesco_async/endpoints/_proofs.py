"""How to tell, by reading state back, whether a write whose answer was lost was applied.

Each write endpoint declares one ``Verifier`` beside its row (``write(..., proof=...)``):
what to read before sending (the snapshot, stored durably in the ledger before the
request leaves) and how to judge the state read afterwards. A judgement is sound only
because the guard serializes writes per customer, so between snapshot and check nothing
else of ours touched them. Judges are pure functions: ``judge(params, before, after)``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import NotFound

if TYPE_CHECKING:
    from . import EndpointMethods

__all__ = [
    "CANCEL_VESTING",
    "CASHBACK",
    "CASHBACK_SETTINGS",
    "CLAIM",
    "CLAIM_VESTED",
    "END_HAPPY_HOUR",
    "EVENT",
    "EXPIRE",
    "HAPPY_HOUR",
    "REDEEM",
    "REPEATABLE",
    "STAKE",
    "TIERS",
    "TRANSFER",
    "UNSTAKE",
    "UPGRADE",
    "VESTING_GRANT",
    "Judgement",
    "Verdict",
    "Verifier",
]

Params = Mapping[str, Any]
Snapshot = dict[str, Any]


class Verdict(enum.Enum):
    APPLIED = "applied"
    NOT_APPLIED = "not_applied"
    UNREADABLE = "unreadable"
    """The reads failed: nothing can be concluded now; a later try may."""
    UNEXPLAINED = "unexplained"
    """The state moved in a way this write does not explain."""


@attrs.frozen
class Judgement:
    verdict: Verdict
    reason: str = ""


Read = Callable[["EndpointMethods", Params], Awaitable[Snapshot]]
Judge = Callable[[Params, Snapshot, Snapshot], Judgement]


@attrs.frozen
class Verifier:
    """``read`` gives the state that matters; ``judge(params, before, after)`` compares.

    ``repeatable`` writes (configuration, links) leave the same state when sent again,
    so a write that cannot be shown applied may simply be sent again. ``one_time``: the
    verifier used instead when the write claims a one-time event (its ``event_name``),
    which needs no snapshot. ``changes_events``: the write changes an event's kind, so
    the guard's cache of event kinds forgets it.
    """

    read: Read
    judge: Judge
    repeatable: bool = False
    one_time: Verifier | None = None
    changes_events: bool = False

    def judged(self, params: Params, before: Snapshot, after: Snapshot) -> Judgement:
        """``judge``, computed exactly."""
        with localcontext() as ctx:
            # Token amounts have up to 78 digits (256 bits at 18 decimals); the default 28
            # would round their differences, and a write would be left in doubt for nothing.
            ctx.prec = _EXACT
            return self.judge(params, before, after)


_EXACT = 160  # digits: sums and differences of any two token amounts stay exact
APPLIED = Judgement(Verdict.APPLIED)
NOT_APPLIED = Judgement(Verdict.NOT_APPLIED)


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


def _delta(name: str, expected: Decimal, before: Snapshot, after: Snapshot) -> Judgement:
    moved = _d(after[name]) - _d(before[name])
    if moved == 0:
        return NOT_APPLIED
    if moved == expected:
        return APPLIED
    return Judgement(Verdict.UNEXPLAINED, f"{name} moved by {moved}, this write explains {expected}")


# -- reads -------------------------------------------------------------------------------------
async def _nothing(_: EndpointMethods, __: Params) -> Snapshot:
    return {}


async def _total_earned(c: EndpointMethods, p: Params) -> Snapshot:
    return {"total_earned": str(await c.total_earned(p["customer_ref"]))}


async def _total_spent(c: EndpointMethods, p: Params) -> Snapshot:
    return {"total_spent": str(await c.total_spent(p["customer_ref"]))}


async def _both_balances(c: EndpointMethods, p: Params) -> Snapshot:
    sender, receiver = await asyncio.gather(c.balance(p["from_customer_ref"]), c.balance(p["to_customer_ref"]))
    return {"from_balance": str(sender), "to_balance": str(receiver)}


async def _stake_count(c: EndpointMethods, p: Params) -> Snapshot:
    return {"stake_count": await c.stake_count(p["customer_ref"])}


async def _stake_active(c: EndpointMethods, p: Params) -> Snapshot:
    return {"active": (await c.stake_info(p["customer_ref"], int(p["stake_index"]))).active}


async def _expiry(c: EndpointMethods, p: Params) -> Snapshot:
    ref = p["customer_ref"]
    balance, expired = await asyncio.gather(c.balance(ref), c.is_expired(ref))
    return {"balance": str(balance), "is_expired": expired}


async def _vesting(c: EndpointMethods, p: Params) -> Snapshot:
    info = await c.vesting_info(p["customer_ref"])
    start = info.start_time.timestamp() if info.start_time else 0
    return {"active": info.active, "claimed": str(info.claimed), "start": start, "total": str(info.total_amount)}


async def _vesting_claimable(c: EndpointMethods, p: Params) -> Snapshot:
    snapshot, vested = await asyncio.gather(_vesting(c, p), c.vested_amount(p["customer_ref"]))
    return {**snapshot, "vested": str(vested)}


async def _cashback(c: EndpointMethods, p: Params) -> Snapshot:
    ref, currency = p["customer_ref"], p["currency"]
    progress, settings, earned = await asyncio.gather(
        c.cashback_progress(ref, currency), c.cashback_settings(currency), c.total_earned(ref)
    )
    return {
        "spent": str(progress.spent),
        "threshold": str(progress.threshold),
        "reward": str(settings.reward_tokens),
        "total_earned": str(earned),
    }


async def _happy_hour(c: EndpointMethods, _: Params) -> Snapshot:
    hh = await c.happy_hour()
    return {"is_active": hh.is_active, "multiplier": str(hh.multiplier)}


async def _tiers(c: EndpointMethods, _: Params) -> Snapshot:
    t = await c.tier_thresholds()
    return {"bronze": str(t.bronze), "silver": str(t.silver), "gold": str(t.gold), "is_active": t.is_active}


async def _cashback_settings(c: EndpointMethods, p: Params) -> Snapshot:
    s = await c.cashback_settings(p["currency"])
    return {"spend_threshold": str(s.spend_threshold), "reward_tokens": str(s.reward_tokens), "is_active": s.is_active}


async def _event(c: EndpointMethods, p: Params) -> Snapshot:
    try:
        e = await c.event_details(p["event_name"])
    except NotFound:
        return {"exists": False}
    return {"exists": True, "allocation": str(e.allocation), "one_time": e.should_not_claim_twice}


async def _one_time_claim(c: EndpointMethods, p: Params) -> Snapshot:
    details, claimed = await asyncio.gather(
        c.event_details(p["event_name"]), c.has_claimed_event(p["customer_ref"], p["event_name"])
    )
    return {"one_time": details.should_not_claim_twice, "has_claimed": claimed}


# -- judgements ----------------------------------------------------------------------------------
def _judge_one_time_claim(_: Params, __: Snapshot, after: Snapshot) -> Judgement:
    if not after["one_time"]:
        return Judgement(Verdict.UNEXPLAINED, "the event is no longer one-time, so has_claimed cannot tell")
    # Claimed now means the customer holds this event's one credit: ours, or an earlier one
    # that made the API refuse ours. Either way sending it again would be wrong.
    return APPLIED if after["has_claimed"] else NOT_APPLIED


def _judge_claim(_: Params, before: Snapshot, after: Snapshot) -> Judgement:
    earned = _d(after["total_earned"]) - _d(before["total_earned"])
    if earned > 0:
        return APPLIED  # the amount depends on server-side multipliers and caps; any credit is ours
    if earned == 0:
        return NOT_APPLIED
    return Judgement(Verdict.UNEXPLAINED, f"total_earned moved by {earned}")


def _judge_amount(field: str, counter: str) -> Judge:
    return lambda p, before, after: _delta(counter, _d(p[field]), before, after)


def _judge_expire(_: Params, before: Snapshot, after: Snapshot) -> Judgement:
    was, now = _d(before["balance"]), _d(after["balance"])
    if now == 0 and was != 0:
        return APPLIED
    if now == was:
        # An expiry restarts the customer's activity clock, so is_expired turning false
        # proves it also where the balance was empty.
        if before.get("is_expired") is True and after.get("is_expired") is False:
            return APPLIED
        if now == 0 and "is_expired" not in before:
            return APPLIED  # a snapshot taken without the flag: expiring an empty balance changes nothing
        return NOT_APPLIED
    return Judgement(Verdict.UNEXPLAINED, f"balance moved from {before['balance']} to {after['balance']}")


def _judge_transfer(p: Params, before: Snapshot, after: Snapshot) -> Judgement:
    amount = _d(p["amount"])
    out = _d(before["from_balance"]) - _d(after["from_balance"])
    into = _d(after["to_balance"]) - _d(before["to_balance"])
    if out == 0 and into == 0:
        return NOT_APPLIED
    if out == amount and into == amount:
        return APPLIED
    return Judgement(Verdict.UNEXPLAINED, f"sender moved by {-out}, receiver by {into}, transfer of {amount}")


def _judge_stake_created(_: Params, before: Snapshot, after: Snapshot) -> Judgement:
    grew = int(after["stake_count"]) - int(before["stake_count"])
    if grew == 0:
        return NOT_APPLIED
    if grew == 1:
        return APPLIED
    return Judgement(Verdict.UNEXPLAINED, f"stake_count moved by {grew}")


def _judge_unstake(_: Params, before: Snapshot, after: Snapshot) -> Judgement:
    if before["active"] and not after["active"]:
        return APPLIED
    return NOT_APPLIED  # still active; or it was never active, and the API answers 409 to a resend


def _judge_grant(p: Params, before: Snapshot, after: Snapshot) -> Judgement:
    if after == before:
        return NOT_APPLIED
    if after["active"] and after["start"] != before["start"] and _d(after["total"]) == _d(p["total_amount"]):
        return APPLIED
    return Judgement(Verdict.UNEXPLAINED, "the vesting grant changed in a way this write does not explain")


def _judge_vested_claim(_: Params, before: Snapshot, after: Snapshot) -> Judgement:
    grew = _d(after["claimed"]) - _d(before["claimed"])
    if grew == 0 and after["active"] == before["active"]:
        return NOT_APPLIED
    # A claim moves everything vested when it runs, which is at least what was claimable
    # at the snapshot (vesting only grows): less than that is some other change.
    at_least = _d(before.get("vested", "0"))
    if grew > 0 and grew >= at_least:
        return APPLIED
    return Judgement(Verdict.UNEXPLAINED, f"claimed moved by {grew}, {at_least} was claimable before")


def _judge_cancel(_: Params, before: Snapshot, after: Snapshot) -> Judgement:
    if before["active"] and not after["active"]:
        return APPLIED
    return NOT_APPLIED


def _judge_cashback(p: Params, before: Snapshot, after: Snapshot) -> Judgement:
    spent_before, spent_after = _d(before["spent"]), _d(after["spent"])
    earned = _d(after["total_earned"]) - _d(before["total_earned"])
    if spent_after == spent_before and earned == 0:
        return NOT_APPLIED
    reward, threshold = _d(before["reward"]), _d(before["threshold"])
    if after["threshold"] != before["threshold"] or after["reward"] != before["reward"] or reward <= 0:
        return Judgement(Verdict.UNEXPLAINED, "the cashback programme changed")
    crossings = earned / reward
    whole = crossings == crossings.to_integral_value() and crossings >= 0
    if whole and spent_before + _d(p["spent_amount"]) - crossings * threshold == spent_after:
        return APPLIED
    return Judgement(Verdict.UNEXPLAINED, f"progress moved from {spent_before} to {spent_after}, earned {earned}")


def _matches(expected: Callable[[Params], Snapshot]) -> Judge:
    """For configuration writes: applied when the setting reads back as sent."""

    def judge(p: Params, _: Snapshot, after: Snapshot) -> Judgement:
        want = expected(p)
        same = all(_same(after.get(k), v) for k, v in want.items())
        return APPLIED if same else NOT_APPLIED

    return judge


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return bool(a == b)
    return _d(a) == _d(b)


def _always_resend(_: Params, __: Snapshot, ___: Snapshot) -> Judgement:
    return NOT_APPLIED


# -- the verifiers the endpoint rows name ------------------------------------------------------
REPEATABLE = Verifier(_nothing, _always_resend, repeatable=True)
"""Sent again as it is: the write leaves the same state however often it is applied."""
CLAIM = Verifier(_total_earned, _judge_claim, one_time=Verifier(_one_time_claim, _judge_one_time_claim))
REDEEM = Verifier(_total_spent, _judge_amount("amount", "total_spent"))
EXPIRE = Verifier(_expiry, _judge_expire)
TRANSFER = Verifier(_both_balances, _judge_transfer)
UPGRADE = Verifier(_total_earned, _judge_amount("amount", "total_earned"))
STAKE = Verifier(_stake_count, _judge_stake_created)
UNSTAKE = Verifier(_stake_active, _judge_unstake)
VESTING_GRANT = Verifier(_vesting, _judge_grant)
CLAIM_VESTED = Verifier(_vesting_claimable, _judge_vested_claim)
CANCEL_VESTING = Verifier(_vesting, _judge_cancel)
HAPPY_HOUR = Verifier(
    _happy_hour, _matches(lambda p: {"is_active": True, "multiplier": p["multiplier"]}), repeatable=True
)
END_HAPPY_HOUR = Verifier(_happy_hour, _matches(lambda _: {"is_active": False}), repeatable=True)
TIERS = Verifier(_tiers, _matches(lambda p: {k: p[k] for k in ("bronze", "silver", "gold")}), repeatable=True)
CASHBACK_SETTINGS = Verifier(
    _cashback_settings,
    _matches(lambda p: {"spend_threshold": p["spend_threshold"], "reward_tokens": p["reward_tokens"]}),
    repeatable=True,
)
CASHBACK = Verifier(_cashback, _judge_cashback)
EVENT = Verifier(
    _event,
    _matches(lambda p: {"exists": True, "allocation": p["allocation"], "one_time": p["should_not_claim_twice"]}),
    repeatable=True,
    changes_events=True,
)
