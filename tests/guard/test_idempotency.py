"""Idempotency keys: replay, conflict, concurrency, restarts."""

from __future__ import annotations

import asyncio

import pytest

import shakesco_async as sa
from shakesco_async.ledger import EntryState, KeySource
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory


async def test_replay_returns_the_stored_receipt_and_sends_nothing(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client()
    first = await client.upgrade_to_shakesco("u1", 10, idempotency_key="signup:u1")
    second = await client.upgrade_to_shakesco("u1", 10, idempotency_key="signup:u1")
    assert (first.replayed, second.replayed) == (False, True)
    assert first.tx_hash == second.tx_hash is not None
    assert len(sandbox.applied) == 1
    assert await client.balance("u1") == 10


async def test_replay_survives_a_restart(make_client: ClientFactory, sandbox: Sandbox) -> None:
    a = make_client()
    await a.upgrade_to_shakesco("u2", 10)
    receipt = await a.redeem_tokens("u2", 3, idempotency_key="order-77")
    await a.aclose()
    b = make_client()  # a new process would see the same file
    again = await b.redeem_tokens("u2", 3, idempotency_key="order-77")
    assert again.replayed
    assert again.tx_hash == receipt.tx_hash
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1


async def test_same_key_other_parameters_conflicts(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    await client.upgrade_to_shakesco("u3", 10, idempotency_key="k")
    with pytest.raises(sa.IdempotencyConflict) as info:
        await client.upgrade_to_shakesco("u3", 11, idempotency_key="k")
    assert info.value.idempotency_key == "k"
    with pytest.raises(sa.IdempotencyConflict):
        await client.upgrade_to_shakesco("someone-else", 10, idempotency_key="k")
    with pytest.raises(sa.IdempotencyConflict):
        await client.expire_tokens("u3", idempotency_key="k")
    assert len(sandbox.applied) == 1


async def test_concurrent_calls_with_one_key_apply_once(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    sandbox.faults.add("delay", delay=0.2, count=1)  # keep the first in flight while the rest arrive
    results = await asyncio.gather(*(client.upgrade_to_shakesco("u4", 10, idempotency_key="dup") for _ in range(20)))
    assert len(sandbox.applied) == 1
    assert sum(not r.replayed for r in results) == 1
    assert await client.balance("u4") == 10


async def test_concurrent_conflicting_calls(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    outcomes = await asyncio.gather(
        client.upgrade_to_shakesco("a", 1, idempotency_key="same"),
        client.upgrade_to_shakesco("b", 1, idempotency_key="same"),
        return_exceptions=True,
    )
    assert sum(isinstance(o, sa.IdempotencyConflict) for o in outcomes) == 1
    assert len(sandbox.applied) == 1


async def test_a_failed_key_replays_its_error_without_sending(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    with pytest.raises(sa.InsufficientBalance):
        await client.redeem_tokens("poor", 5, idempotency_key="r")
    await client.upgrade_to_shakesco("poor", 100)  # even now that a resend would succeed
    with pytest.raises(sa.InsufficientBalance) as info:
        await client.redeem_tokens("poor", 5, idempotency_key="r")
    assert info.value.message == "Insufficient token balance"
    assert sandbox.applied_writes("/redeem-tokens") == []
    entry = await client.ledger.get("r")
    assert entry is not None
    assert entry.state == EntryState.FAILED
    assert entry.error is not None and entry.error["class"] == "InsufficientBalance"


async def test_a_key_the_api_refused_for_its_credentials_is_sent_once_they_work(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client()
    # The key is not (yet) linked to the token, or was revoked and restored meanwhile.
    sandbox.faults.add("error", endpoint="/upgrade-to-shakesco", count=1, status=403, message="Caller not authorized")
    sandbox.faults.add("error", endpoint="/upgrade-to-shakesco", count=1, status=401, message="Unauthorized")
    with pytest.raises(sa.Forbidden):
        await client.upgrade_to_shakesco("u9", 10, idempotency_key="migrate:u9")
    entry = await client.ledger.get("migrate:u9")
    assert entry is not None and entry.state == EntryState.ABANDONED  # not applied: given up, not the API's answer
    with pytest.raises(sa.Unauthorized):  # sent again while the key still fails: nothing applies
        await client.upgrade_to_shakesco("u9", 10, idempotency_key="migrate:u9")

    receipt = await client.upgrade_to_shakesco("u9", 10, idempotency_key="migrate:u9")
    assert receipt.tx_hash and not receipt.replayed
    assert (await client.upgrade_to_shakesco("u9", 10, idempotency_key="migrate:u9")).replayed
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == 1


async def test_reconcile_never_sends_a_write_its_caller_was_told_failed(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    """The caller heard Forbidden (not applied) and may have given the credit some other
    way: only its own retry with the same key sends the write, once."""
    client = make_client()
    sandbox.faults.add("error", endpoint="/upgrade-to-shakesco", count=1, status=403, message="Caller not authorized")
    with pytest.raises(sa.Forbidden):
        await client.upgrade_to_shakesco("u8", 10, idempotency_key="migrate:u8")
    for _ in range(2):  # the key works again: still nothing sent on the SDK's own
        summary = await client.reconcile(older_than=0)
        assert summary.examined == 0
    assert sandbox.applied_writes("/upgrade-to-shakesco") == []
    await client.upgrade_to_shakesco("u8", 10, idempotency_key="migrate:u8")
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == 1


async def test_keys_are_generated_when_not_given(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    receipt = await client.upgrade_to_shakesco("g1", 1)
    assert receipt.idempotency_key is not None and receipt.idempotency_key.startswith("sdk_")
    [applied] = sandbox.applied
    assert applied.idempotency_key == receipt.idempotency_key  # sent as the Idempotency-Key header
    entry = await client.ledger.get(receipt.idempotency_key)
    assert entry is not None and entry.key_source == KeySource.GENERATED


async def test_writes_for_different_customers_run_concurrently(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    sandbox.faults.add("delay", delay=0.3, count=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(client.upgrade_to_shakesco(f"par-{i}", 1) for i in range(10)))
    # Ten delayed writes for ten customers overlap; serialized they would take 3 s.
    assert loop.time() - started < 2.0
    assert len(sandbox.applied) == 10
