"""Hundreds of concurrent writes over a few customers with random faults.

``SEEDS=3,4,5 pytest tests/guard/test_randomized.py`` tries other seeds (1 and 2 by default).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from decimal import Decimal

import pytest

from shakesco_async import OutcomeUnknown, ShakescoError
from shakesco_async.ledger import EntryState
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory

CUSTOMERS = [f"r{i}" for i in range(6)]
START = Decimal(200)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("SEEDS", "1,2").split(",")])
async def test_random_faults_never_double_apply(make_client: ClientFactory, sandbox: Sandbox, seed: int) -> None:
    rng = random.Random(seed)
    client = make_client(timeout=0.3)
    await client.set_event_details("purchase", 5, False)
    for ref in CUSTOMERS:
        await client.upgrade_to_shakesco(ref, START)
    for mode in ("drop_after_commit", "fail_after_commit", "garbage"):
        sandbox.faults.add(mode, probability=0.06)
    # Not applied, these are sent again only once they can no longer land (the timeout).
    for mode in ("fail_before_commit", "reset"):
        sandbox.faults.add(mode, probability=0.03)
    sandbox.faults.add("delay", probability=0.02, delay=0.4)
    sandbox.faults.add("fail_then_commit", probability=0.02, delay=0.15)  # lands within the timeout

    ops = []
    for i in range(300):
        a, b = rng.sample(CUSTOMERS, 2)
        amount = Decimal(rng.randint(1, 40)) / 4
        choice = rng.random()
        key = f"op-{i}"
        if choice < 0.35:
            ops.append(client.claim_tokens("purchase", a, idempotency_key=key))
        elif choice < 0.7:
            ops.append(client.redeem_tokens(a, amount, idempotency_key=key))
        else:
            ops.append(client.transfer_tokens(a, b, amount, idempotency_key=key))
    results = await asyncio.gather(*ops, return_exceptions=True)
    assert not [r for r in results if isinstance(r, OutcomeUnknown)]  # reads never failed here
    assert all(not isinstance(r, BaseException) or isinstance(r, ShakescoError) for r in results)

    applied = Counter(w.idempotency_key for w in sandbox.applied if (w.idempotency_key or "").startswith("op-"))
    expected = dict.fromkeys(CUSTOMERS, START)
    entries = await client.ledger.entries()
    by_state = Counter(e.state for e in entries if e.key.startswith("op-"))
    assert by_state[EntryState.IN_DOUBT] == 0
    assert by_state[EntryState.SENDING] == 0
    for entry in entries:
        if not entry.key.startswith("op-"):
            continue
        if entry.state != EntryState.COMMITTED:
            assert applied[entry.key] == 0, entry
            continue
        assert applied[entry.key] == 1, entry
        p = entry.params
        if entry.operation == "/claim-tokens":
            expected[str(p["customer_ref"])] += 5
        elif entry.operation == "/redeem-tokens":
            expected[str(p["customer_ref"])] -= Decimal(str(p["amount"]))
        else:
            expected[str(p["from_customer_ref"])] -= Decimal(str(p["amount"]))
            expected[str(p["to_customer_ref"])] += Decimal(str(p["amount"]))
    assert sum(applied.values()) == by_state[EntryState.COMMITTED]
    for ref in CUSTOMERS:
        assert sandbox.business().customer(ref).balance == expected[ref]
