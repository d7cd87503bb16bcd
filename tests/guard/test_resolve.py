"""A person resolves what no read could decide, with an audit trail, on both ledgers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import shakesco_async as sa
from shakesco_async.ledger import EntryState, KeySource, Settlement
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._crash import die_at
from tests.support.cli import run_cli
from tests.support.ledgers import LedgerSpec


async def _in_doubt(make_client: ClientFactory, sandbox: Sandbox, key: str, ref: str) -> sa.ShakescoClient:
    """A redeem whose answer was lost and whose reads failed: left in doubt."""
    client = make_client(timeout=0.3)
    await client.upgrade_to_shakesco(ref, 50, idempotency_key=f"fund-{ref}")
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
    with pytest.raises(sa.OutcomeUnknown):
        await client.redeem_tokens(ref, 5, idempotency_key=key)
    sandbox.faults.clear()
    entry = await client.ledger.get(key)
    assert entry is not None and entry.state == EntryState.IN_DOUBT
    return client


async def test_resolved_applied_answers_replays_with_the_persons_tx_hash(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = await _in_doubt(make_client, sandbox, "r1", "ann")
    entry = await client.ledger.resolve("r1", applied=True, tx_hash="0xfeed", note="seen in the dashboard", by="ops")
    assert entry.state == EntryState.COMMITTED
    assert entry.reason is not None and entry.reason.startswith("resolved by hand by ops at ")
    assert entry.reason.endswith(": applied (tx 0xfeed): seen in the dashboard")
    receipt = await client.redeem_tokens("ann", 5, idempotency_key="r1")
    assert (receipt.tx_hash, receipt.replayed) == ("0xfeed", True)
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1  # nothing sent


async def test_resolved_not_applied_is_sent_once_by_the_callers_retry_and_never_by_reconcile(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = await _in_doubt(make_client, sandbox, "r2", "bob")
    sandbox.applied.clear()  # say the person found the API never applied it
    entry = await client.ledger.resolve("r2", applied=False, note="support says it failed")
    assert entry.state == EntryState.ABANDONED and "not applied: support says it failed" in str(entry.reason)
    summary = await client.reconcile(older_than=0)
    assert summary.examined == 0 and sandbox.applied_writes("/redeem-tokens") == []
    for _ in range(2):  # the caller's retry sends it once; the next one replays
        receipt = await client.redeem_tokens("bob", 5, idempotency_key="r2")
    assert receipt.replayed and len(sandbox.applied_writes("/redeem-tokens")) == 1


async def test_what_may_not_be_resolved(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    await client.upgrade_to_shakesco("cy", 10, idempotency_key="done")
    with pytest.raises(sa.LedgerError, match="committed: the API's own answer"):
        await client.ledger.resolve("done", applied=False, note="x")
    with pytest.raises(sa.LedgerError, match="no entry"):
        await client.ledger.resolve("nope", applied=True, note="x")
    with pytest.raises(sa.ValidationError):
        await client.ledger.resolve("done", applied=False, tx_hash="0x1", note="x")
    with pytest.raises(sa.ValidationError):
        await client.ledger.resolve("done", applied=True, note="  ")
    # A request that may still be on its way: not yet.
    await die_at(client, "sending_unsent", "flying", "dee", KeySource.CALLER)
    await asyncio.sleep(0.06)  # the dead process's SQLite lease lapses
    ledger = client.ledger
    await ledger.settle("flying", Settlement(EntryState.SENDING, reason="marked again"))  # as if just marked
    with pytest.raises(sa.LedgerError, match="may still be on its way"):
        await ledger.resolve("flying", applied=False, note="x")
    # Customers a writer holds: not now.
    await die_at(client, "recorded", "held", "eve", KeySource.CALLER)
    await asyncio.sleep(0.06)
    assert await ledger.acquire(["eve"], owner="writer", lease_ttl=30) is None
    with pytest.raises(sa.LedgerError, match="is writing customers eve now"):
        await ledger.resolve("held", applied=False, note="x")
    await ledger.release(["eve"], owner="writer")
    assert (await ledger.resolve("held", applied=False, note="x")).state == EntryState.ABANDONED


async def test_the_command_line_resolves_and_shows_who_when_why(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec, tmp_path: Path
) -> None:
    client = await _in_doubt(make_client, sandbox, "r3", "fay")
    if ledger_spec.backend != "sqlite":
        pytest.skip("the command line opens a PostgreSQL ledger in its default schema, not the test's own")
    target = ledger_spec.location
    env = {"SHAKESCO_LEDGER_SCOPE": client.ledger.business}
    code, out, err = await run_cli(
        "ledger", "resolve", "r3", "--applied", "--tx-hash", "0xabc", "--note", "in the dashboard", "--by", "ana",
        "--ledger", target, env=env,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("r3: committed (resolved by hand by ana at ")
    code, out, _ = await run_cli("ledger", "show", "r3", "--ledger", target, env=env)
    assert "resolved by hand by ana" in out and "0xabc" in out
    code, _, err = await run_cli("ledger", "resolve", "r3", "--not-applied", "--note", "x", "--ledger", target, env=env)
    assert code == 2 and "committed: the API's own answer" in err
