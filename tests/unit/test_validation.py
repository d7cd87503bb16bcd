"""Bad input is refused before any request is sent or any ledger row is written."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal, FloatOperation, Inexact, Rounded, localcontext
from typing import Any

import pytest
from aioresponses import aioresponses

from shakesco_async import ShakescoClient, ValidationError
from shakesco_async._validate import seconds
from shakesco_async.ledger import EntryState

BAD_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("claim_tokens", ("signup", ""), {}),
    ("claim_tokens", ("signup", "   "), {}),
    ("claim_tokens", ("signup", 42), {}),
    ("claim_tokens", ("signup", None), {}),
    ("claim_tokens", ("signup", "x" * 257), {}),
    ("claim_tokens", ("signup", "bad\nref"), {}),
    ("claim_tokens", ("SignUp", "c1"), {}),
    ("redeem_tokens", ("c1", -1), {}),
    ("redeem_tokens", ("c1", 0), {}),
    ("redeem_tokens", ("c1", "0"), {}),
    ("redeem_tokens", ("c1", math.nan), {}),
    ("redeem_tokens", ("c1", math.inf), {}),
    ("redeem_tokens", ("c1", "NaN"), {}),
    ("redeem_tokens", ("c1", "Infinity"), {}),
    ("redeem_tokens", ("c1", Decimal("1e-19")), {}),
    ("redeem_tokens", ("c1", "0.0000000000000000001"), {}),
    ("redeem_tokens", ("c1", 0.1), {}),
    ("redeem_tokens", ("c1", True), {}),
    ("redeem_tokens", ("c1", "ten"), {}),
    ("redeem_tokens", ("c1", [1]), {}),
    ("redeem_tokens", ("c1", "1e1000000000"), {}),  # would be a billion digits on the wire
    ("redeem_tokens", ("c1", 10**60), {}),
    ("redeem_tokens", ("c1", "123456789012345678901234567890.123456789012345678901"), {}),
    ("set_tiers", (0, 5, "1e1000000000"), {}),
    ("transfer_tokens", ("a", "", 1), {}),
    ("transfer_tokens", ("a", "a", 1), {}),
    ("unstake", ("c1", 1.0), {}),
    ("unstake", ("c1", "0"), {}),
    ("unstake", ("c1", -1), {}),
    ("unstake", ("c1", True), {}),
    ("create_stake", ("c1", 1, -5), {}),
    ("create_stake", ("c1", 1, timedelta(seconds=1.5)), {}),
    ("create_stake", ("c1", 1, 3.0), {}),
    ("create_vesting_grant", ("c1", 100, 3600, 60, 101), {}),
    ("set_happy_hour", (3600, "0.5"), {}),
    ("set_cashback", (100, "usd", 5), {}),
    ("set_cashback", (100, "US", 5), {}),
    ("process_cashback", ("c1", 10, "EURO"), {}),
    ("set_event_details", ("signup", 10, 1), {}),
    ("set_tiers", (-1, 5, 10), {}),
    ("claim_tokens", ("signup", "c1"), {"idempotency_key": ""}),
    ("claim_tokens", ("signup", "c1"), {"idempotency_key": "k" * 256}),
    ("claim_tokens", ("signup", "c1"), {"idempotency_key": 5}),
    # aiohttp refuses DEL in a header only once the intent is recorded; a lone surrogate
    # cannot be written as UTF-8 (to the ledger, or the wire)
    ("claim_tokens", ("signup", "c1"), {"idempotency_key": "k\x7f"}),
    ("claim_tokens", ("signup", "c1"), {"idempotency_key": "k\ud800"}),
    ("claim_tokens", ("signup", "c\ud800"), {}),
    ("claim_tokens", ("signup", "c\x7f"), {}),
    ("claim_tokens", ("sign\udfffup", "c1"), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), BAD_CALLS)
async def test_bad_input_is_refused_before_anything(
    unit_client: ShakescoClient, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with aioresponses() as m:
        with pytest.raises(ValidationError):
            await getattr(unit_client, name)(*args, **kwargs)
        assert m.requests == {}
    assert sum((await unit_client.ledger.counts()).values()) == 0


@pytest.mark.parametrize(("name", "args"), [("balance", ("",)), ("stake_info", ("c", -1)), ("event_by_index", (1.5,))])
async def test_bad_read_input_is_refused(unit_client: ShakescoClient, name: str, args: tuple[Any, ...]) -> None:
    with aioresponses() as m:
        with pytest.raises(ValidationError):
            await getattr(unit_client, name)(*args)
        assert m.requests == {}


async def test_reads_take_no_idempotency_key(unit_client: ShakescoClient) -> None:
    with pytest.raises(ValidationError):
        await unit_client._call(unit_client_balance_endpoint(), customer_ref="c", idempotency_key="k")


def unit_client_balance_endpoint() -> Any:
    from shakesco_async.endpoints.queries import BALANCE

    return BALANCE


def test_validation_error_is_a_value_error() -> None:
    assert issubclass(ValidationError, ValueError)


async def test_exact_floats_are_accepted(unit_client: ShakescoClient) -> None:
    from tests.unit._mock import ANY_READ, QUIET_STATE, TX

    with aioresponses() as m:
        m.get(ANY_READ, payload=QUIET_STATE, repeat=True)
        m.post("https://tokens.test/redeem-tokens", payload={"tx_hash": TX})
        receipt = await unit_client.redeem_tokens("c1", 1.5)
    assert receipt.tx_hash == TX
    assert (await unit_client.ledger.counts())[EntryState.COMMITTED] == 1


async def test_a_strict_decimal_context_of_the_callers_changes_nothing(unit_client: ShakescoClient) -> None:
    # Apps that handle money often set a low precision or trap inexact results and
    # float mixing: none of it may round an amount, or fail an exact float.
    from tests.unit._mock import ANY_READ, TX, body_of, sent

    with localcontext() as ctx, aioresponses() as m:
        ctx.prec = 3
        for trap in (Inexact, Rounded, FloatOperation):
            ctx.traps[trap] = True
        m.get(ANY_READ, payload={"balance": "123456.123456789", "total_spent": "0.000000000000000001"}, repeat=True)
        m.post("https://tokens.test/redeem-tokens", payload={"tx_hash": TX}, repeat=True)
        await unit_client.redeem_tokens("c1", 1.5)
        await unit_client.redeem_tokens("c2", "123456.123456789")
        balance = await unit_client.balance("c1")
        bodies = [body_of(kwargs) for _, kwargs in sent(m, "POST")]
    assert [b["amount"] for b in bodies] == [Decimal("1.5"), Decimal("123456.123456789")]
    assert balance == Decimal("123456.123456789")


async def test_amounts_at_the_edges_go_on_the_wire_exactly(unit_client: ShakescoClient) -> None:
    from tests.unit._mock import ANY_READ, QUIET_STATE, TX

    largest = "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
    with aioresponses() as m:
        m.get(ANY_READ, payload=QUIET_STATE, repeat=True)
        m.post("https://tokens.test/redeem-tokens", payload={"tx_hash": TX}, repeat=True)
        m.post("https://tokens.test/set-tiers", payload={"tx_hash": TX})
        await unit_client.redeem_tokens("c1", Decimal(largest))
        await unit_client.redeem_tokens("c2", "123456789012345678901234567890.123456789012345678000")
        await unit_client.set_tiers("0E+1000000000", 5, 10)
        bodies = b"\n".join(call.kwargs.get("data") or b"" for calls in m.requests.values() for call in calls)
    assert f'"amount":{largest}'.encode() in bodies
    assert b'"amount":123456789012345678901234567890.123456789012345678' in bodies
    assert b'"bronze":0,' in bodies


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, "5", True, None])
def test_seconds_are_finite_numbers_not_negative(value: object) -> None:
    with pytest.raises(ValidationError, match="wait must be a finite number of seconds"):
        seconds("wait", value)


def test_seconds_accept_ints_floats_and_zero_unless_positive() -> None:
    assert (seconds("wait", 0), seconds("wait", 1.5), seconds("wait", 2)) == (0.0, 1.5, 2.0)
    with pytest.raises(ValidationError, match="positive"):
        seconds("wait", 0, positive=True)
