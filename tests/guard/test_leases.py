"""A write never leaves on a lease its process no longer holds, and no failed call keeps one."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import asyncpg
import pytest

import shakesco_async as sa
from shakesco_async.ledger import EntryState, KeySource
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._crash import die_at
from tests.support.ledgers import LedgerSpec, sqlite_execute
from tests.support.pg_session import lease_session

_SHORT = sa.GuardSettings(verify_delay=0.0, lease_ttl=5.0, lease_wait=0.3)


async def _postgres_client(make_client: ClientFactory, ledger_spec: LedgerSpec) -> Any:
    """A client on the PostgreSQL ledger whose lease session is open (it made one write)."""
    if ledger_spec.backend != "postgres":
        pytest.skip("PostgreSQL's leases are advisory locks held by a session")
    client = make_client(guard=_SHORT)
    await client.set_event_details("visit", 1, False)
    await client.claim_tokens("visit", "c-1")
    return client


async def test_a_retry_is_not_sent_once_another_process_took_the_lease(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    if ledger_spec.backend != "sqlite":
        pytest.skip("only SQLite leases lapse; PostgreSQL's end with their connection")
    client = make_client(guard=sa.GuardSettings(verify_delay=0.0))
    await client.set_event_details("signup", 50, True)
    send_once = client.guard._send_once
    sent = 0

    async def lose_the_lease_and_the_answer(*args: Any) -> Any:
        nonlocal sent
        sent += 1
        if sent > 1:
            return await send_once(*args)
        # As if this process stalled past its lease and another one took the customer
        # (the request itself never reached the API; verification proves that).
        sqlite_execute(
            ledger_spec.location,
            "UPDATE leases SET owner = 'another-process', expires_at = ? WHERE customer = 'lapsed'",
            (time.time() + 60,),
        )
        raise sa.TransportError("connection reset", sent=None)

    client.guard._send_once = lose_the_lease_and_the_answer  # type: ignore[method-assign]
    # The first attempt was verified not applied, but could still be carried out late: the
    # write is pending, not failed.
    with pytest.raises(sa.OutcomeUnknown, match="no other can be sent") as info:
        await client.claim_tokens("signup", "lapsed", idempotency_key="lost-lease")
    assert isinstance(info.value.__cause__, sa.LeaseLost)
    assert sent == 1 and sandbox.applied_writes("/claim-tokens") == []
    entry = await client.ledger.get("lost-lease")
    assert entry is not None and not entry.is_final  # the lease holder's, or reconcile's, to settle


async def test_reconcile_leaves_an_entry_whose_lease_it_lost_for_the_next_pass(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client()
    await die_at(client, "recorded", "unsent", "c-unsent", KeySource.CALLER)  # provably not applied
    await asyncio.sleep(0.06)  # the dead process's lease lapses
    mark_sending = client.ledger.mark_sending

    async def lost(*args: Any, **kwargs: Any) -> None:
        raise sa.LeaseLost("the lease on customers c-unsent lapsed and another process took one; nothing was sent")

    monkeypatch.setattr(client.ledger, "mark_sending", lost)
    summary = await client.reconcile(older_than=0)
    assert summary.counts["busy"] == 1 and summary.counts["resent"] == 0
    assert sandbox.applied_writes("/upgrade-to-shakesco") == []
    monkeypatch.setattr(client.ledger, "mark_sending", mark_sending)
    again = await client.reconcile(older_than=0)
    assert again.counts["resent"] == 1
    assert len(sandbox.applied_writes(idempotency_key="unsent")) == 1


def _lease_left(spec: LedgerSpec, customer: str) -> float:
    db = sqlite3.connect(spec.location)
    try:
        (until,) = db.execute("SELECT expires_at FROM leases WHERE customer = ?", (customer,)).fetchone()
    finally:
        db.close()
    return float(until) - time.time()


@pytest.mark.parametrize("delayed_by", ["settling an earlier doubt", "a stalled loop"])
async def test_a_lease_used_up_before_the_send_is_renewed_first(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec, delayed_by: str
) -> None:
    # The intent's commit took the lease; if the request left on what is left of it after
    # a long wait, the lease could lapse while it is in flight.
    if ledger_spec.backend != "sqlite":
        pytest.skip("only SQLite leases lapse; PostgreSQL's end with their connection")
    client = make_client(timeout=3.0, guard=sa.GuardSettings(verify_delay=0.0, lease_ttl=5.0))  # 2 s of slack
    await client.set_event_details("signup", 50, True)
    if delayed_by == "settling an earlier doubt":
        await client.upgrade_to_shakesco("slow", 100)
        sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
        sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
        with pytest.raises(sa.OutcomeUnknown):
            await client.redeem_tokens("slow", 10, idempotency_key="earlier")
        sandbox.faults.clear()
        sandbox.faults.add("delay", endpoint="/total-spent", delay=2.5, count=1)
    else:
        resolve_others = client.guard._resolve_others

        async def stalled(*args: Any) -> None:
            await asyncio.sleep(2.5)
            await resolve_others(*args)

        client.guard._resolve_others = stalled  # type: ignore[method-assign]
    left: list[float] = []
    send_once = client.guard._send_once

    async def send_and_look(*args: Any) -> Any:
        left.append(_lease_left(ledger_spec, "slow"))
        return await send_once(*args)

    client.guard._send_once = send_and_look  # type: ignore[method-assign]
    await client.claim_tokens("signup", "slow", idempotency_key="later")
    assert len(left) == 1 and left[0] > 4.0  # ~5 s, not the ~2.5 s the wait left of it
    assert len(sandbox.applied_writes("/claim-tokens")) == 1
    if delayed_by == "settling an earlier doubt":
        earlier = await client.ledger.get("earlier")
        assert earlier is not None and earlier.state == EntryState.COMMITTED


async def test_a_lease_with_its_slack_intact_is_not_renewed(make_client: ClientFactory) -> None:
    client = make_client(timeout=3.0, guard=sa.GuardSettings(verify_delay=0.0, lease_ttl=5.0))
    await client.set_event_details("signup", 50, True)
    await client.claim_tokens("signup", "quick", idempotency_key="quick")
    entry = await client.ledger.get("quick")
    assert entry is not None and entry.attempts == 1  # one commit before the send, not two


async def test_postgres_leases_taken_by_a_statement_whose_answer_is_lost_are_given_back(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    client = await _postgres_client(make_client, ledger_spec)
    await client.upgrade_to_shakesco("c-from", 10)

    async def lose_the_answer(sql: str) -> None:  # the server took both locks
        if "pg_try_advisory_lock" in sql:
            raise ConnectionResetError("connection reset by peer")

    ledger: Any = client.ledger
    with lease_session(ledger, after=lose_the_answer), pytest.raises(sa.LedgerError, match="ConnectionReset"):
        await client.transfer_tokens("c-from", "c-to", 1)
    assert ledger._leases.holders == {}
    assert sandbox.applied_writes("/transfer-tokens") == []
    other = make_client(guard=_SHORT)  # another host, its own session: neither customer is held
    await other.transfer_tokens("c-from", "c-to", 1)
    await client.transfer_tokens("c-from", "c-to", 1)  # this process goes on, on a new session
    assert await client.balance("c-to") == 2


async def test_a_postgres_lease_session_the_server_ended_is_replaced_once_its_leases_are_back(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    # asyncpg detaches a pooled connection that ended: asking it whether it is closed then
    # raised, so a process whose lease session was cut (a restart of the server, a proxy's
    # idle timeout) failed every write from then on.
    client = await _postgres_client(make_client, ledger_spec)
    ledger: Any = client.ledger
    pid, mark = ledger._leases.session.get_server_pid(), ledger._leases._mark
    admin = await asyncpg.connect(ledger_spec.location)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    for _ in range(100):  # until the client reads the end of its connection
        if not ledger._leases.alive:
            break
        await asyncio.sleep(0.01)
    assert not ledger._leases.alive
    await client.claim_tokens("visit", "c-1")
    await client.claim_tokens("visit", "c-2")
    assert ledger._leases.alive and ledger._leases.session.get_server_pid() != pid
    assert ledger._leases._mark != mark  # each session its own (forked children's too)
    assert len(sandbox.applied_writes("/claim-tokens")) == 3


async def test_postgres_leases_of_concurrent_writes_are_taken_together(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    if ledger_spec.backend != "postgres":
        pytest.skip("PostgreSQL's leases are advisory locks held by a session")
    client = make_client()
    await client.set_event_details("signup", 1, True)
    await client.claim_tokens("signup", "c-first")  # the lease session is open
    taking = 0

    async def count(sql: str) -> None:
        nonlocal taking
        taking += "pg_try_advisory_lock" in sql

    with lease_session(client.ledger, count):
        await asyncio.gather(*(client.claim_tokens("signup", f"c-{i}") for i in range(40)))
    assert len(sandbox.applied_writes("/claim-tokens")) == 41
    # The 40 writes ask for their leases at once: that was 40 round trips, one at a time.
    # (Their unlocks come as their answers do, so how many statements those share varies.)
    assert taking <= 8, taking
    assert client.ledger._leases.holders == {}  # type: ignore[attr-defined]


async def test_a_lease_session_lost_mid_statement_says_why_and_the_process_goes_on(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    client = await _postgres_client(make_client, ledger_spec)
    ledger: Any = client.ledger
    real = ledger._leases.session

    async def lost(sql: str) -> None:  # the connection dies as the answer comes back
        if "pg_try_advisory_lock" in sql:
            real.terminate()  # asyncpg then detaches it from its pool proxy
            raise ConnectionResetError("connection reset by peer")

    with lease_session(ledger, after=lost), pytest.raises(sa.LedgerError) as caught:
        await client.claim_tokens("visit", "c-2")
    # The connection's own error, not asyncpg's complaint about a detached connection.
    assert "ConnectionResetError" in str(caught.value), caught.value
    assert len(sandbox.applied_writes("/claim-tokens")) == 1
    await client.claim_tokens("visit", "c-2")  # on a new session
    assert len(sandbox.applied_writes("/claim-tokens")) == 2
