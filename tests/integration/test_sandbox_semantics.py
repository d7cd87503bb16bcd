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


async def test_redeem_expire_and_lifetime_counters(client: ShakescoClient, sandbox: Sandbox) -> None:
    await _events(client)
    assert await client.last_activity("erin") is None
    await client.claim_tokens("signup", "erin")
    await client.redeem_tokens("erin", "12.25")
    with pytest.raises(sa.InsufficientBalance):
        await client.redeem_tokens("erin", 100)
    assert await client.balance("erin") == Decimal("37.75")
    assert await client.total_spent("erin") == Decimal("12.25")
    assert await client.is_expired("erin") is False
    with pytest.raises(sa.TokensNotExpired):
        await client.expire_tokens("erin")
    sandbox.clock.advance(365 * DAY + 1)  # inactive longer than the token's expiry period
    assert await client.is_expired("erin") is True
    await client.expire_tokens("erin")
    assert await client.balance("erin") == 0
    assert await client.is_expired("erin") is False  # the expiry restarts the activity clock
    with pytest.raises(sa.TokensNotExpired):
        await client.expire_tokens("erin")
    assert await client.total_earned("erin") == 50
    last = await client.last_activity("erin")
    assert last is not None and abs((datetime.fromtimestamp(sandbox.clock.now(), UTC) - last).total_seconds()) < 5


