"""Every kind of write under every fault mode: applied exactly once, ledger state to match."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shakesco_async import Link, Receipt
from shakesco_async.endpoints import ALL_ENDPOINTS
from shakesco_async.guard import VERIFIERS
from shakesco_async.ledger import EntryState
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._kinds import REPEATABLE, VERIFIABLE, Kind

BEFORE = ["fail_before_commit", "reset"]
AFTER = ["drop_after_commit", "fail_after_commit", "garbage", "delay"]


def test_every_write_has_a_verifier_and_a_kind() -> None:
    writes = {e.path for e in ALL_ENDPOINTS if e.is_write}
    assert set(VERIFIERS) == writes
    assert {k.endpoint for k in VERIFIABLE + REPEATABLE} == writes


def _fault(sandbox: Sandbox, kind: Kind, mode: str) -> None:
    sandbox.faults.add(mode, endpoint=kind.endpoint, count=1, delay=0.8)


@pytest.mark.parametrize("mode", BEFORE + AFTER)
@pytest.mark.parametrize("kind", VERIFIABLE, ids=lambda k: k.name)
async def test_one_application_per_fault(make_client: ClientFactory, sandbox: Sandbox, kind: Kind, mode: str) -> None:
    client = make_client(timeout=0.4)
    await kind.setup(client, sandbox)
    before = len(sandbox.applied_writes(kind.endpoint))
    _fault(sandbox, kind, mode)
    receipt = await kind.call(client, "the-key")
    assert len(sandbox.applied_writes(kind.endpoint, idempotency_key="the-key")) == 1
    assert len(sandbox.applied_writes(kind.endpoint)) == before + 1
    entry = await client.ledger.get("the-key")
    assert entry is not None
    assert entry.state == EntryState.COMMITTED
    assert isinstance(receipt, Receipt)
    if mode in BEFORE:  # provably not applied, sent again, answered
        assert receipt.tx_hash is not None
        assert not receipt.verified
        assert entry.attempts == 2
    else:  # applied, answer lost, proven by reading state back
        assert receipt.tx_hash is None
        assert receipt.verified
        assert entry.attempts == 1
    await kind.check(client, sandbox)
    again = await kind.call(client, "the-key")
    assert again.replayed
    assert len(sandbox.applied_writes(kind.endpoint, idempotency_key="the-key")) == 1


@pytest.mark.parametrize("mode", BEFORE + AFTER)
@pytest.mark.parametrize("kind", REPEATABLE, ids=lambda k: k.name)
async def test_repeatable_writes_end_committed(
    make_client: ClientFactory, sandbox: Sandbox, kind: Kind, mode: str
) -> None:
    client = make_client(timeout=0.4)
    await kind.setup(client, sandbox)
    _fault(sandbox, kind, mode)
    result = await kind.call(client, "rep-key")
    assert isinstance(result, (Receipt, Link))
    applied = len(sandbox.applied_writes(kind.endpoint, idempotency_key="rep-key"))
    assert applied == (1 if mode in BEFORE else 2)  # harmless by the API's own docs
    entry = await client.ledger.get("rep-key")
    assert entry is not None
    assert entry.state == EntryState.COMMITTED


async def test_no_fault_records_tx_hash(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    receipt = await client.upgrade_to_shakesco("c9", 5, idempotency_key="plain")
    [applied] = sandbox.applied_writes(idempotency_key="plain")
    assert receipt.tx_hash == applied.tx_hash
    entry = await client.ledger.get("plain")
    assert entry is not None
    assert entry.result == {"kind": "receipt", "tx_hash": applied.tx_hash, "verified": False}
    assert entry.snapshot == {"total_earned": "0.0"}
    assert entry.customers == ("c9",)
    assert entry.params == {"customer_ref": "c9", "amount": "5"}


@pytest.mark.parametrize("status", [303, 307, 504])
async def test_an_answer_that_is_neither_success_nor_refusal_is_verified(
    make_client: ClientFactory, sandbox: Sandbox, status: int
) -> None:
    # A 303 is how a gateway in front of an API may answer a POST it has carried out
    # (post/redirect/get): it proves nothing, so it is verified like a lost answer, never
    # stored as the key's failure (a caller would then send the credit again).
    client = make_client(timeout=0.4)
    await client.upgrade_to_shakesco("st", 100)
    sandbox.faults.add("fail_after_commit", endpoint="/redeem-tokens", count=1, status=status, message="See Other")
    receipt = await client.redeem_tokens("st", 10, idempotency_key=f"redirected-{status}")
    assert receipt.verified
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    entry = await client.ledger.get(f"redirected-{status}")
    assert entry is not None and entry.state == EntryState.COMMITTED
    # Not applied, and answered with a redirect: sent again only once proven not applied.
    sandbox.faults.add("fail_before_commit", endpoint="/redeem-tokens", count=1, status=status, message="See Other")
    again = await client.redeem_tokens("st", 10, idempotency_key=f"redirected-again-{status}")
    assert again.tx_hash is not None
    assert len(sandbox.applied_writes("/redeem-tokens")) == 2
    assert await client.balance("st") == 80


async def test_amounts_beyond_28_digits_are_verified_exactly(make_client: ClientFactory, sandbox: Sandbox) -> None:
    # 100 billion tokens and one wei: 30 significant digits, past Decimal's default
    # precision of 28, which rounded the movements read back and left the write in doubt.
    client = make_client()
    big = Decimal("123456789012.123456789012345678")
    await client.upgrade_to_shakesco("p1", big)
    await client.upgrade_to_shakesco("p2", big)
    amount = Decimal("100000000000.000000000000000001")
    sandbox.faults.add("drop_after_commit", endpoint="/transfer-tokens", count=1)
    receipt = await client.transfer_tokens("p1", "p2", amount)
    assert receipt.verified
    assert await client.balance("p1") == Decimal("23456789012.123456789012345677")
    assert len(sandbox.applied_writes("/transfer-tokens")) == 1
