"""The read a write's proof needs before its send costs no commit of its own on the way.

SQLite fences a read made before the intent: read, then one commit (intent, lease,
snapshot, sending). PostgreSQL cannot: the read starts once the customers are leased,
beside the intent's commit, and the mark follows both.
"""

from __future__ import annotations

from typing import Any

import pytest

import shakesco_async as sa
from shakesco_async.guard import _wrapper
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the guard did, in order: pre-send reads and verifications (of the proof)."""
    seen: list[str] = []
    snapshot_of, verify = _wrapper.snapshot_of, _wrapper.verify

    async def spied_snapshot(*args: Any) -> Any:
        seen.append("read")
        return await snapshot_of(*args)

    async def spied_verify(*args: Any) -> Any:
        seen.append("verify")
        return await verify(*args)

    monkeypatch.setattr(_wrapper, "snapshot_of", spied_snapshot)
    monkeypatch.setattr(_wrapper, "verify", spied_verify)
    return seen


async def test_the_read_before_a_send_goes_beside_the_intents_commit(
    make_client: ClientFactory, sandbox: Sandbox, events: list[str]
) -> None:
    client = make_client()
    await client.upgrade_to_shakesco("ann", 10)
    events.clear()
    ledger: Any = client.ledger
    begin, mark_sending = ledger.begin, ledger.mark_sending

    def spied_begin(*args: Any, **kwargs: Any) -> Any:
        events.append("begin")
        began = begin(*args, **kwargs)

        async def ended() -> Any:
            got = await began
            events.append("begun")
            return got

        return ended()

    async def spied_mark(*args: Any, **kwargs: Any) -> None:
        events.append("mark")
        await mark_sending(*args, **kwargs)

    ledger.begin, ledger.mark_sending = spied_begin, spied_mark
    receipt = await client.redeem_tokens("ann", 1, idempotency_key="beside")
    assert receipt.tx_hash and len(sandbox.applied_writes("/redeem-tokens")) == 1
    if ledger.fences_snapshots:  # read first; its one commit keeps the snapshot and marks it sending
        assert events == ["read", "begin", "begun"]
    else:  # the read starts once leased, before the intent's commit has returned; the mark after
        assert events == ["begin", "read", "begun", "mark"]
    entry = await client.ledger.get("beside")
    assert entry is not None and entry.attempts == 1 and entry.snapshot == {"total_spent": "0.0"}


async def test_a_write_is_judged_by_a_state_read_after_an_earlier_open_write_is_settled(
    make_client: ClientFactory, sandbox: Sandbox, events: list[str]
) -> None:
    """A read made before the earlier write on the customer was settled may predate that
    write's landing: whatever was read beside the intent's commit is read again."""
    client = make_client(timeout=0.5)
    await client.upgrade_to_shakesco("bo", 100)
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)  # the verification fails
    with pytest.raises(sa.OutcomeUnknown):
        await client.redeem_tokens("bo", 5, idempotency_key="earlier")
    sandbox.faults.clear()
    events.clear()
    receipt = await client.redeem_tokens("bo", 7, idempotency_key="later")
    assert receipt.tx_hash
    assert "verify" in events and events[-1] == "read", events  # the state read after the settling
    assert (await client.ledger.get("earlier")).state == sa.ledger.EntryState.COMMITTED  # type: ignore[union-attr]
    later = await client.ledger.get("later")
    assert later is not None and later.snapshot == {"total_spent": "5.0"}
    assert await client.balance("bo") == 88
