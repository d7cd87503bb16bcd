"""Fidelity to the API's current docs pages (`shared/api/tokens-api-pages.md`): every read's
documented example body, sent as the API would send it, parses into its typed result; so
does every documented write answer. Where the pages are unsure of a shape (a count as a
number or a string, a page that was never found), each reading is a row."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aioresponses import aioresponses

from shakesco_async import (
    CashbackProgress,
    CashbackSettings,
    DailyCapSettings,
    DailyEarnings,
    EventDetails,
    HappyHour,
    Link,
    Receipt,
    ShakescoClient,
    StakeInfo,
    StakingRate,
    TierThresholds,
    TokenInfo,
    UserInfo,
    UserTier,
    VestingInfo,
)
from shakesco_async.endpoints import ALL_ENDPOINTS, ENDPOINTS_BY_PATH
from tests.unit._mock import ANY_READ

T = datetime.fromtimestamp(1715000000, tz=UTC)
C = ("cust-1",)

# method, args, the page's example body as JSON text, the typed result
EXAMPLES: list[tuple[str, tuple[Any, ...], str, object]] = [
    ("staking_rate", (), '{ "base_duration": "31536000", "base_reward_percent": 20, "is_set": true }',
     StakingRate(31536000, Decimal(20), True)),
    ("calculate_staking_reward", (2592000,), '{ "reward_percent": 5 }', Decimal(5)),
    ("stake_info", ("cust-1", 0),
     '{ "amount": "100.0", "start_time": "1715000000", "lock_duration": "2592000", "reward_percent": 5,'
     ' "active": true }', StakeInfo(Decimal(100), T, 2592000, Decimal(5), True)),
    ("stake_info", ("cust-1", 9), '{ "amount": "0", "start_time": "0", "lock_duration": "0", "reward_percent": 0,'
     ' "active": false }', StakeInfo()),
    ("stake_rewards", ("cust-1", 0), '{ "rewards": "1.5" }', Decimal("1.5")),
    ("stake_rewards", ("cust-1", 9), '{ "rewards": "0" }', Decimal(0)),
    ("stake_count", C, '{ "stake_count": 3 }', 3),
    ("stake_count", C, '{ "stake_count": "3" }', 3),
    ("vesting_info", C,
     '{ "total_amount": "1000.0", "start_time": "1715000000", "cliff_duration": "7776000", "cliff_percent": 25,'
     ' "vesting_duration": "31536000", "claimed": "250.0", "active": true }',
     VestingInfo(Decimal(1000), T, 7776000, Decimal(25), 31536000, Decimal(250), True)),
    ("vested_amount", C, '{ "vested_amount": "125.0" }', Decimal(125)),
    ("happy_hour", (), '{ "end_time": "1715010000", "multiplier": 2, "is_active": true }',
     HappyHour(datetime.fromtimestamp(1715010000, tz=UTC), Decimal(2), True)),
    ("happy_hour", (), '{ "end_time": "0", "multiplier": 1, "is_active": false }', HappyHour()),
    ("happy_hour", (), '{ "end_time": "1715010000", "multiplier": 1.5, "is_active": true }',
     HappyHour(datetime.fromtimestamp(1715010000, tz=UTC), Decimal("1.5"), True)),
    ("daily_cap_settings", (), '{ "cap": "50.0", "is_active": true }', DailyCapSettings(Decimal(50), True)),
    ("daily_earnings", C, '{ "earned_today": "12.0", "last_reset_time": "1715000000", "cap": "50.0" }',
     DailyEarnings(Decimal(12), T, Decimal(50))),
    ("tier_thresholds", (), '{ "bronze": "100.0", "silver": "500.0", "gold": "2000.0", "is_active": true }',
     TierThresholds(Decimal(100), Decimal(500), Decimal(2000), True)),
    ("user_tier", C, '{ "tier": "Bronze" }', UserTier("Bronze")),
    ("user_tier", C, '{ "tier": "None" }', UserTier("None")),
    ("user_tier", C, '{"tier": 3, "tier_label": "Bronze"}', UserTier("Bronze")),  # the older pages' shape
    ("voting_power", C, '{ "voting_power": "15" }', 15),
    ("cashback_settings", ("KES",),
     '{ "spend_threshold": "500.00", "spend_threshold_currency": "KES", "reward_tokens": "5.0", "is_active": true }',
     CashbackSettings(Decimal(500), "KES", Decimal(5), True)),
    ("cashback_progress", ("cust-1", "KES"),
     '{ "spent": "320.00", "threshold": "500.00", "remaining": "180.00", "currency": "KES" }',
     CashbackProgress(Decimal(320), Decimal(500), Decimal(180), "KES")),
    ("balance", C, '{ "balance": "50.0" }', Decimal(50)),
    ("user_info", C,
     '{ "available_balance": "50.0", "each_token_value": "10.0", "each_token_value_in_business": "9.0",'
     ' "total_staked": "100.0", "total_vested": "0.0", "total_earned": "200.0", "total_spent": "50.0",'
     ' "tier": "Bronze", "voting_power": "5" }',
     UserInfo(Decimal(50), Decimal(10), Decimal(9), Decimal(100), Decimal(0), Decimal(200), Decimal(50), "Bronze", 5)),
    ("total_earned", C, '{ "total_earned": "200.0" }', Decimal(200)),
    ("total_spent", C, '{ "total_spent": "50.0" }', Decimal(50)),
    ("has_claimed_event", ("cust-1", "signup"), '{ "has_claimed": true }', True),
    ("last_activity", C, '{ "last_activity": "1715000000", "last_activity_iso": "2024-05-06T12:53:20.000Z" }', T),
    ("last_activity", C, '{ "last_activity": "0", "last_activity_iso": null }', None),
    ("is_expired", C, '{ "is_expired": false }', False),
    ("event_allocation", ("signup",), '{ "total_allocation": "15.0" }', Decimal(15)),
    ("event_details", ("signup",), '{ "allocation": "5.0", "should_not_claim_twice": true }',
     EventDetails(Decimal(5), True)),
    ("event_details", ("nope",), '{ "allocation": "0", "should_not_claim_twice": false }', EventDetails()),
    ("event_counter", (), '{ "event_count": 3 }', 3),
    ("event_counter", (), '{ "event_count": "3" }', 3),
    ("event_by_index", (0,), '{ "event_name": "signup" }', "signup"),
    ("token_info", (), '{ "name": "Launchpad Token", "symbol": "LPT" }', TokenInfo("Launchpad Token", "LPT")),
]  # fmt: skip

# Every documented write answer: tx_hash examples (one is not hex) and the link shape.
WRITE_ANSWERS: list[tuple[str, str, object]] = [
    ("/claim-tokens", '{"tx_hash": "0xabc123..."}', Receipt("0xabc123...")),
    ("/redeem-tokens", '{"tx_hash": "0xdef456..."}', Receipt("0xdef456...")),
    ("/expire-tokens", '{"tx_hash": "0xghi789..."}', Receipt("0xghi789...")),
    (
        "/claim-pending-rewards",
        '{ "url": "https://send.shakesco.com/send-token/eyJ...", "expires_at": "2026-05-13T12:10:00.000Z" }',
        Link("https://send.shakesco.com/send-token/eyJ...", datetime(2026, 5, 13, 12, 10, tzinfo=UTC)),
    ),
]


def test_every_read_of_the_pages_has_an_example() -> None:
    reads = {e.name for e in ALL_ENDPOINTS if not e.is_write}
    assert len(reads) == 27
    assert reads == {row[0] for row in EXAMPLES}


@pytest.mark.parametrize(("name", "args", "body", "expected"), EXAMPLES, ids=[f"{r[0]}-{r[2][:24]}" for r in EXAMPLES])
async def test_the_pages_example_parses(
    unit_client: ShakescoClient, name: str, args: tuple[Any, ...], body: str, expected: object
) -> None:
    with aioresponses() as m:
        m.get(ANY_READ, body=body, content_type="application/json")
        result = await getattr(unit_client, name)(*args)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(("path", "body", "expected"), WRITE_ANSWERS, ids=[r[0] for r in WRITE_ANSWERS])
def test_the_pages_write_answer_parses(path: str, body: str, expected: object) -> None:
    assert ENDPOINTS_BY_PATH[path].parse(json.loads(body)) == expected
