"""Every kind of write, with the set-up it needs and a check of the state it leaves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import attrs

from shakesco_async import ShakescoClient
from shakesco_async.sandbox import Sandbox

Setup = Callable[[ShakescoClient, Sandbox], Awaitable[None]]
Call = Callable[[ShakescoClient, str], Awaitable[Any]]
Check = Callable[[ShakescoClient, Sandbox], Awaitable[None]]


@attrs.frozen
class Kind:
    name: str
    endpoint: str
    setup: Setup
    call: Call
    check: Check


async def _nothing(_: ShakescoClient, __: Sandbox) -> None:
    return None


async def _events(c: ShakescoClient, _: Sandbox) -> None:
    await c.set_event_details("signup", 50, True)
    await c.set_event_details("purchase", 5, False)


async def _funded(c: ShakescoClient, _: Sandbox) -> None:
    await c.upgrade_to_shakesco("c1", 100)


async def _funded_and_expired(c: ShakescoClient, s: Sandbox) -> None:
    await _funded(c, s)
    s.clock.advance(366 * 86400)  # inactive longer than the token's expiry period


async def _staked(c: ShakescoClient, s: Sandbox) -> None:
    await _funded(c, s)
    await c.set_staking_rate(3600, 10)
    await c.create_stake("c1", 10, 3600)


async def _granted(c: ShakescoClient, s: Sandbox) -> None:
    await c.create_vesting_grant("c1", 100, 1000, 0, 50)
    s.clock.advance(10)


async def _cashback(c: ShakescoClient, _: Sandbox) -> None:
    await c.set_cashback(100, "USD", 5)


async def _happy(c: ShakescoClient, _: Sandbox) -> None:
    await c.set_happy_hour(3600, 2)


def _balance_is(ref: str, value: int | str) -> Check:
    async def check(c: ShakescoClient, _: Sandbox) -> None:
        assert await c.balance(ref) == Decimal(value)

    return check


async def _check_transfer(c: ShakescoClient, _: Sandbox) -> None:
    assert (await c.balance("c1"), await c.balance("c2")) == (90, 10)


async def _check_stake_count(c: ShakescoClient, _: Sandbox) -> None:
    assert await c.stake_count("c1") == 2
    assert await c.balance("c1") == 80


async def _check_unstaked(c: ShakescoClient, _: Sandbox) -> None:
    assert not (await c.stake_info("c1", 0)).active


async def _check_grant(c: ShakescoClient, _: Sandbox) -> None:
    info = await c.vesting_info("c1")
    assert (info.active, info.total_amount) == (True, 100)


async def _check_vested(c: ShakescoClient, _: Sandbox) -> None:
    assert await c.balance("c1") == Decimal("50.5")


async def _check_cancelled(c: ShakescoClient, _: Sandbox) -> None:
    assert not (await c.vesting_info("c1")).active


async def _check_cashback(c: ShakescoClient, _: Sandbox) -> None:
    assert (await c.cashback_progress("c1", "USD")).spent == 50
    assert await c.balance("c1") == 5


async def _check_happy(c: ShakescoClient, _: Sandbox) -> None:
    assert (await c.happy_hour()).multiplier == 3


async def _check_happy_over(c: ShakescoClient, _: Sandbox) -> None:
    assert not (await c.happy_hour()).is_active


async def _check_tiers(c: ShakescoClient, _: Sandbox) -> None:
    assert (await c.tier_thresholds()).gold == 30


async def _check_cashback_settings(c: ShakescoClient, _: Sandbox) -> None:
    assert (await c.cashback_settings("EUR")).reward_tokens == 7


async def _check_event(c: ShakescoClient, _: Sandbox) -> None:
    assert (await c.event_details("bonus")).allocation == 9


# Writes whose effect verification can prove: exactly one application under every fault.
VERIFIABLE = [
    Kind(
        "claim_one_time",
        "/claim-tokens",
        _events,
        lambda c, k: c.claim_tokens("signup", "c1", idempotency_key=k),
        _balance_is("c1", 50),
    ),
    Kind(
        "claim_repeatable",
        "/claim-tokens",
        _events,
        lambda c, k: c.claim_tokens("purchase", "c1", idempotency_key=k),
        _balance_is("c1", 5),
    ),
    Kind(
        "redeem",
        "/redeem-tokens",
        _funded,
        lambda c, k: c.redeem_tokens("c1", "10.5", idempotency_key=k),
        _balance_is("c1", "89.5"),
    ),
    Kind(
        "expire",
        "/expire-tokens",
        _funded_and_expired,
        lambda c, k: c.expire_tokens("c1", idempotency_key=k),
        _balance_is("c1", 0),
    ),
    Kind(
        "transfer",
        "/transfer-tokens",
        _funded,
        lambda c, k: c.transfer_tokens("c1", "c2", 10, idempotency_key=k),
        _check_transfer,
    ),
    Kind(
        "upgrade",
        "/upgrade-to-shakesco",
        _nothing,
        lambda c, k: c.upgrade_to_shakesco("c1", 70, idempotency_key=k),
        _balance_is("c1", 70),
    ),
    Kind(
        "create_stake",
        "/create-stake",
        _staked,
        lambda c, k: c.create_stake("c1", 10, 3600, idempotency_key=k),
        _check_stake_count,
    ),
    Kind("unstake", "/unstake", _staked, lambda c, k: c.unstake("c1", 0, idempotency_key=k), _check_unstaked),
    Kind(
        "create_vesting_grant",
        "/create-vesting-grant",
        _nothing,
        lambda c, k: c.create_vesting_grant("c1", 100, 1000, 0, 50, idempotency_key=k),
        _check_grant,
    ),
    Kind(
        "claim_vested",
        "/claim-vested-tokens",
        _granted,
        lambda c, k: c.claim_vested_tokens("c1", idempotency_key=k),
        _check_vested,
    ),
    Kind(
        "cancel_vesting",
        "/cancel-vesting",
        _granted,
        lambda c, k: c.cancel_vesting("c1", idempotency_key=k),
        _check_cancelled,
    ),
    Kind(
        "process_cashback",
        "/process-cashback",
        _cashback,
        lambda c, k: c.process_cashback("c1", 150, "USD", idempotency_key=k),
        _check_cashback,
    ),
    Kind(
        "set_happy_hour",
        "/set-happy-hour",
        _nothing,
        lambda c, k: c.set_happy_hour(3600, 3, idempotency_key=k),
        _check_happy,
    ),
    Kind(
        "end_happy_hour", "/end-happy-hour", _happy, lambda c, k: c.end_happy_hour(idempotency_key=k), _check_happy_over
    ),
    Kind("set_tiers", "/set-tiers", _nothing, lambda c, k: c.set_tiers(10, 20, 30, idempotency_key=k), _check_tiers),
    Kind(
        "set_cashback",
        "/set-cashback",
        _nothing,
        lambda c, k: c.set_cashback(50, "EUR", 7, idempotency_key=k),
        _check_cashback_settings,
    ),
    Kind(
        "set_event_details",
        "/set-event-details",
        _nothing,
        lambda c, k: c.set_event_details("bonus", 9, False, idempotency_key=k),
        _check_event,
    ),
]

# Writes the API documents as harmless to repeat and that no read can confirm:
# after a lost answer they are sent again, so they may apply twice with the same effect.
REPEATABLE = [
    Kind(
        "claim_pending_rewards",
        "/claim-pending-rewards",
        _nothing,
        lambda c, k: c.claim_pending_rewards("c1", idempotency_key=k),
        _nothing,
    ),
    Kind(
        "receive_from_shakesco",
        "/receive-from-shakesco",
        _nothing,
        lambda c, k: c.receive_from_shakesco("c1", 5, idempotency_key=k),
        _nothing,
    ),
    Kind(
        "set_staking_rate",
        "/set-staking-rate",
        _nothing,
        lambda c, k: c.set_staking_rate(60, 5, idempotency_key=k),
        _nothing,
    ),
    Kind(
        "prune_inactive_stakes",
        "/prune-inactive-stakes",
        _nothing,
        lambda c, k: c.prune_inactive_stakes("c1", idempotency_key=k),
        _nothing,
    ),
    Kind("set_daily_cap", "/set-daily-cap", _nothing, lambda c, k: c.set_daily_cap(10, idempotency_key=k), _nothing),
    Kind(
        "remove_daily_cap", "/remove-daily-cap", _nothing, lambda c, k: c.remove_daily_cap(idempotency_key=k), _nothing
    ),
    Kind(
        "set_voting_ratio",
        "/set-voting-ratio",
        _nothing,
        lambda c, k: c.set_voting_ratio(3, idempotency_key=k),
        _nothing,
    ),
]
