"""The caller's contract, whoever made the key: every guarded write ends as

- a receipt: applied exactly once;
- ``OutcomeUnknown``: pending; the SDK finishes it, at most once;
- any other ``ShakescoError``: not applied, and never sent by the SDK on its own (the
  caller's retry with the same key sends it, once).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import shakesco_async as sa
from shakesco_async.ledger import EntryState, Settlement
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory

Write = Callable[[sa.ShakescoClient, str], Awaitable[Any]]
WRITES: dict[str, Write] = {
    "redeem": lambda c, k: c.redeem_tokens("ann", 5, idempotency_key=k),
    "transfer": lambda c, k: c.transfer_tokens("ann", "bob", 5, idempotency_key=k),
}


@pytest.mark.parametrize("retries", [0, 1])
@pytest.mark.parametrize("fault", ["fail_before_commit", "reset"])
@pytest.mark.parametrize("kind", list(WRITES))
async def test_a_write_failed_before_the_api_applied_it_is_never_sent_later(
    make_client: ClientFactory, sandbox: Sandbox, kind: str, fault: str, retries: int
) -> None:
    # A timeout with room for a loaded machine's reads: the faults answer at once.
    client = make_client(timeout=1.0, max_retries=retries)
    await client.upgrade_to_shakesco("ann", 100)
    rule = sandbox.faults.add(fault, endpoint=f"/{kind}-tokens", count=retries + 1)
    with pytest.raises(sa.ShakescoError) as info:
        await WRITES[kind](client, "caller-key")
    assert rule.fired == retries + 1, f"the write never reached the API: {info.value!r}"
    assert not isinstance(info.value, sa.OutcomeUnknown)
    entry = await client.ledger.get("caller-key")
    assert entry is not None and entry.state == EntryState.ABANDONED
    for _ in range(2):  # the API works again; reconcile, however often, sends nothing
        assert (await client.reconcile(older_than=0)).examined == 0
    assert sandbox.applied_writes(f"/{kind}-tokens") == []
    receipt = await WRITES[kind](client, "caller-key")  # the caller's own retry: once
    assert not receipt.replayed and len(sandbox.applied_writes(f"/{kind}-tokens")) == 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 8])
async def test_random_faults_keep_the_contract(make_client: ClientFactory, sandbox: Sandbox, seed: int) -> None:
    rng = random.Random(seed)
    client = make_client(timeout=0.3, max_retries=rng.choice([0, 1]))
    customers = [f"k{i}" for i in range(8)]
    for ref in customers:
        await client.upgrade_to_shakesco(ref, 1000)
    for mode in ("fail_before_commit", "reset", "drop_after_commit", "fail_after_commit"):
        sandbox.faults.add(mode, on="write", probability=0.08)
    sandbox.faults.add("error", on="read", status=503, probability=0.05)
    keys = [f"op-{i}" for i in range(120)]
    calls = []
    for key in keys:
        a, b = rng.sample(customers, 2)
        if rng.random() < 0.5:
            calls.append(client.redeem_tokens(a, 1, idempotency_key=key))
        else:
            calls.append(client.transfer_tokens(a, b, 1, idempotency_key=key))
    results = dict(zip(keys, await asyncio.gather(*calls, return_exceptions=True), strict=True))
    sandbox.faults.clear()
    for _ in range(3):  # whatever the SDK still finishes on its own
        await client.reconcile(older_than=0)
    applied = Counter(w.idempotency_key for w in sandbox.applied if (w.idempotency_key or "").startswith("op-"))
    told_failed = [
        k for k, r in results.items() if isinstance(r, sa.ShakescoError) and not isinstance(r, sa.OutcomeUnknown)
    ]
    assert all(isinstance(r, (sa.Receipt, sa.ShakescoError)) for r in results.values())
    assert [k for k in told_failed if applied[k]] == [], "a write was applied after its caller heard it failed"
    assert all(applied[k] == 1 for k, r in results.items() if isinstance(r, sa.Receipt))
    assert all(applied[k] <= 1 for k in keys)


async def test_a_write_found_settled_when_it_would_be_marked_answers_with_that(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer recorded the API's answer between this call's lease and its mark: the
    ledger refuses the mark (nothing is sent), and the call answers with the recorded
    receipt, not with an error that would say "not applied"."""
    client = make_client()
    await client.upgrade_to_shakesco("ann", 100)
    ledger = client.ledger
    mark_sending = ledger.mark_sending

    async def settled_first(key: str, **kwargs: Any) -> None:
        result = {"kind": "receipt", "tx_hash": "0xelsewhere", "verified": True}
        assert await ledger.settle(key, Settlement(EntryState.COMMITTED, result=result))
        await mark_sending(key, **kwargs)

    monkeypatch.setattr(ledger, "mark_sending", settled_first)
    monkeypatch.setattr(ledger, "fences_snapshots", False)  # SQLite: record, then read and mark
    receipt = await client.redeem_tokens("ann", 5, idempotency_key="settled-meanwhile")
    assert (receipt.tx_hash, receipt.replayed) == ("0xelsewhere", True)
    assert sandbox.applied_writes("/redeem-tokens") == []  # nothing sent
    entry = await ledger.get("settled-meanwhile")
    assert entry is not None and entry.state == EntryState.COMMITTED
