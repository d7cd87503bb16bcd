"""A write whose lease ended while its request was still on its way is not judged (nor
sent again) until that request can no longer reach the API."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import shakesco_async as sa
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.support.ledgers import LedgerSpec

_SETTINGS = sa.GuardSettings(verify_delay=0.0, lease_ttl=30.0)  # with make_client's timeout of 2 s
ROOT = Path(__file__).resolve().parents[2]


async def _end_the_lease(how: str, call: asyncio.Task[Any], client: Any, spec: LedgerSpec) -> None:
    if how == "cancelled":  # the caller gave up waiting for the answer: its lease is given back
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        return
    # The process died (or lost its lease session): PostgreSQL ends its locks at once.
    admin = await asyncpg.connect(spec.location)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", client.ledger._leases.session.get_server_pid())
    finally:
        await admin.close()


async def _on_its_way(client: Any, arrives_after: float) -> tuple[asyncio.Task[Any], list[asyncio.Task[Any]]]:
    """Start a repeatable claim (job-1 on "cust") whose request reaches the API
    ``arrives_after`` seconds after it left, whatever its caller does. Returns once it has
    left: the call, and the request's landing (to await at the end)."""
    await client.set_event_details("visit", 10, False)  # repeatable: the API takes every claim
    on_its_way = asyncio.Event()
    send_once = client.guard._send_once
    landing: list[asyncio.Task[Any]] = []

    async def slow_network(*args: Any) -> Any:
        async def arrive() -> Any:
            await asyncio.sleep(arrives_after)
            return await send_once(*args)

        landing.append(asyncio.ensure_future(arrive()))
        on_its_way.set()
        return await asyncio.shield(landing[0])

    client.guard._send_once = slow_network
    call = asyncio.create_task(client.claim_tokens("visit", "cust", idempotency_key="job-1"))
    await on_its_way.wait()
    return call, landing


@pytest.mark.parametrize("how", ["cancelled", "session ended"])
async def test_a_redelivered_job_waits_out_the_request_still_on_its_way(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec, how: str
) -> None:
    if how == "session ended" and ledger_spec.backend != "postgres":
        pytest.skip("only a PostgreSQL lease lives in a session that can end under a live process")
    first = make_client(guard=_SETTINGS)
    call, landing = await _on_its_way(first, arrives_after=1.0)
    await _end_the_lease(how, call, first, ledger_spec)
    again = await make_client(guard=_SETTINGS).claim_tokens("visit", "cust", idempotency_key="job-1")
    await asyncio.gather(*landing, return_exceptions=True)
    assert again.replayed and again.verified  # judged once the first request had landed
    assert len(sandbox.applied_writes("/claim-tokens")) == 1


