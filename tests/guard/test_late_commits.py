"""Writes the API carries out after the client gave up on them (``commit_late``).

Verified not applied a moment after the timeout, such a write lands while the guard waits
to send it again. The read the guard takes before that second attempt sees it, as does
the check of a second attempt the API refuses: applied once, recorded as applied.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import shakesco_async as sa
from shakesco_async.guard import VERIFIERS, _wrapper
from shakesco_async.ledger import EntryState
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._kinds import VERIFIABLE, Kind

# Writes whose second application would do harm (the others are sent again by design).
ONCE_ONLY = [k for k in VERIFIABLE if not VERIFIERS[k.endpoint].repeatable]
TIMEOUT = 0.3
LANDS = 0.65  # after the timeout and its verification read, well before the second attempt
BACKOFF = 1.0


@pytest.fixture
def slow_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed wait before each second attempt, so a late commit lands inside it."""

    def fixed(attempt: int, *, retry_after: float | None = None, base: float = 0.0) -> float:
        return BACKOFF

    monkeypatch.setattr(_wrapper, "backoff_delay", fixed)


async def _landed(sandbox: Sandbox, endpoint: str, count: int) -> None:
    for _ in range(200):
        if len(sandbox.applied_writes(endpoint)) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the late commit on {endpoint} never landed")


@pytest.mark.usefixtures("slow_backoff")
@pytest.mark.parametrize("kind", ONCE_ONLY, ids=lambda k: k.name)
async def test_a_write_landing_after_its_verification_is_applied_once(
    make_client: ClientFactory, sandbox: Sandbox, kind: Kind
) -> None:
    client = make_client(timeout=TIMEOUT)
    await kind.setup(client, sandbox)
    before = len(sandbox.applied_writes(kind.endpoint))
    rule = sandbox.faults.add("commit_late", endpoint=kind.endpoint, count=1, delay=LANDS)
    result: Any = await kind.call(client, "late")
    assert rule.fired == 1
    assert len(sandbox.applied_writes(kind.endpoint)) == before + 1
    assert (result.verified, result.tx_hash, result.replayed) == (True, None, False)
    entry = await client.ledger.get("late")
    assert entry is not None
    assert entry.state == EntryState.COMMITTED
    # A one-time claim needs no read before it is sent again: its second attempt is
    # refused ("Event already claimed"), and that refusal is checked, not recorded.
    assert entry.attempts == (2 if kind.name == "claim_one_time" else 1)
    await kind.check(client, sandbox)
    again: Any = await kind.call(client, "late")
    assert again.replayed
    assert len(sandbox.applied_writes(kind.endpoint)) == before + 1


@pytest.mark.usefixtures("slow_backoff")
async def test_a_refused_second_attempt_that_cannot_be_checked_is_in_doubt(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client(timeout=TIMEOUT)
    await client.set_event_details("signup", 50, True)
    sandbox.faults.add("commit_late", endpoint="/claim-tokens", count=1, delay=LANDS)

    async def reads_fail_once_landed() -> None:
        await _landed(sandbox, "/claim-tokens", 1)
        sandbox.faults.add("error", on="read", status=503)

    breaker = asyncio.create_task(reads_fail_once_landed())
    with pytest.raises(sa.OutcomeUnknown, match="Event already claimed"):
        await client.claim_tokens("signup", "c1", idempotency_key="refused")
    await breaker
    entry = await client.ledger.get("refused")
    assert entry is not None and entry.state == EntryState.IN_DOUBT  # not "failed": it was applied
    sandbox.faults.clear()
    report = await client.reconcile(older_than=0)
    assert (report.examined, report.counts.get("committed")) == (1, 1)
    entry = await client.ledger.get("refused")
    assert entry is not None and entry.state == EntryState.COMMITTED
    assert len(sandbox.applied_writes("/claim-tokens")) == 1
    assert await client.balance("c1") == 50


@pytest.mark.usefixtures("slow_backoff")
async def test_state_moved_by_more_than_the_write_is_not_sent_again(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    # While the guard waits to send again, its late request lands and someone outside the
    # SDK redeems too: the read before the second attempt cannot be explained by this
    # write, so it is neither sent again nor taken as applied.
    client = make_client(timeout=TIMEOUT)
    await client.upgrade_to_shakesco("c1", 100)
    sandbox.faults.add("commit_late", endpoint="/redeem-tokens", count=1, delay=LANDS)

    async def outsider() -> None:
        await _landed(sandbox, "/redeem-tokens", 1)
        sandbox.business().redeem_tokens(customer_ref="c1", amount=5)

    other = asyncio.create_task(outsider())
    with pytest.raises(sa.OutcomeUnknown, match="total_spent moved by 15"):
        await client.redeem_tokens("c1", 10, idempotency_key="crowded")
    await other
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    assert await client.balance("c1") == 85
    entry = await client.ledger.get("crowded")
    assert entry is not None and entry.state == EntryState.IN_DOUBT