async def test_nobody_expires_without_activity_or_without_an_expiry_period(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    sandbox.add_business("sk_forever", expiry_period=None)
    forever = make_client(api_key="sk_forever")
    client = make_client()
    for c in (client, forever):
        await c.upgrade_to_shakesco("old", 5)
    sandbox.clock.advance(10 * 365 * DAY)
    assert await client.is_expired("never-seen") is False
    assert (await client.is_expired("old"), await forever.is_expired("old")) == (True, False)
    with pytest.raises(sa.TokensNotExpired):
        await forever.expire_tokens("old")


async def test_links_expire(client: ShakescoClient) -> None:
    now = datetime.now(UTC)
    claim = await client.claim_pending_rewards("frank")
    receive = await client.receive_from_shakesco("frank", 10)
    assert claim.url.startswith("https://") and receive.url != claim.url
    assert timedelta(minutes=29) < claim.expires_at - now < timedelta(minutes=31)
    assert timedelta(minutes=29) < receive.expires_at - now < timedelta(minutes=31)


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
    assert await client.user_tier("lee") == sa.UserTier("Silver")
    assert await client.user_tier("nobody") == sa.UserTier("None")
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
    assert await client.event_details("never-made") == sa.EventDetails(Decimal(0), False)  # as the docs say
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


async def test_staking_rate_preview_and_accrued_rewards(client: ShakescoClient, sandbox: Sandbox) -> None:
    assert await client.staking_rate() == sa.StakingRate(0, Decimal(0), False)
    await client.set_staking_rate(DAY, "12.5")
    assert await client.staking_rate() == sa.StakingRate(DAY, Decimal("12.5"), True)
    # base_reward_percent x duration / base_duration
    assert await client.calculate_staking_reward(2 * DAY) == 25
    assert await client.calculate_staking_reward(timedelta(hours=12)) == Decimal("6.25")
    await client.upgrade_to_shakesco("sam", 1000)
    await client.create_stake("sam", 400, 2 * DAY)  # 25% at full term
    assert await client.stake_rewards("sam", 0) == 0
    sandbox.clock.advance(DAY)  # half the lock: half the reward, accrued pro rata
    assert await client.stake_rewards("sam", 0) == 50
    sandbox.clock.advance(5 * DAY)  # never more than the full term pays
    assert await client.stake_rewards("sam", 0) == 100
    await client.unstake("sam", 0)
    assert await client.balance("sam") == 1100
    assert (await client.stake_rewards("sam", 0), await client.stake_rewards("sam", 9)) == (0, 0)


async def test_vested_amount_follows_the_cliff_and_the_linear_schedule(
    client: ShakescoClient, sandbox: Sandbox
) -> None:
    assert await client.vested_amount("val") == 0  # no grant
    await client.create_vesting_grant("val", 1000, 1000, 100, 25)
    assert await client.vested_amount("val") == 0  # before the cliff
    sandbox.clock.advance(100)
    assert await client.vested_amount("val") == 250  # the cliff's 25%
    sandbox.clock.advance(450)  # half of the linear part
    assert await client.vested_amount("val") == 625
    await client.claim_vested_tokens("val")
    assert await client.vested_amount("val") == 0
    sandbox.clock.advance(10_000)
    assert await client.vested_amount("val") == 375
    await client.cancel_vesting("val")
    assert await client.vested_amount("val") == 0


async def test_daily_earnings_reset_and_respect_the_cap(client: ShakescoClient, sandbox: Sandbox) -> None:
    await _events(client)
    assert await client.daily_cap_settings() == sa.DailyCapSettings(Decimal(0), False)
    assert await client.daily_earnings("dee") == sa.DailyEarnings(Decimal(0), None, Decimal(0))
    await client.set_daily_cap("6")
    assert await client.daily_cap_settings() == sa.DailyCapSettings(Decimal(6), True)
    started = datetime.fromtimestamp(int(sandbox.clock.now()), UTC)
    await client.claim_tokens("purchase", "dee")
    await client.claim_tokens("purchase", "dee")
    with pytest.raises(sa.DailyCapExceeded):  # 7.5 would cross the cap of 6: refused whole
        await client.claim_tokens("purchase", "dee")
    earnings = await client.daily_earnings("dee")
    assert (earnings.earned_today, earnings.cap) == (5, 6)
    assert earnings.last_reset_time is not None and abs((earnings.last_reset_time - started).total_seconds()) <= 1
    sandbox.clock.advance(DAY)  # the window, begun at the first claim, has run out
    assert (await client.daily_earnings("dee")).earned_today == 0
    await client.claim_tokens("purchase", "dee")
    assert (await client.daily_earnings("dee")).earned_today == Decimal("2.5")
    await client.remove_daily_cap()
    assert await client.daily_cap_settings() == sa.DailyCapSettings(Decimal(0), False)


async def test_event_allocation_totals_every_customers_claims(client: ShakescoClient) -> None:
    await _events(client)
    assert await client.event_allocation("purchase") == 0
    await client.set_happy_hour(3600, 2)
    for ref in ("a", "b", "b"):
        await client.claim_tokens("purchase", ref)
    await client.claim_tokens("signup", "a")
    assert await client.event_allocation("purchase") == 15  # 3 claims of 2.5, doubled
    assert await client.event_allocation("signup") == 100
    assert await client.event_allocation("never-made") == 0


async def test_percents_and_multipliers_are_plain_json_numbers(sandbox: Sandbox, client: ShakescoClient) -> None:
    await client.set_happy_hour(60, "1.5")
    await client.set_staking_rate(DAY, 20)
    await client.create_vesting_grant("pat", 10, 100, 10, "12.5")
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        bodies = {}
        for path in ("/happy-hour", "/staking-rate", "/vesting-info?customer_ref=pat", "/user-tier?customer_ref=pat"):
            async with http.get(sandbox.base_url + path) as resp:
                bodies[path.split("?")[0]] = await resp.json()
    assert bodies["/happy-hour"]["multiplier"] == 1.5
    assert bodies["/staking-rate"]["base_reward_percent"] == 20
    assert bodies["/vesting-info"]["cliff_percent"] == 12.5
    assert bodies["/user-tier"] == {"tier": "None"}


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'"x"', b'{"customer_ref": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b"\xff\xfe"],
    ids=["cut", "array", "string", "deep", "not-utf8"],
)
async def test_a_body_that_is_no_json_object_is_invalid_parameters(sandbox: Sandbox, body: bytes) -> None:
    """What a user's own HTTP code may send the sandbox: a 400 the API would give, never a
    500 of the sandbox's own (a nesting past Python's recursion limit was one)."""
    headers = {"Authorization": f"Bearer {sandbox.api_key}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{sandbox.base_url}/redeem-tokens", data=body, headers=headers) as answer,
    ):
        assert answer.status == 400 and await answer.json() == {"error": "Invalid parameters"}
