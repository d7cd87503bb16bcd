"""When the reads cannot tell, the write stays in doubt and is never sent again."""

from __future__ import annotations

import asyncio

import pytest

import shakesco_async as sa
from shakesco_async.ledger import EntryState
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory


async def _fund(client: sa.ShakescoClient, ref: str) -> None:
    await client.upgrade_to_shakesco(ref, 100)


async def test_unreadable_state_leaves_the_write_in_doubt(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client(timeout=0.5)
    await _fund(client, "d1")
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    # Let the pre-send snapshot read through, then fail every verification read.
    sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
    with pytest.raises(sa.OutcomeUnknown) as info:
        await client.redeem_tokens("d1", 10, idempotency_key="doubt-1")
    sandbox.faults.clear()  # the reads work again
    assert info.value.idempotency_key == "doubt-1"
    entry = await client.ledger.get("doubt-1")
    assert entry is not None
    assert entry.state == EntryState.IN_DOUBT
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    # Reads work again: the same key settles it by reading, and sends nothing.
    receipt = await client.redeem_tokens("d1", 10, idempotency_key="doubt-1")
    assert receipt.verified and receipt.replayed
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    assert await client.balance("d1") == 90


async def test_in_doubt_then_not_applied_is_sent_by_the_same_key(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client(timeout=0.5)
    await _fund(client, "d2")
    sandbox.faults.add("reset", endpoint="/redeem-tokens", count=1)  # not applied
    sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
    with pytest.raises(sa.OutcomeUnknown):
        await client.redeem_tokens("d2", 10, idempotency_key="doubt-2")
    sandbox.faults.clear()  # the reads work again
    assert sandbox.applied_writes("/redeem-tokens") == []
    receipt = await client.redeem_tokens("d2", 10, idempotency_key="doubt-2")
    assert receipt.tx_hash is not None
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1


async def test_unexplained_movement_is_in_doubt(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client(timeout=0.3)
    await _fund(client, "d3")
    sandbox.faults.add("delay", endpoint="/redeem-tokens", delay=0.6, count=1)

    async def someone_else_spends() -> None:
        await asyncio.sleep(0.1)
        sandbox.business().redeem_tokens("d3", sa._validate.amount("x", 7))  # outside the SDK

    with pytest.raises(sa.OutcomeUnknown, match="total_spent moved by 17"):
        await asyncio.gather(client.redeem_tokens("d3", 10, idempotency_key="doubt-3"), someone_else_spends())
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    entry = await client.ledger.get("doubt-3")
    assert entry is not None and entry.state == EntryState.IN_DOUBT
    # The same key never resends while the movement stays unexplained.
    with pytest.raises(sa.OutcomeUnknown):
        await client.redeem_tokens("d3", 10, idempotency_key="doubt-3")
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1


async def test_a_later_write_settles_an_earlier_doubt_first(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client(timeout=0.5)
    await _fund(client, "d4")
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
    with pytest.raises(sa.OutcomeUnknown):
        await client.redeem_tokens("d4", 10, idempotency_key="first")
    sandbox.faults.clear()  # the reads work again
    # Another write for the customer first proves the doubted one applied, then runs.
    await client.redeem_tokens("d4", 5, idempotency_key="second")
    first = await client.ledger.get("first")
    assert first is not None and first.state == EntryState.COMMITTED
    assert await client.balance("d4") == 85
    assert len(sandbox.applied_writes("/redeem-tokens")) == 2


async def test_snapshot_failure_sends_nothing(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    sandbox.faults.add("error", endpoint="/total-spent", status=503)
    with pytest.raises(sa.ServerError):
        await client.redeem_tokens("d5", 1, idempotency_key="no-snap")
    assert sandbox.applied == []
    entry = await client.ledger.get("no-snap")
    assert entry is not None and entry.state == EntryState.ABANDONED  # given up: reconcile leaves it
    sandbox.faults.clear()
    await client.upgrade_to_shakesco("d5", 5)
    await client.redeem_tokens("d5", 1, idempotency_key="no-snap")  # safe to send: it never left
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1


async def test_ledger_failure_sends_nothing(make_client: ClientFactory, sandbox: Sandbox, tmp_path: object) -> None:
    client = make_client(ledger="/proc/no-such-dir/ledger.sqlite3")
    with pytest.raises(sa.LedgerError):
        await client.upgrade_to_shakesco("d6", 1)
    assert sandbox.applied == []


async def test_fee_limit_is_retried_after_retry_after(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    sandbox.faults.add(
        "error", endpoint="/upgrade-to-shakesco", status=429, message="Fee limit exceeded", retry_after=0.05, count=1
    )
    receipt = await client.upgrade_to_shakesco("d7", 3, idempotency_key="fee")
    assert receipt.tx_hash is not None
    assert len(sandbox.applied) == 1
