"""Reads of the current docs pages that make a lost answer decidable: ``is_expired`` for
``expire_tokens`` (also where the balance was already empty) and ``vested_amount`` for
``claim_vested_tokens``. Each write is settled by reading, never by a blind second send."""

from __future__ import annotations

import pytest

import shakesco_async as sa
from shakesco_async.ledger import EntryState
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory

DAY = 86400
TIMEOUT = 0.3


async def _emptied_and_expired(client: sa.ShakescoClient, sandbox: Sandbox, ref: str) -> None:
    await client.upgrade_to_shakesco(ref, 10)
    await client.redeem_tokens(ref, 10)  # nothing left: the balance cannot tell an expiry
    sandbox.clock.advance(366 * DAY)
    assert await client.is_expired(ref) is True


async def test_an_expiry_of_an_empty_balance_whose_answer_was_lost_is_proven_applied(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client(timeout=TIMEOUT)
    await _emptied_and_expired(client, sandbox, "e1")
    sandbox.faults.add("drop_after_commit", endpoint="/expire-tokens", count=1)
    receipt = await client.expire_tokens("e1", idempotency_key="expire:e1")
    assert receipt.verified is True
    assert len(sandbox.applied_writes("/expire-tokens")) == 1
    assert (await client.ledger.get("expire:e1")).state == EntryState.COMMITTED  # type: ignore[union-attr]


async def test_an_expiry_of_an_empty_balance_refused_by_a_gateway_is_sent_once_more(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    """A 502 before the API applied it: the balance (0 before and after) would call it
    applied; ``is_expired`` still true says it was not, so it is sent again, once."""
    client = make_client(timeout=TIMEOUT)
    await _emptied_and_expired(client, sandbox, "e2")
    sandbox.faults.add("fail_before_commit", endpoint="/expire-tokens", count=1)
    receipt = await client.expire_tokens("e2", idempotency_key="expire:e2")
    assert receipt.verified is False and receipt.tx_hash is not None  # the second attempt's own answer
    assert len(sandbox.applied_writes("/expire-tokens")) == 1
    assert await client.is_expired("e2") is False


async def test_an_expiry_before_its_time_is_a_definitive_refusal(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    await client.upgrade_to_shakesco("e3", 10)
    for _ in range(2):  # the second call replays the recorded refusal; nothing is sent
        with pytest.raises(sa.TokensNotExpired):
            await client.expire_tokens("e3", idempotency_key="expire:e3")
    entry = await client.ledger.get("expire:e3")
    assert entry is not None and entry.state == EntryState.FAILED
    sandbox.clock.advance(366 * DAY)
    await client.reconcile(older_than=0)  # a refusal is final: reconcile sends nothing
    assert sandbox.applied_writes("/expire-tokens") == []


@pytest.mark.parametrize("fault", ["drop_after_commit", "fail_after_commit"])
async def test_a_vested_claim_whose_answer_was_lost_is_proven_applied(
    make_client: ClientFactory, sandbox: Sandbox, fault: str
) -> None:
    client = make_client(timeout=TIMEOUT)
    await client.create_vesting_grant("v1", 1000, 1000, 100, 25)
    sandbox.clock.advance(550)
    assert await client.vested_amount("v1") == 625
    sandbox.faults.add(fault, endpoint="/claim-vested-tokens", count=1)
    receipt = await client.claim_vested_tokens("v1", idempotency_key="vest:v1")
    assert receipt.verified is True
    assert len(sandbox.applied_writes("/claim-vested-tokens")) == 1
    assert await client.balance("v1") == 625


async def test_a_vested_claim_refused_by_a_gateway_is_sent_once_more(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client(timeout=TIMEOUT)
    await client.create_vesting_grant("v2", 1000, 1000, 0, 50)
    sandbox.clock.advance(10)
    sandbox.faults.add("fail_before_commit", endpoint="/claim-vested-tokens", count=1)
    receipt = await client.claim_vested_tokens("v2", idempotency_key="vest:v2")
    assert receipt.verified is False
    assert len(sandbox.applied_writes("/claim-vested-tokens")) == 1
