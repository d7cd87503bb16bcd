"""A cancelled caller (a client that went away, a timeout around the call) leaves no lease
behind, and a write it cancelled before the request left is not left looking sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import shakesco_async as sa
from shakesco_async.ledger import EntryState, KeySource
from shakesco_async.ledger._entry import OPEN_STATES
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._crash import die_at
from tests.support.ledgers import LedgerSpec
from tests.support.pg_session import lease_session

# Leases long enough that a leaked one would still be held when the next write waits for it.
SHORT_WAIT = sa.GuardSettings(verify_delay=0.0, lease_ttl=5.0, lease_wait=0.3)


class Gate:
    """Holds a wrapped coroutine function after it returned, until the test opens the gate."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.open = asyncio.Event()

    def wrap(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def held(*args: Any, **kwargs: Any) -> Any:
            result = await call(*args, **kwargs)
            self.reached.set()
            await self.open.wait()  # the caller is cancelled here, after the ledger did its work
            return result

        return held


async def _cancel_when_reached(call: Awaitable[Any], gate: Gate) -> None:
    task = asyncio.ensure_future(call)
    await gate.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.open.set()


async def _cancel_a_signup_once_recorded(client: sa.ShakescoClient, customer: str, key: str | None = None) -> None:
    """A one-time claim whose caller is cancelled just after its intent was recorded."""
    gate = Gate()
    ledger: Any = client.ledger
    ledger.begin = gate.wrap(ledger.begin)
    try:
        await _cancel_when_reached(client.claim_tokens("signup", customer, idempotency_key=key), gate)
    finally:
        del ledger.begin


async def _with_two_events(make_client: ClientFactory) -> sa.ShakescoClient:
    """A client, and a one-time event (signup) and a repeatable one (visit) to claim."""
    client = make_client(guard=SHORT_WAIT)
    await client.set_event_details("signup", 50, True)
    await client.set_event_details("visit", 1, False)
    return client


async def test_a_write_cancelled_while_its_intent_is_recorded_leaves_no_lease(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = await _with_two_events(make_client)
    await _cancel_a_signup_once_recorded(client, "c-cancel")

    await client.claim_tokens("visit", "c-cancel")  # not kept waiting for a lease nobody holds
    assert [w.endpoint for w in sandbox.applied_writes()] == ["/set-event-details"] * 2 + ["/claim-tokens"]
    await client.guard.drain()
    claims = await client.ledger.entries()
    cancelled = [e for e in claims if e.operation == "/claim-tokens" and e.params["event_name"] == "signup"]
    assert len(cancelled) == 1
    # Its request never left: not open (nothing to verify), and never to be sent by reconcile.
    assert cancelled[0].state == EntryState.ABANDONED and "cancelled" in (cancelled[0].reason or "")


async def test_a_caller_key_cancelled_before_sending_is_sent_once_when_retried(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client(guard=SHORT_WAIT)
    await client.set_event_details("signup", 50, True)
    await _cancel_a_signup_once_recorded(client, "c-retry", "signup-c-retry")
    await client.guard.drain()  # what the cancelled call left to give back

    entry = await client.ledger.get("signup-c-retry")
    assert entry is not None and entry.state == EntryState.RECORDED  # the caller's to send again
    receipt = await client.claim_tokens("signup", "c-retry", idempotency_key="signup-c-retry")
    assert receipt.tx_hash and not receipt.replayed
    assert len(sandbox.applied_writes("/claim-tokens")) == 1
    assert (await client.claim_tokens("signup", "c-retry", idempotency_key="signup-c-retry")).replayed


async def test_a_replay_cancelled_while_it_takes_the_lease_leaves_no_lease(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(guard=SHORT_WAIT)
    await die_at(client, "recorded", "unsent", "c-replay", KeySource.CALLER)
    await asyncio.sleep(0.06)  # the dead process's lease lapses
    gate = Gate()
    monkeypatch.setattr(client.ledger, "acquire", gate.wrap(client.ledger.acquire))
    await _cancel_when_reached(client.upgrade_to_shakesco("c-replay", 10, idempotency_key="unsent"), gate)
    monkeypatch.undo()

    receipt = await client.upgrade_to_shakesco("c-replay", 10, idempotency_key="unsent")
    assert receipt.tx_hash and len(sandbox.applied_writes("/upgrade-to-shakesco")) == 1


async def test_a_cancelled_reconcile_gives_back_every_lease_it_took(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(guard=SHORT_WAIT)
    customers = [f"c-rec-{i}" for i in range(6)]
    for n, customer in enumerate(customers):
        await die_at(client, "sending_applied", f"applied-{n}", customer, KeySource.CALLER)
    await asyncio.sleep(0.06)
    reached, judge = asyncio.Event(), client.guard._judge

    async def stuck(entry: Any) -> Any:
        reached.set()
        await asyncio.Event().wait()  # a verification read that never ends

    monkeypatch.setattr(client.guard, "_judge", stuck)
    # One worker: the first entry is being judged, the rest of its wave leased and queued.
    task = asyncio.ensure_future(client.reconcile(older_than=0, concurrency=1))
    await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.setattr(client.guard, "_judge", judge)

    summary = await client.reconcile(older_than=0)
    assert summary.counts["busy"] == 0 and summary.counts["committed"] == len(customers)
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == len(customers)  # none sent twice


async def test_a_write_timed_out_in_flight_is_verified_not_sent_again(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = await _with_two_events(make_client)
    sandbox.faults.add("delay", endpoint="/claim-tokens", count=1, delay=1.0)  # applied, answered late
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.claim_tokens("signup", "c-late", idempotency_key="late"), 0.2)
    entry = await client.ledger.get("late")
    assert entry is not None and entry.state == EntryState.SENDING  # it may have been applied: open

    await client.claim_tokens("visit", "c-late")  # its lease was given back; the earlier write is settled first
    settled = await client.ledger.get("late")
    assert settled is not None and settled.state == EntryState.COMMITTED
    assert (await client.claim_tokens("signup", "c-late", idempotency_key="late")).replayed
    assert len(sandbox.applied_writes("/claim-tokens")) == 2  # signup once, visit once


async def test_closing_the_client_finishes_what_a_cancelled_call_left(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(guard=SHORT_WAIT)
    await client.set_event_details("signup", 50, True)
    settle = client.ledger.settle

    async def slow_settle(*args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(0.3)  # a slow disk: the give-back is still under way at close
        return await settle(*args, **kwargs)

    monkeypatch.setattr(client.ledger, "settle", slow_settle)
    await _cancel_a_signup_once_recorded(client, "c-close", "closing")
    await client.aclose()

    other = make_client(guard=SHORT_WAIT)  # as the next process would see the ledger
    entry = await other.ledger.get("closing")
    assert entry is not None and entry.state == EntryState.RECORDED and entry.reason == "cancelled before it was sent"
    assert (await other.claim_tokens("signup", "c-close", idempotency_key="closing")).tx_hash


async def test_a_call_cancelled_while_postgres_gives_its_lease_back_still_gives_it_back(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    if ledger_spec.backend != "postgres":
        pytest.skip("PostgreSQL's leases are advisory locks held by a session")
    client = make_client(guard=SHORT_WAIT)
    await client.set_event_details("visit", 1, False)
    await client.claim_tokens("visit", "c-warm")  # the lease session is open
    reached = asyncio.Event()

    async def slow_unlock(sql: str) -> None:  # a slow network, say
        if "unlock" in sql:
            reached.set()
            await asyncio.sleep(0.2)

    with lease_session(client.ledger, slow_unlock):
        task = asyncio.ensure_future(client.claim_tokens("visit", "c-pg"))
        await reached.wait()  # applied; its lease is being given back
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.guard.drain()
        await asyncio.sleep(0.3)

    other = make_client(guard=SHORT_WAIT)  # another host: its own session
    await other.claim_tokens("visit", "c-pg")
    assert len(sandbox.applied_writes("/claim-tokens")) == 3


async def test_closing_the_client_lets_writes_under_way_finish(make_client: ClientFactory, sandbox: Sandbox) -> None:
    # A shutdown used to cut a write off mid-flight: its outcome was then unknown (in doubt)
    # although the API was about to answer.
    client = make_client()
    await client.upgrade_to_shakesco("sd", 100)
    sandbox.faults.add("delay", endpoint="/redeem-tokens", delay=0.3, count=1)
    write = asyncio.create_task(client.redeem_tokens("sd", 10, idempotency_key="shutdown"))
    await asyncio.sleep(0.1)  # the request is at the API
    closing = [asyncio.create_task(client.aclose()) for _ in range(2)]  # twice: neither hangs
    await asyncio.sleep(0)
    with pytest.raises(sa.TransportError, match="closed"):  # nothing new starts meanwhile
        await client.balance("sd")
    receipt = await write
    await asyncio.wait_for(asyncio.gather(*closing), 5)
    assert receipt.tx_hash is not None and not receipt.verified
    entry = await client.ledger.get("shutdown")
    assert entry is not None and entry.state == EntryState.COMMITTED
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1


async def test_a_write_under_way_at_close_can_still_verify_a_lost_answer(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client()
    await client.upgrade_to_shakesco("sv", 100)
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    write = asyncio.create_task(client.redeem_tokens("sv", 10, idempotency_key="verify-at-close"))
    await asyncio.sleep(0)  # under way
    closing = asyncio.create_task(client.aclose())
    receipt = await write  # its verification reads are part of the call, not new calls
    await closing
    assert receipt.verified
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1


class _NthCall:
    """Holds the ``n``-th ledger call of a pass once the ledger has done it, so the pass
    is cancelled there, as if its caller went away at that await."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0
        self.reached, self.open = asyncio.Event(), asyncio.Event()

    def wrap(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            result = await call(*args, **kwargs)
            self.calls += 1
            if self.calls == self.n:
                self.reached.set()
                await self.open.wait()
            return result

        return counted


PASS_CALLS = ("claim_open", "unclaim", "lease_entries", "release", "renew", "get", "mark_sending", "settle")


async def test_a_reconcile_cancelled_at_any_await_strands_no_claim(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled after each of its ledger calls in turn (claiming a page among them), a pass
    gives back every claim and lease it took: the next pass right after settles everything."""
    client = make_client(guard=SHORT_WAIT)
    ledger: Any = client.ledger
    step = 0
    while True:
        step += 1
        for n in range(3):
            await die_at(client, "sending_applied", f"k{step}-{n}", f"cx{step}-{n}", KeySource.CALLER)
        await asyncio.sleep(0.06)  # the dead process's leases lapse
        gate = _NthCall(step)
        with monkeypatch.context() as patch:
            for name in PASS_CALLS:
                patch.setattr(ledger, name, gate.wrap(getattr(ledger, name)))
            task = asyncio.ensure_future(client.reconcile(older_than=0, concurrency=2))
            reached = asyncio.ensure_future(gate.reached.wait())
            await asyncio.wait({task, reached}, return_when=asyncio.FIRST_COMPLETED)
            reached.cancel()
            if task.done():  # the pass made fewer calls than ``step``: every await was tried
                await task
                break
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gate.open.set()
            await client.guard.drain()
        summary = await client.reconcile(older_than=0)
        assert summary.counts["busy"] == 0, (step, summary)
        counts = {state: n for state, n in (await client.ledger.counts()).items() if n}
        if set(counts) != {EntryState.COMMITTED}:  # what was left, and why: warnings, a pass after
            left = [(e.key, e.state, e.updated_at) for e in await client.ledger.entries(states=OPEN_STATES)]
            warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            pytest.fail(
                f"step {step}: {counts} after {summary}; open {left}; warned {warned};"
                f" a pass after: {await client.reconcile(older_than=0)}"
            )
    assert step > 4  # it was cancelled after the claim, the leases and settling entries
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == 3 * step  # nothing sent twice