async def test_a_request_leaving_long_after_its_mark_is_marked_again(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    """Whoever judges an entry left sending counts its request's flight from the commit
    that marked it. A request that leaves long after that commit (its call first waited
    for an earlier write, or its loop stalled) is marked again as it leaves: else the
    flight counted would end before the request could land."""
    if ledger_spec.backend != "sqlite":
        pytest.skip("a claim's snapshot is read before its intent is recorded (and marked) only with SQLite")
    first = make_client(guard=_SETTINGS, timeout=0.25)  # on its way at most 1.25 s after the mark
    resolve_others = first.guard._resolve_others

    async def stalled(*args: Any) -> None:
        await asyncio.sleep(1.5)  # between the intent's commit and the request leaving
        await resolve_others(*args)

    first.guard._resolve_others = stalled  # type: ignore[method-assign]
    call, landing = await _on_its_way(first, arrives_after=0.25)
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    redelivered = make_client(guard=_SETTINGS, timeout=0.25)
    again = await redelivered.claim_tokens("visit", "cust", idempotency_key="job-1")
    await asyncio.gather(*landing, return_exceptions=True)
    assert again.replayed and again.verified  # judged once the first request had landed
    assert len(sandbox.applied_writes("/claim-tokens")) == 1
    entry = await redelivered.ledger.get("job-1")
    assert entry is not None and entry.attempts == 1  # marked twice, sent once


async def _given_up(make_client: ClientFactory, arrives_after: float) -> list[asyncio.Task[Any]]:
    """A claim by a client with a 4 s timeout (its request may be on its way 5 s), whose
    caller gives up while its request is on its way; returns the request's landing."""
    call, landing = await _on_its_way(make_client(guard=_SETTINGS, timeout=4.0), arrives_after)
    call.cancel()  # its lease is given back; the request goes on
    await asyncio.gather(call, return_exceptions=True)
    return landing


async def test_a_process_with_a_shorter_timeout_waits_out_the_senders_flight(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    """Processes sharing a ledger may use different timeouts (a web handler's short one, a
    worker's long one): a write's entry records how long its request may be on its way,
    and another process waits that out, not its own shorter reckoning."""
    landing = await _given_up(make_client, arrives_after=2.5)  # within the sender's timeout
    hasty = make_client(guard=_SETTINGS, timeout=0.25)  # by its own reckoning, 1.25 s
    again = await hasty.claim_tokens("visit", "cust", idempotency_key="job-1")
    await asyncio.gather(*landing, return_exceptions=True)
    assert again.replayed and again.verified  # judged once the first request had landed
    assert len(sandbox.applied_writes("/claim-tokens")) == 1


async def test_a_wait_longer_than_the_waiters_lease_keeps_the_customer(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    """Waiting out another process's longer flight, a call renews its own lease when that
    would lapse first (SQLite leases run out; PostgreSQL locks do not): no other process
    can write the customer while the call is about to judge its state."""
    landing = await _given_up(make_client, arrives_after=1.0)
    hasty = make_client(guard=sa.GuardSettings(verify_delay=0.0, lease_ttl=2.0), timeout=0.25)
    waiting = asyncio.create_task(hasty.claim_tokens("visit", "cust", idempotency_key="job-1"))
    await asyncio.sleep(3.0)  # hasty's lease, as first taken, has lapsed; the flight has not
    assert not waiting.done()
    other = make_client(guard=sa.GuardSettings(verify_delay=0.0, lease_ttl=30.0, lease_wait=0.0))
    with pytest.raises(sa.LedgerError, match="lease"):
        await other.claim_tokens("visit", "cust", idempotency_key="job-2")
    again = await waiting
    await asyncio.gather(*landing, return_exceptions=True)
    assert again.replayed and again.verified
    assert len(sandbox.applied_writes("/claim-tokens")) == 1


async def test_reconcile_leaves_a_write_that_may_still_be_on_its_way_for_its_next_pass(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    first = make_client(guard=_SETTINGS)
    await first.set_event_details("visit", 10, False)
    on_its_way = asyncio.Event()
    send_once = first.guard._send_once

    async def never_answered(*args: Any) -> Any:
        on_its_way.set()
        await asyncio.Event().wait()
        return await send_once(*args)

    first.guard._send_once = never_answered  # type: ignore[method-assign]
    call = asyncio.create_task(first.claim_tokens("visit", "cust", idempotency_key="job-1"))
    await on_its_way.wait()
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    reconciler = make_client(guard=_SETTINGS)
    summary = await reconciler.reconcile(older_than=0)
    assert summary.counts.get("busy") == 1 and sandbox.applied_writes("/claim-tokens") == []
    entry = await reconciler.ledger.get("job-1")
    assert entry is not None and entry.state == sa.EntryState.SENDING  # not judged yet


async def test_a_process_killed_while_its_write_is_on_its_way_frees_the_customer_not_the_write(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    # Its lease ends with it (SQLite sees its pid gone; PostgreSQL's lock dies with its
    # connection), minutes early; the request it sent lands a second later, and the job,
    # redelivered at once, must wait for that before judging it.
    # The child's settings (timeout 2 s, verify_delay 0), waiting far less than its lease.
    client = make_client(guard=sa.GuardSettings(verify_delay=0.0, lease_wait=10.0))
    await client.upgrade_to_shakesco("cust", 100)
    rule = sandbox.faults.add("commit_late", endpoint="/redeem-tokens", count=1, delay=1.0)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.guard._worker",
        "redeem",
        sandbox.base_url,
        sandbox.api_key,
        *ledger_spec.argv(),
        "cust",
        "job-1",
        cwd=ROOT,
    )
    for _ in range(3000):
        if rule.held:  # read whole: it lands, whatever becomes of its sender
            break
        await asyncio.sleep(0.01)
    assert rule.held == 1, "the child's request never reached the sandbox"
    os.kill(child.pid, signal.SIGKILL)
    await child.wait()
    again = await client.redeem_tokens("cust", 10, idempotency_key="job-1")
    assert again.replayed and again.verified  # judged once the child's request had landed
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    assert await client.balance("cust") == 90
