"""Reads retry with jittered backoff; writes never retry blindly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from aioresponses import aioresponses

from shakesco_async import EventAlreadyClaimed, OutcomeUnknown, ServerError, ShakescoClient, TransactionFailed
from shakesco_async._retry import backoff_delay, parse_retry_after
from shakesco_async._timing import VirtualClock
from tests.conftest import UNIT_URL
from tests.unit._mock import ANY_READ, QUIET_STATE, sent


@pytest.fixture
def sleeps(virtual_clock: VirtualClock) -> list[float]:
    """Record backoff sleeps instead of waiting."""
    return virtual_clock.slept


async def test_read_succeeds_after_two_502s(unit_client: ShakescoClient, sleeps: list[float]) -> None:
    url = f"{UNIT_URL}/balance?customer_ref=c1"
    with aioresponses() as m:
        m.get(url, status=502, payload={"error": "Transaction failed"})
        m.get(url, status=502, payload={"error": "Transaction failed"})
        m.get(url, payload={"balance": "7.5"})
        assert await unit_client.balance("c1") == Decimal("7.5")
        assert len(sent(m, "GET")) == 3
    assert len(sleeps) == 2


async def test_read_gives_up_after_max_retries(unit_client: ShakescoClient, sleeps: list[float]) -> None:
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/balance?customer_ref=c1", status=503, payload={"error": "down"}, repeat=True)
        with pytest.raises(ServerError):
            await unit_client.balance("c1")
        assert len(sent(m, "GET")) == 1 + unit_client.max_retries
    assert len(sleeps) == unit_client.max_retries


async def test_retry_after_is_honoured(unit_client: ShakescoClient, sleeps: list[float]) -> None:
    url = f"{UNIT_URL}/balance?customer_ref=c1"
    with aioresponses() as m:
        m.get(url, status=429, payload={"error": "Fee limit exceeded"}, headers={"Retry-After": "3"})
        m.get(url, payload={"balance": "1"})
        assert await unit_client.balance("c1") == Decimal(1)
    assert sleeps == [3.0]


async def test_connection_errors_are_retried_for_reads(unit_client: ShakescoClient, sleeps: list[float]) -> None:
    import aiohttp

    url = f"{UNIT_URL}/balance?customer_ref=c1"
    with aioresponses() as m:
        m.get(url, exception=aiohttp.ServerDisconnectedError())
        m.get(url, payload={"balance": "2"})
        assert await unit_client.balance("c1") == Decimal(2)
    assert len(sleeps) == 1


async def test_definitive_read_errors_are_not_retried(unit_client: ShakescoClient, sleeps: list[float]) -> None:
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/event-details?event_name=nope", status=404, payload={"error": "Event not found"})
        with pytest.raises(Exception, match="Event not found"):
            await unit_client.event_details("nope")
    assert sleeps == []


async def test_write_is_not_resent_when_reads_cannot_verify(unit_client: ShakescoClient, sleeps: list[float]) -> None:
    # The POST answers 502 (unknown outcome) and the verification reads fail too: one POST only.
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/total-spent?customer_ref=c1", payload={"total_spent": "0"})
        m.post(f"{UNIT_URL}/redeem-tokens", status=502, payload={"error": "Transaction failed"}, repeat=True)
        m.get(ANY_READ, status=503, payload={"error": "down"}, repeat=True)
        with pytest.raises(OutcomeUnknown) as info:
            await unit_client.redeem_tokens("c1", 5, idempotency_key="r1")
        assert len(sent(m, "POST")) == 1
    assert info.value.idempotency_key == "r1"
    entry = await unit_client.ledger.get("r1")
    assert entry is not None
    assert entry.state == "in_doubt"


async def test_write_after_409_is_not_retried(unit_client: ShakescoClient, sleeps: list[float]) -> None:
    with aioresponses() as m:
        m.get(ANY_READ, payload=QUIET_STATE, repeat=True)
        m.post(f"{UNIT_URL}/claim-tokens", status=409, payload={"error": "Event already claimed"}, repeat=True)
        with pytest.raises(EventAlreadyClaimed):
            await unit_client.claim_tokens("signup", "c1")
        assert len(sent(m, "POST")) == 1
    assert sleeps == []


async def test_write_proven_not_applied_is_resent_with_backoff(
    unit_client: ShakescoClient, sleeps: list[float]
) -> None:
    with aioresponses() as m:
        m.get(ANY_READ, payload=QUIET_STATE, repeat=True)  # counters never move: provably not applied
        m.post(f"{UNIT_URL}/redeem-tokens", status=502, payload={"error": "Transaction failed"}, repeat=True)
        with pytest.raises(TransactionFailed):
            await unit_client.redeem_tokens("c1", 5, idempotency_key="r2")
        assert len(sent(m, "POST")) == 1 + unit_client.max_retries
    # Each attempt is judged once it can no longer land (the timeout after it left: a
    # 502 came at once), then backed off from: wait, backoff, wait, backoff, wait.
    landing, backoff = sleeps[0::2], sleeps[1::2]
    assert len(landing) == 1 + unit_client.max_retries
    assert len(backoff) == unit_client.max_retries
    assert all(0 < s <= unit_client.timeout for s in landing)
    entry = await unit_client.ledger.get("r2")
    assert entry is not None
    assert entry.state == "abandoned"  # not applied, given up: only its caller sends it again, with the same key


def test_backoff_grows_with_jitter_and_respects_retry_after() -> None:
    for attempt in range(1, 6):
        window = min(8.0, 0.25 * 2 ** (attempt - 1))
        samples = {backoff_delay(attempt) for _ in range(50)}
        assert all(window / 2 <= s <= window for s in samples)
        assert len(samples) > 1
    assert backoff_delay(1, retry_after=2.5) == 2.5
    assert backoff_delay(1, retry_after=9999) == 60.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("4") == 4.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_a_surprise_from_the_http_layer_is_a_transport_error_of_unknown_outcome(
    unit_client: ShakescoClient, sleeps: list[float]
) -> None:
    """An exception aiohttp does not wrap (a resolver's UnicodeError, say) is a
    TransportError, its key kept out; for a write it may have left, so it is verified:
    here the reads fail too, and the write stays in doubt, sent once."""
    from shakesco_async import TransportError
    from tests.conftest import UNIT_KEY

    with aioresponses() as m:
        m.get(f"{UNIT_URL}/balance?customer_ref=c1", exception=UnicodeError(f"refused, {UNIT_KEY}"), repeat=True)
        with pytest.raises(TransportError, match="UnicodeError") as read:
            await unit_client.balance("c1")
    assert read.value.sent is None and UNIT_KEY not in str(read.value) and read.value.__cause__ is None
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/total-spent?customer_ref=c1", payload={"total_spent": "0"})
        m.post(f"{UNIT_URL}/redeem-tokens", exception=ValueError("a header aiohttp refused"), repeat=True)
        m.get(ANY_READ, exception=UnicodeError("label refused"), repeat=True)
        with pytest.raises(OutcomeUnknown):
            await unit_client.redeem_tokens("c1", 5, idempotency_key="r-surprise")
        assert len(sent(m, "POST")) == 1
    entry = await unit_client.ledger.get("r-surprise")
    assert entry is not None and entry.state == "in_doubt"
