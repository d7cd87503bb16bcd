"""The sandbox behaves like the Tokens API, checked through the real client over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import shakesco_async as sa
from shakesco_async import ConfigurationError, ShakescoClient
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory

DAY = 86400


async def _events(client: ShakescoClient) -> None:
    await client.set_event_details("signup", 50, True)
    await client.set_event_details("purchase", "2.5", False)


async def test_claims_allocation_happy_hour_and_one_time(client: ShakescoClient, sandbox: Sandbox) -> None:
    await _events(client)
    await client.claim_tokens("signup", "alice")
    assert await client.balance("alice") == Decimal(50)
    with pytest.raises(sa.EventAlreadyClaimed):
        await client.claim_tokens("signup", "alice")
    assert await client.has_claimed_event("alice", "signup") is True
    assert await client.has_claimed_event("bob", "signup") is False
    await client.set_happy_hour(3600, 3)
    hh = await client.happy_hour()
    assert hh.is_active and hh.multiplier == 3 and hh.end_time is not None
    await client.claim_tokens("purchase", "alice")
    assert await client.balance("alice") == Decimal("57.5")
    sandbox.clock.advance(3601)
    assert (await client.happy_hour()).is_active is False
    await client.claim_tokens("purchase", "alice")
    assert await client.total_earned("alice") == Decimal(60)
    await client.set_happy_hour(60, 2)
    await client.end_happy_hour()
    assert await client.happy_hour() == sa.HappyHour(None, Decimal(1), False)
    with pytest.raises(sa.EventNotFound):
        await client.claim_tokens("nope", "alice")


async def test_daily_cap_is_a_rolling_window(client: ShakescoClient, sandbox: Sandbox) -> None:
    await _events(client)
    await client.set_daily_cap(5)
    await client.claim_tokens("purchase", "carol")
    await client.claim_tokens("purchase", "carol")
    with pytest.raises(sa.DailyCapExceeded):
        await client.claim_tokens("purchase", "carol")
    await client.claim_tokens("purchase", "dave")  # the cap is per customer
    sandbox.clock.advance(DAY - 10)
    with pytest.raises(sa.DailyCapExceeded):
        await client.claim_tokens("purchase", "carol")
    sandbox.clock.advance(11)
    await client.claim_tokens("purchase", "carol")
    await client.remove_daily_cap()
    for _ in range(3):
        await client.claim_tokens("purchase", "carol")
    assert await client.balance("carol") == Decimal(15)


async def test_redeem_expire_and_lifetime_counters(client: ShakescoClient) -> None:
    await _events(client)
    assert await client.last_activity("erin") is None
    await client.claim_tokens("signup", "erin")
    await client.redeem_tokens("erin", "12.25")
    with pytest.raises(sa.InsufficientBalance):
        await client.redeem_tokens("erin", 100)
    assert await client.balance("erin") == Decimal("37.75")
    assert await client.total_spent("erin") == Decimal("12.25")
    await client.expire_tokens("erin")
    assert await client.balance("erin") == 0
    assert await client.total_earned("erin") == 50
    last = await client.last_activity("erin")
    assert last is not None and abs((datetime.now(UTC) - last).total_seconds()) < 5


async def test_links_expire(client: ShakescoClient) -> None:
    now = datetime.now(UTC)
    claim = await client.claim_pending_rewards("frank")
    receive = await client.receive_from_shakesco("frank", 10)
    assert claim.url.startswith("https://") and receive.url != claim.url
    assert timedelta(minutes=29) < claim.expires_at - now < timedelta(minutes=31)
    assert timedelta(minutes=9) < receive.expires_at - now < timedelta(minutes=11)


async def test_transfer_and_migration(client: ShakescoClient) -> None:
    await client.upgrade_to_shakesco("gina", "100.5")
    with pytest.raises(sa.EventAlreadyClaimed):
        await client.upgrade_to_shakesco("gina", 1)
    await client.transfer_tokens("gina", "hank", "0.5")
    with pytest.raises(sa.InsufficientBalance):
        await client.transfer_tokens("gina", "hank", 101)
    assert await client.balance("gina") == Decimal(100)
    assert await client.balance("hank") == Decimal("0.5")
    assert await client.total_earned("hank") == Decimal("0.5")


async def test_staking(client: ShakescoClient, sandbox: Sandbox) -> None:
    await client.upgrade_to_shakesco("ivy", 1000)
    with pytest.raises(sa.InvalidParameters):
        await client.create_stake("ivy", 10, 3600)  # no staking rate yet
    await client.set_staking_rate(DAY, 10)
    await client.create_stake("ivy", 100, DAY)
    await client.create_stake("ivy", 200, 2 * DAY)
    assert await client.stake_count("ivy") == 2
    assert await client.balance("ivy") == 700
    info = await client.stake_info("ivy", 1)
    assert (info.amount, info.lock_duration, info.reward_percent, info.active) == (200, 2 * DAY, 20, True)
    sandbox.clock.advance(DAY)
    await client.unstake("ivy", 1)  # half-way: half of 20% of 200
    assert await client.balance("ivy") == 700 + 200 + 20
    with pytest.raises(sa.StakeAlreadyUnlocked):
        await client.unstake("ivy", 1)
    assert await client.stake_info("ivy", 7) == sa.StakeInfo()
    await client.prune_inactive_stakes("ivy")
    assert await client.stake_count("ivy") == 1
    assert (await client.stake_info("ivy", 0)).amount == 100
    await client.unstake("ivy", 0)  # full term: 10% of 100
    assert await client.balance("ivy") == 920 + 110
    with pytest.raises(sa.InsufficientBalance):
        await client.create_stake("ivy", 5000, DAY)


async def test_at_most_fifty_stakes(client: ShakescoClient) -> None:
    await client.upgrade_to_shakesco("jack", 100)
    await client.set_staking_rate(DAY, 10)
    business = client  # the 50 guarded writes below are serialized per customer
    for _ in range(50):
        await business.create_stake("jack", 1, DAY)
    with pytest.raises(sa.InvalidParameters):
        await client.create_stake("jack", 1, DAY)


async def test_vesting(client: ShakescoClient, sandbox: Sandbox) -> None:
    await client.create_vesting_grant("kim", 1000, 1000, 100, 25)
    with pytest.raises(sa.EventAlreadyClaimed):
        await client.create_vesting_grant("kim", 5, 10, 1, 0)
    with pytest.raises(sa.NothingClaimable):
        await client.claim_vested_tokens("kim")
    sandbox.clock.advance(100)
    await client.claim_vested_tokens("kim")
    assert await client.balance("kim") == 250
    sandbox.clock.advance(450)  # half of the linear part
    await client.claim_vested_tokens("kim")
    assert await client.balance("kim") == 250 + 375
    info = await client.vesting_info("kim")
    assert (info.total_amount, info.claimed, info.active, info.cliff_percent) == (1000, 625, True, 25)
    assert (await client.user_info("kim")).total_vested == 375
    sandbox.clock.advance(90)
    await client.cancel_vesting("kim")  # credits the vested part (90/900 of 750) and ends the grant
    assert await client.balance("kim") == 625 + 75
    assert (await client.vesting_info("kim")).active is False
    await client.create_vesting_grant("kim", 10, 10, 0, 0)  # a new grant once none is active


async def test_tiers_and_voting(client: ShakescoClient) -> None:
    assert (await client.tier_thresholds()).is_active is False
    await client.set_tiers(100, 500, 1000)
    assert await client.tier_thresholds() == sa.TierThresholds(Decimal(100), Decimal(500), Decimal(1000), True)
    await client.upgrade_to_shakesco("lee", 600)
    assert await client.user_tier("lee") == sa.UserTier(2, "Silver")
    assert await client.user_tier("nobody") == sa.UserTier(0, "None")
    assert await client.voting_power("lee") == 0
    await client.set_voting_ratio(50)
    assert await client.voting_power("lee") == 12
    info = await client.user_info("lee")
    assert (info.tier, info.voting_power, info.available_balance) == ("Silver", 12, 600)
    await client.set_voting_ratio(0)
    assert await client.voting_power("lee") == 0


async def test_cashback_crossing_and_overflow(client: ShakescoClient) -> None:
    with pytest.raises(sa.EventNotFound):
        await client.process_cashback("mia", 10, "KES")
    assert (await client.cashback_settings("KES")).is_active is False
    await client.set_cashback(1000, "KES", 50)
    assert await client.cashback_settings("KES") == sa.CashbackSettings(Decimal(1000), "KES", Decimal(50), True)
    await client.process_cashback("mia", "600.5", "KES")
    progress = await client.cashback_progress("mia", "KES")
    assert (progress.spent, progress.remaining, progress.threshold) == (Decimal("600.5"), Decimal("399.5"), 1000)
    await client.process_cashback("mia", "2500", "KES")  # 3100.5: three crossings, 100.5 carries over
    assert await client.balance("mia") == 150
    assert (await client.cashback_progress("mia", "KES")).spent == Decimal("100.5")


async def test_events_and_token_info(client: ShakescoClient) -> None:
    assert await client.event_counter() == 0
    await _events(client)
    assert await client.event_counter() == 2
    assert await client.event_by_index(1) == "purchase"
    assert [name async for name in client.iter_events()] == ["signup", "purchase"]
    with pytest.raises(sa.EventNotFound):
        await client.event_by_index(5)
    assert await client.event_details("signup") == sa.EventDetails(Decimal(50), True)
    await client.set_event_details("signup", 75, False)
    assert await client.event_details("signup") == sa.EventDetails(Decimal(75), False)
    info = await client.token_info()
    assert (info.name, info.symbol, info.decimals) == ("Sandbox Rewards", "SBX", 18)


async def test_unknown_and_unlinked_keys(make_client: ClientFactory, sandbox: Sandbox) -> None:
    stranger = make_client(api_key="sk_unknown")
    with pytest.raises(sa.Unauthorized):
        await stranger.balance("x")
    sandbox.add_business("sk_unlinked", linked=False)
    unlinked = make_client(api_key="sk_unlinked")
    with pytest.raises(sa.Forbidden):
        await unlinked.token_info()
    with pytest.raises(sa.Forbidden):
        await unlinked.claim_tokens("signup", "x")


async def test_businesses_are_isolated(make_client: ClientFactory, sandbox: Sandbox) -> None:
    sandbox.add_business("sk_other")
    ours, theirs = make_client(), make_client(api_key="sk_other")
    await ours.upgrade_to_shakesco("same-ref", 10)
    assert await theirs.balance("same-ref") == 0


async def test_fee_limit_and_transaction_failed_rows(client: ShakescoClient, sandbox: Sandbox) -> None:
    sandbox.faults.add("error", endpoint="/token-info", on="read", status=429, message="Fee limit exceeded")
    with pytest.raises(sa.FeeLimitExceeded):
        await client.token_info()
    sandbox.faults.clear()
    sandbox.faults.add("fail_before_commit", endpoint="/event-counter", on="read")
    with pytest.raises(sa.TransactionFailed):
        await client.event_counter()


async def test_a_shared_session_that_raises_for_status_changes_nothing(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    # A caller's session made with raise_for_status=True must not turn the API's answers
    # into connection errors: a duplicate claim would then be "verified" as applied.
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        client = make_client(session=session)
        await _events(client)
        first = await client.claim_tokens("signup", "erin")
        with pytest.raises(sa.EventAlreadyClaimed):
            await client.claim_tokens("signup", "erin")
        with pytest.raises(sa.EventNotFound):
            await client.claim_tokens("nope", "erin")
        assert await client.balance("erin") == Decimal(50)
        counts = await client.ledger.counts()
    assert first.verified is False  # the API's own answer, not a verification
    assert (counts.get(sa.EntryState.COMMITTED), counts.get(sa.EntryState.FAILED)) == (3, 2)


@pytest.mark.skipif(not hasattr(aiohttp, "ClientMiddlewareType"), reason="client middlewares are aiohttp 3.12+")
async def test_a_shared_session_whose_middleware_retries_never_sends_a_write_twice(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    async def retry_5xx(request: Any, handler: Any) -> Any:  # the retry middleware of aiohttp's cookbook
        for _ in range(3):
            response = await handler(request)
            if response.status < 500:
                break
        return response

    async with aiohttp.ClientSession(middlewares=(retry_5xx,)) as session:
        client = make_client(session=session)
        await _events(client)
        await client.claim_tokens("purchase", "erin")
        sandbox.faults.add("fail_after_commit", endpoint="/claim-tokens", count=1)  # applied, then a 502
        receipt = await client.claim_tokens("purchase", "erin")
    assert receipt.verified is True  # the guard saw the 502 and read back; the middleware sent nothing
    assert len(sandbox.applied_writes("/claim-tokens")) == 2


async def test_a_shared_session_with_a_base_url_of_its_own(sandbox: Sandbox, tmp_path: Path) -> None:
    """A session the app made for another API (base_url=) reaches this one, or is refused
    up front where aiohttp cannot (before 3.12 it asserts every URL is relative)."""
    async with aiohttp.ClientSession(base_url="http://127.0.0.1:1") as session:
        options: dict[str, Any] = {"base_url": sandbox.base_url, "ledger": tmp_path / "l.sqlite3", "session": session}
        if tuple(int(part) for part in aiohttp.__version__.split(".")[:2]) < (3, 12):
            with pytest.raises(ConfigurationError, match=r"made with base_url=.*aiohttp 3\.12"):
                ShakescoClient(sandbox.api_key, **options)
            return
        async with ShakescoClient(sandbox.api_key, **options) as client:
            await client.upgrade_to_shakesco("ann", 5)
            assert await client.balance("ann") == 5
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == 1
