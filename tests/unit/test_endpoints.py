"""Every endpoint: the request it sends and the result it parses (aioresponses)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
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
    _models,
)
from shakesco_async._convert import converter
from shakesco_async.endpoints import ALL_ENDPOINTS
from tests.conftest import UNIT_KEY, UNIT_URL
from tests.unit._mock import ANY_READ, QUIET_STATE, TX, body_of, sent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LINK = {"url": "https://pay.example/claim/abc", "expires_at": "2026-01-01T00:30:00Z"}
LINK_RESULT = Link(url=LINK["url"], expires_at=T0 + timedelta(minutes=30))

# method, args, fields sent (body or query), response body, expected result
WRITES: list[tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any], object]] = [
    ("claim_tokens", ("signup", "cust-1"), {"event_name": "signup", "customer_ref": "cust-1"}, {}, None),
    ("redeem_tokens", ("cust-1", "12.5"), {"customer_ref": "cust-1", "amount": Decimal("12.5")}, {}, None),
    ("expire_tokens", ("cust-1",), {"customer_ref": "cust-1"}, {}, None),
    ("claim_pending_rewards", ("cust-1",), {"customer_ref": "cust-1"}, LINK, LINK_RESULT),
    (
        "transfer_tokens",
        ("a", "b", Decimal("3")),
        {"from_customer_ref": "a", "to_customer_ref": "b", "amount": 3},
        {},
        None,
    ),
    ("upgrade_to_shakesco", ("cust-1", 100), {"customer_ref": "cust-1", "amount": 100}, {}, None),
    ("receive_from_shakesco", ("cust-1", 1.5), {"customer_ref": "cust-1", "amount": Decimal("1.5")}, LINK, LINK_RESULT),
    ("set_staking_rate", (86400, 20), {"base_duration": "86400", "base_reward_percent": 20}, {}, None),
    (
        "create_stake",
        ("cust-1", 10, timedelta(days=1)),
        {"customer_ref": "cust-1", "amount": 10, "lock_duration": "86400"},
        {},
        None,
    ),
    ("unstake", ("cust-1", 0), {"customer_ref": "cust-1", "stake_index": 0}, {}, None),
    ("prune_inactive_stakes", ("cust-1",), {"customer_ref": "cust-1"}, {}, None),
    (
        "create_vesting_grant",
        ("cust-1", 1000, 3600, 600, 25),
        {
            "customer_ref": "cust-1",
            "total_amount": 1000,
            "vesting_duration": "3600",
            "cliff_duration": "600",
            "cliff_percent": 25,
        },
        {},
        None,
    ),
    ("claim_vested_tokens", ("cust-1",), {"customer_ref": "cust-1"}, {}, None),
    ("cancel_vesting", ("cust-1",), {"customer_ref": "cust-1"}, {}, None),
    ("set_happy_hour", (3600, 2), {"duration": "3600", "multiplier": 2}, {}, None),
    ("end_happy_hour", (), {}, {}, None),
    ("set_daily_cap", (500,), {"cap_amount": 500}, {}, None),
    ("remove_daily_cap", (), {}, {}, None),
    ("set_tiers", (100, 500, "1000.5"), {"bronze": 100, "silver": 500, "gold": Decimal("1000.5")}, {}, None),
    ("set_voting_ratio", (10,), {"tokens_per_vote": 10}, {}, None),
    (
        "set_cashback",
        (1000, "KES", 50),
        {"spend_threshold": 1000, "currency": "KES", "reward_tokens": 50},
        {},
        None,
    ),
    (
        "process_cashback",
        ("cust-1", "250.75", "KES"),
        {"customer_ref": "cust-1", "spent_amount": Decimal("250.75"), "currency": "KES"},
        {},
        None,
    ),
    (
        "set_event_details",
        ("signup", 50, True),
        {"event_name": "signup", "allocation": 50, "should_not_claim_twice": True},
        {},
        None,
    ),
]

READS: list[tuple[str, tuple[Any, ...], dict[str, str], dict[str, Any], object]] = [
    (
        "stake_info",
        ("cust-1", 2),
        {"customer_ref": "cust-1", "stake_index": "2"},
        {"amount": "10.0", "start_time": "1767225600", "lock_duration": "86400", "reward_percent": 20, "active": True},
        StakeInfo(Decimal("10.0"), T0, 86400, Decimal(20), True),
    ),
    ("stake_count", ("cust-1",), {"customer_ref": "cust-1"}, {"stake_count": "3"}, 3),
    (
        "vesting_info",
        ("cust-1",),
        {"customer_ref": "cust-1"},
        {
            "total_amount": "1000.0",
            "start_time": "1767225600",
            "cliff_duration": "600",
            "cliff_percent": "25",
            "vesting_duration": "3600",
            "claimed": "250.5",
            "active": True,
        },
        VestingInfo(Decimal("1000.0"), T0, 600, Decimal(25), 3600, Decimal("250.5"), True),
    ),
    (
        "happy_hour",
        (),
        {},
        {"end_time": "1767225600", "multiplier": "2", "is_active": True},
        HappyHour(T0, Decimal(2), True),
    ),
    (
        "tier_thresholds",
        (),
        {},
        {"bronze": "100.0", "silver": "500.0", "gold": "1000.0", "is_active": True},
        TierThresholds(Decimal(100), Decimal(500), Decimal(1000), True),
    ),
    ("user_tier", ("cust-1",), {"customer_ref": "cust-1"}, {"tier": "Silver"}, UserTier("Silver")),
    (
        "staking_rate",
        (),
        {},
        {"base_duration": "600", "base_reward_percent": 12.5, "is_set": True},
        StakingRate(600, Decimal("12.5"), True),
    ),
    ("calculate_staking_reward", (timedelta(hours=1),), {"duration": "3600"}, {"reward_percent": 5}, Decimal(5)),
    (
        "stake_rewards",
        ("cust-1", 2),
        {"customer_ref": "cust-1", "stake_index": "2"},
        {"rewards": "1.5"},
        Decimal("1.5"),
    ),
    ("vested_amount", ("cust-1",), {"customer_ref": "cust-1"}, {"vested_amount": "125.0"}, Decimal("125.0")),
    ("daily_cap_settings", (), {}, {"cap": "50.0", "is_active": True}, DailyCapSettings(Decimal(50), True)),
    (
        "daily_earnings",
        ("cust-1",),
        {"customer_ref": "cust-1"},
        {"earned_today": "12.0", "last_reset_time": "1767225600", "cap": "50.0"},
        DailyEarnings(Decimal(12), T0, Decimal(50)),
    ),
    ("is_expired", ("cust-1",), {"customer_ref": "cust-1"}, {"is_expired": True}, True),
    ("event_allocation", ("signup",), {"event_name": "signup"}, {"total_allocation": "15.0"}, Decimal(15)),
    ("voting_power", ("cust-1",), {"customer_ref": "cust-1"}, {"voting_power": "7"}, 7),
    (
        "cashback_settings",
        ("KES",),
        {"currency": "KES"},
        {"spend_threshold": "1000", "spend_threshold_currency": "KES", "reward_tokens": "50", "is_active": True},
        CashbackSettings(Decimal(1000), "KES", Decimal(50), True),
    ),
    (
        "cashback_progress",
        ("cust-1", "KES"),
        {"customer_ref": "cust-1", "currency": "KES"},
        {"spent": "250.75", "threshold": "1000", "remaining": "749.25", "currency": "KES"},
        CashbackProgress(Decimal("250.75"), Decimal(1000), Decimal("749.25"), "KES"),
    ),
    ("balance", ("cust-1",), {"customer_ref": "cust-1"}, {"balance": "50.0"}, Decimal("50.0")),
    (
        "user_info",
        ("cust-1",),
        {"customer_ref": "cust-1"},
        {
            "available_balance": "50.0",
            "each_token_value": "0.01",
            "each_token_value_in_business": "1.5",
            "total_staked": "10",
            "total_vested": "0",
            "total_earned": "60.0",
            "total_spent": "0",
            "tier": "Bronze",
            "voting_power": "5",
            "something_new": "ignored",
        },
        UserInfo(
            Decimal("50.0"),
            Decimal("0.01"),
            Decimal("1.5"),
            Decimal(10),
            Decimal(0),
            Decimal("60.0"),
            Decimal(0),
            "Bronze",
            5,
        ),
    ),
    ("total_earned", ("cust-1",), {"customer_ref": "cust-1"}, {"total_earned": "60.0"}, Decimal("60.0")),
    ("total_spent", ("cust-1",), {"customer_ref": "cust-1"}, {"total_spent": "0.000000000000000001"}, Decimal("1E-18")),
    (
        "has_claimed_event",
        ("cust-1", "signup"),
        {"customer_ref": "cust-1", "event_name": "signup"},
        {"has_claimed": True},
        True,
    ),
    (
        "last_activity",
        ("cust-1",),
        {"customer_ref": "cust-1"},
        {"last_activity": "1767225600", "last_activity_iso": "2026-01-01T00:00:00Z"},
        T0,
    ),
    (
        "event_details",
        ("signup",),
        {"event_name": "signup"},
        {"allocation": "50.0", "should_not_claim_twice": True},
        EventDetails(Decimal(50), True),
    ),
    ("event_counter", (), {}, {"event_count": "2"}, 2),
    ("event_by_index", (0,), {"index": "0"}, {"event_name": "signup"}, "signup"),
    ("token_info", (), {}, {"name": "Acme Points", "symbol": "ACME"}, TokenInfo("Acme Points", "ACME")),
]


def test_every_endpoint_is_covered_once() -> None:
    names = [row[0] for row in WRITES] + [row[0] for row in READS]
    assert sorted(names) == sorted(e.name for e in ALL_ENDPOINTS)
    assert len(set(names)) == len(names) == 50


def _auth_ok(kwargs: dict[str, Any]) -> None:
    headers = kwargs["headers"]
    assert headers["Authorization"] == f"Bearer {UNIT_KEY}"
    assert headers["User-Agent"].startswith("shakesco-async/")


@pytest.mark.parametrize(("name", "args", "fields", "response", "expected"), WRITES, ids=[r[0] for r in WRITES])
async def test_write_request_and_result(
    unit_client: ShakescoClient, name: str, args: tuple[Any, ...], fields: dict[str, Any], response: Any, expected: Any
) -> None:
    path = "/" + name.replace("_", "-")
    with aioresponses() as m:
        m.get(ANY_READ, payload=QUIET_STATE, repeat=True)
        m.post(f"{UNIT_URL}{path}", payload=response or {"tx_hash": TX})
        result = await getattr(unit_client, name)(*args, idempotency_key=f"unit:{name}")
        posts = sent(m, "POST")
    assert [p for p, _ in posts] == [path]
    kwargs = posts[0][1]
    assert body_of(kwargs) == fields
    _auth_ok(kwargs)
    assert kwargs["headers"]["Idempotency-Key"] == f"unit:{name}"
    if expected is None:
        assert result == Receipt(tx_hash=TX, idempotency_key=f"unit:{name}")
    else:
        assert isinstance(result, Link)
        assert (result.url, result.expires_at) == (expected.url, expected.expires_at)


@pytest.mark.parametrize(("name", "args", "query", "response", "expected"), READS, ids=[r[0] for r in READS])
async def test_read_request_and_result(
    unit_client: ShakescoClient, name: str, args: tuple[Any, ...], query: dict[str, str], response: Any, expected: Any
) -> None:
    path = "/" + name.replace("_", "-")
    with aioresponses() as m:
        m.get(ANY_READ, payload=response)
        result = await getattr(unit_client, name)(*args)
        gets = sent(m, "GET")
    assert len(gets) == 1
    got_path, kwargs = gets[0]
    assert got_path == path
    assert (kwargs.get("params") or {}) == query
    assert kwargs.get("data") is None
    _auth_ok(kwargs)
    assert result == expected
    assert type(result) is type(expected)


async def test_amounts_are_sent_as_exact_json_numbers(unit_client: ShakescoClient) -> None:
    with aioresponses() as m:
        m.get(ANY_READ, payload=QUIET_STATE, repeat=True)
        m.post(f"{UNIT_URL}/redeem-tokens", payload={"tx_hash": TX}, repeat=True)
        await unit_client.redeem_tokens("c", "0.1")
        await unit_client.redeem_tokens("c", Decimal("1e2"))
        await unit_client.redeem_tokens("c", "0.000000000000000001")
        bodies = [kw["data"] for _, kw in sent(m, "POST")]
    assert bodies == [
        b'{"customer_ref":"c","amount":0.1}',
        b'{"customer_ref":"c","amount":100}',
        b'{"customer_ref":"c","amount":0.000000000000000001}',
    ]


async def test_missing_optional_fields_do_not_crash_reads(unit_client: ShakescoClient) -> None:
    with aioresponses() as m:
        m.get(ANY_READ, payload={"name": "X"})
        info = await unit_client.token_info()
    assert info == TokenInfo(name="X")


async def test_amounts_answered_as_json_numbers_are_read_exactly(unit_client: ShakescoClient) -> None:
    # The docs say amounts come as strings; a JSON number with 18 decimals must not pass
    # through a binary float (1.000000000000000001 would read as 1.0, and a verification
    # comparing balances would then see no change).
    with aioresponses() as m:
        m.get(ANY_READ, body='{"balance": 1.000000000000000001}', content_type="application/json")
        balance = await unit_client.balance("c")
    assert balance == Decimal("1.000000000000000001")


async def test_the_guards_reader_refuses_to_send_a_write(unit_client: ShakescoClient) -> None:
    # Verification reads go around the guard: a write sent that way would be unguarded.
    # A raise, not an assert, so that `python -O` keeps it.
    with aioresponses() as mock, pytest.raises(RuntimeError, match="only reads"):
        await unit_client.guard._reader.claim_tokens("signup", "c1")
    assert not mock.requests


def test_results_turn_into_json_ready_dicts() -> None:
    """``to_dict`` for a web answer: amounts as plain decimal strings (a float would round
    them), times in ISO 8601; structuring the dict again gives the same result."""
    results = [r[4] for r in (*WRITES, *READS) if attrs.has(type(r[4]))]
    assert {type(r) for r in results} >= {getattr(_models, name) for name in _models.__all__} - {Receipt}
    results.append(Receipt("0xabc", idempotency_key="k", verified=True))
    for result in results:
        data = result.to_dict()
        json.dumps(data)  # no Decimal, no datetime left
        assert converter.structure(data, type(result)) == result
    info = UserInfo(available_balance=Decimal("0.000000000000000000"), total_earned=Decimal("1E+2"))
    assert (info.to_dict()["available_balance"], info.to_dict()["total_earned"]) == ("0.000000000000000000", "100")
    assert LINK_RESULT.to_dict()["expires_at"] == "2026-01-01T00:30:00+00:00"
