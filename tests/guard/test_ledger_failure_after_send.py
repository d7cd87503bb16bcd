"""Once a request may have left, a ledger failure never hides what the API did.

A caller told `LedgerError` ("nothing was sent") for a write the API applied may send it
again under a new key: a double credit. So the API's answer (or the verdict of the reads)
is what the caller gets; the ledger's failure is logged, and the entry, still open with its
snapshot, is verified by the customer's next write or by reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import pytest

import shakesco_async as sa
from shakesco_async.ledger import EntryState
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._crash import long_ago
from tests.support.ledgers import LedgerSpec


@pytest.fixture
def broken_records(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``arm(client)`` breaks the client's ledger records of outcomes (``releases=True``: and
    its lease releases too); ``undo()`` mends them."""
    failing: dict[str, Any] = {}

    def arm(client: sa.ShakescoClient, *, releases: bool = False) -> None:
        ledger = client.ledger
        settle, release = ledger.settle, ledger.release

        async def broken_settle(*args: Any, **kwargs: Any) -> bool:
            raise sa.LedgerError("ledger write failed: disk I/O error")

        async def broken_release(*args: Any, **kwargs: Any) -> None:
            raise sa.LedgerError("ledger write failed: disk I/O error")

        monkeypatch.setattr(ledger, "settle", broken_settle)
        if releases:
            monkeypatch.setattr(ledger, "release", broken_release)
        failing["undo"] = lambda: (setattr(ledger, "settle", settle), setattr(ledger, "release", release))

    failing["arm"] = arm
    return failing


async def _open_then_reconciled(client: sa.ShakescoClient, key: str, undo: Any) -> sa.ReconcileSummary:
    entry = await client.ledger.get(key)
    assert entry is not None and entry.state == EntryState.SENDING  # still open, with its snapshot
    assert entry.snapshot is not None
    undo()
    await long_ago(client.ledger, key)  # reconcile runs after the request could still be on its way
    return await client.reconcile(older_than=0)


async def test_an_applied_write_returns_its_receipt_when_the_record_fails(
    make_client: ClientFactory, sandbox: Sandbox, broken_records: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    await client.upgrade_to_shakesco("lf1", 100)
    broken_records["arm"](client)
    with caplog.at_level(logging.ERROR, logger="shakesco_async.guard"):
        receipt = await client.redeem_tokens("lf1", 10, idempotency_key="lf-applied")
    assert receipt.tx_hash is not None and not receipt.verified
    assert "could not be recorded" in caplog.text and "lf-applied" in caplog.text
    summary = await _open_then_reconciled(client, "lf-applied", broken_records["undo"])
    assert summary.counts["committed"] == 1  # verified applied, not sent again
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    assert await client.balance("lf1") == 90


@pytest.mark.parametrize("reads_work", [True, False], ids=["verified-applied", "in-doubt"])
async def test_a_lost_answer_is_reported_as_the_reads_judge_it_when_the_record_fails(
    make_client: ClientFactory, sandbox: Sandbox, broken_records: dict[str, Any], reads_work: bool
) -> None:
    client = make_client(timeout=0.5)
    await client.upgrade_to_shakesco("lf2", 100)
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    if not reads_work:
        sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
    broken_records["arm"](client)
    if reads_work:
        receipt = await client.redeem_tokens("lf2", 10, idempotency_key="lf-lost")
        assert receipt.verified
    else:
        with pytest.raises(sa.OutcomeUnknown) as caught:  # a doubt, not "nothing was sent"
            await client.redeem_tokens("lf2", 10, idempotency_key="lf-lost")
        sandbox.faults.clear()  # the reads work again
        assert caught.value.idempotency_key == "lf-lost"
    summary = await _open_then_reconciled(client, "lf-lost", broken_records["undo"])
    assert summary.counts["committed"] == 1
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1


async def test_a_refusal_is_reported_as_the_refusal_when_the_record_fails(
    make_client: ClientFactory, sandbox: Sandbox, broken_records: dict[str, Any]
) -> None:
    client = make_client()
    await client.set_event_details("signup", 5, True)
    await client.claim_tokens("signup", "lf4")
    broken_records["arm"](client, releases=True)  # a release that fails hides nothing either
    with pytest.raises(sa.EventAlreadyClaimed):
        await client.claim_tokens("signup", "lf4", idempotency_key="lf-refused")
    assert len(sandbox.applied_writes("/claim-tokens")) == 1


async def test_a_queued_outcome_that_fails_to_commit_is_logged_and_verified_later(
    make_client: ClientFactory,
    sandbox: Sandbox,
    ledger_spec: LedgerSpec,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # SQLite returns a 200's receipt once its record is queued; the commit failing later
    # must leave the entry open (verified as applied), never lose or repeat the write.
    if ledger_spec.backend != "sqlite":
        pytest.skip("PostgreSQL waits for every outcome record")
    from shakesco_async.ledger import _sqlite_batch

    client = make_client(timeout=0.5, guard=sa.GuardSettings(verify_delay=0.0, lease_ttl=1.0))
    await client.upgrade_to_shakesco("lf6", 100)
    await client.ledger.counts()  # a read waits for what was queued before it: the set-up is on disk

    def failing(*_: Any, **__: Any) -> list[bool]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(_sqlite_batch, "settle_many", failing)
    with caplog.at_level(logging.ERROR, logger="shakesco_async.ledger"):
        receipt = await client.redeem_tokens("lf6", 10, idempotency_key="lf-queued")
        await client.ledger.get("lf-queued")  # ordered after the queued record
    assert receipt.tx_hash is not None
    assert "lf-queued" in caplog.text and "failed to commit" in caplog.text
    monkeypatch.undo()
    await asyncio.sleep(1.1)  # its lease, whose release failed with the record, lapses
    summary = await _open_then_reconciled(client, "lf-queued", lambda: None)
    assert summary.counts["committed"] == 1
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    assert await client.balance("lf6") == 90
