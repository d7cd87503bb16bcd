"""A write never leaves on a lease its process no longer holds."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import pytest

import shakesco_async as sa
from shakesco_async.ledger import KeySource
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._crash import die_at
from tests.support.ledgers import LedgerSpec


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
        db = sqlite3.connect(ledger_spec.location)
        try:
            with db:
                db.execute(
                    "UPDATE leases SET owner = 'another-process', expires_at = ? WHERE customer = 'lapsed'",
                    (time.time() + 60,),
                )
        finally:
            db.close()
        raise sa.TransportError("connection reset", sent=None)

    client.guard._send_once = lose_the_lease_and_the_answer  # type: ignore[method-assign]
    with pytest.raises(sa.LeaseLost, match="nothing was sent"):
        await client.claim_tokens("signup", "lapsed", idempotency_key="lost-lease")
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
