"""Claims of one-time events: no pre-send read, settled by /has-claimed-event, and safe
when the event's kind changes behind the guard's back."""

from __future__ import annotations

import asyncio

import pytest

import shakesco_async as sa
from shakesco_async import GuardSettings
from shakesco_async.ledger import EntryState, Settlement
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._crash import long_ago

GUARD = GuardSettings(verify_delay=0.0)


async def _events(client: sa.ShakescoClient) -> None:
    await client.set_event_details("signup", 50, True)
    await client.set_event_details("purchase", 5, False)


async def test_one_time_claim_is_sending_from_its_first_commit(make_client: ClientFactory) -> None:
    client = make_client(guard=GUARD)
    await _events(client)
    await client.claim_tokens("signup", "o1", idempotency_key="one-time-1")
    await client.claim_tokens("purchase", "o1", idempotency_key="repeat-1")
    one_time = await client.ledger.get("one-time-1")
    repeat = await client.ledger.get("repeat-1")
    assert one_time is not None and repeat is not None
    assert one_time.state == repeat.state == EntryState.COMMITTED
    assert one_time.snapshot == {"kind": "one_time"} and one_time.attempts == 1
    assert repeat.snapshot == {"total_earned": "50.0"}


async def test_lost_answer_is_settled_by_has_claimed(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client(guard=GUARD)
    await _events(client)
    sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", count=1)
    receipt = await client.claim_tokens("signup", "o2", idempotency_key="lost-1")
    assert receipt.verified
    assert len(sandbox.applied_writes("/claim-tokens", idempotency_key="lost-1")) == 1
    assert await client.total_earned("o2") == 50


async def test_lost_request_is_sent_again(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client(guard=GUARD, timeout=0.5)
    await _events(client)
    sandbox.faults.add("reset", endpoint="/claim-tokens", count=1)  # never applied
    receipt = await client.claim_tokens("signup", "o3", idempotency_key="reset-1")
    assert receipt.tx_hash is not None and not receipt.verified
    assert len(sandbox.applied_writes("/claim-tokens", idempotency_key="reset-1")) == 1


async def test_event_made_repeatable_behind_the_cache_leaves_doubt(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client(guard=GUARD, timeout=0.5)
    await _events(client)
    await client.claim_tokens("signup", "o4")  # the guard now knows "signup" as one-time
    await client.claim_tokens("signup", "o5")
    sandbox.business().set_event_details("signup", sa._validate.amount("x", 50), False)  # not through the client
    sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", count=1)
    with pytest.raises(sa.OutcomeUnknown, match="no longer one-time"):
        await client.claim_tokens("signup", "o5", idempotency_key="stale-1")
    entry = await client.ledger.get("stale-1")
    assert entry is not None and entry.state == EntryState.IN_DOUBT
    assert len(sandbox.applied_writes("/claim-tokens", idempotency_key="stale-1")) == 1  # never sent twice


async def test_changing_an_event_through_the_client_forgets_its_kind(make_client: ClientFactory) -> None:
    client = make_client(guard=GUARD)
    await _events(client)
    await client.claim_tokens("signup", "o6", idempotency_key="before")
    await client.set_event_details("signup", 50, False)
    await client.claim_tokens("signup", "o6", idempotency_key="after")
    after = await client.ledger.get("after")
    assert after is not None and after.snapshot == {"total_earned": "50.0"}


async def test_event_ttl_zero_always_reads_state(make_client: ClientFactory) -> None:
    client = make_client(guard=GuardSettings(verify_delay=0.0, event_ttl=0))
    await _events(client)
    await client.claim_tokens("signup", "o7", idempotency_key="no-cache")
    entry = await client.ledger.get("no-cache")
    assert entry is not None and entry.snapshot == {"total_earned": "0.0"}


async def test_unknown_event_falls_back_to_a_snapshot(make_client: ClientFactory) -> None:
    client = make_client(guard=GUARD)
    with pytest.raises(sa.EventNotFound):
        await client.claim_tokens("nope", "o8", idempotency_key="missing")
    entry = await client.ledger.get("missing")
    assert entry is not None and entry.state == EntryState.FAILED
    assert entry.snapshot == {"total_earned": "0.0"}


async def test_a_repeatable_claim_takes_one_commit_before_sending(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(guard=GUARD)
    await _events(client)
    calls: list[str] = []
    real = client.ledger.mark_sending

    async def spy(key: str, **kwargs: object) -> None:
        calls.append(key)
        await real(key, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(client.ledger, "mark_sending", spy)
    sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", count=1)
    receipt = await client.claim_tokens("purchase", "r1", idempotency_key="rep-1")
    assert receipt.verified  # the lost answer was judged against the snapshot
    entry = await client.ledger.get("rep-1")
    assert entry is not None and entry.snapshot == {"total_earned": "0.0"}
    assert len(sandbox.applied_writes("/claim-tokens", idempotency_key="rep-1")) == 1
    assert calls == ([] if client.ledger.fences_snapshots else ["rep-1"])


async def test_a_write_by_another_process_during_the_read_forces_a_new_snapshot(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    mine, theirs = make_client(guard=GUARD), make_client(guard=GUARD)  # two processes, one ledger
    await _events(mine)
    await mine.event_details("purchase")
    sandbox.faults.add("delay", endpoint="/total-earned", on="read", delay=0.4, count=1)  # mine's read

    async def meanwhile() -> None:
        await asyncio.sleep(0.1)  # while `mine` reads total_earned, `theirs` credits the customer
        await theirs.claim_tokens("purchase", "r2", idempotency_key="theirs")

    await asyncio.gather(mine.claim_tokens("purchase", "r2", idempotency_key="mine"), meanwhile())
    order = [w.idempotency_key for w in sandbox.applied_writes("/claim-tokens")]
    assert sorted(order) == ["mine", "theirs"]  # each applied once
    entry = await mine.ledger.get("mine")
    assert entry is not None and entry.state == EntryState.COMMITTED
    # Whatever the order, mine's snapshot is the state just before mine applied: with a fence
    # (SQLite), mine read first, theirs wrote, so mine read again; without (PostgreSQL),
    # mine leased first and theirs waited.
    before_mine = "5.0" if order == ["theirs", "mine"] else "0.0"
    assert entry.snapshot == {"total_earned": before_mine}
    assert order == (["theirs", "mine"] if mine.ledger.fences_snapshots else ["mine", "theirs"])
    assert await mine.total_earned("r2") == 10


@pytest.mark.parametrize("event", ["signup", "purchase"])
async def test_an_outcome_lost_before_it_is_durable_is_verified_not_resent(
    make_client: ClientFactory, sandbox: Sandbox, event: str
) -> None:
    """The 200's record is queued, not awaited: a crash before it lands leaves `sending`."""
    client = make_client(guard=GUARD)
    await _events(client)
    real_settle = client.ledger.settle

    async def crash_before_queued_outcome(key: str, move: Settlement) -> bool:
        if move.wait is False and move.state == EntryState.COMMITTED:
            assert move.owner is not None
            await client.ledger.release(move.release, owner=move.owner)
            return True  # what dying does: the leases go, the outcome never lands
        return await real_settle(key, move)

    client.ledger.settle = crash_before_queued_outcome  # type: ignore[method-assign]
    receipt = await client.claim_tokens(event, "lost-outcome", idempotency_key="lost-outcome")
    assert receipt.tx_hash is not None
    client.ledger.settle = real_settle  # type: ignore[method-assign]
    entry = await client.ledger.get("lost-outcome")
    assert entry is not None and entry.state == EntryState.SENDING
    await long_ago(client.ledger, "lost-outcome")  # reconcile runs once it cannot be on its way
    summary = await client.reconcile(older_than=0)
    assert summary.counts["committed"] == 1
    replay = await client.claim_tokens(event, "lost-outcome", idempotency_key="lost-outcome")
    assert replay.replayed and replay.verified
    assert len(sandbox.applied_writes("/claim-tokens", idempotency_key="lost-outcome")) == 1
