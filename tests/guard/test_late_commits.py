"""Writes the API carries out after the client gave up on them (``commit_late``).

The sandbox holds the first attempt until the guard has verified it not applied and is
waiting to send it again; then it lands. The read the guard takes before the second
attempt sees it, as does the check of a second attempt the API refuses: applied once,
recorded as applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
BACKOFF = 0.3  # the late commit lands at its start: the next loop turn


@pytest.fixture
def lands_in_the_backoff(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox
) -> Callable[[str], list[Callable[[], None]]]:
    """Hold ``endpoint``'s next write; release it when the guard, having verified it not
    applied, backs off before sending again. Returns the list of more things to do then."""

    def hold(endpoint: str) -> list[Callable[[], None]]:
        release = asyncio.Event()
        then: list[Callable[[], None]] = []
        sandbox.faults.add("commit_late", endpoint=endpoint, count=1, release=release)

        def backoff(attempt: int, *, retry_after: float | None = None, base: float = 0.0) -> float:
            release.set()
            for action in then:
                action()
            return BACKOFF

        monkeypatch.setattr(_wrapper, "backoff_delay", backoff)
        return then

    return hold


@pytest.mark.parametrize("kind", ONCE_ONLY, ids=lambda k: k.name)
async def test_a_write_landing_after_its_verification_is_applied_once(
    make_client: ClientFactory,
    sandbox: Sandbox,
    lands_in_the_backoff: Callable[[str], list[Callable[[], None]]],
    kind: Kind,
) -> None:
    client = make_client(timeout=TIMEOUT)
    await kind.setup(client, sandbox)
    before = len(sandbox.applied_writes(kind.endpoint))
    lands_in_the_backoff(kind.endpoint)
    result: Any = await kind.call(client, "late")
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


async def test_a_refused_second_attempt_that_cannot_be_checked_is_in_doubt(
    make_client: ClientFactory, sandbox: Sandbox, lands_in_the_backoff: Callable[[str], list[Callable[[], None]]]
) -> None:
    client = make_client(timeout=TIMEOUT)
    await client.set_event_details("signup", 50, True)
    # From the moment it lands, every read fails (the one-time claim's second attempt
    # needs none before it leaves).
    lands_in_the_backoff("/claim-tokens").append(lambda: sandbox.faults.add("error", on="read", status=503))
    with pytest.raises(sa.OutcomeUnknown, match="Event already claimed"):
        await client.claim_tokens("signup", "c1", idempotency_key="refused")
    entry = await client.ledger.get("refused")
    assert entry is not None and entry.state == EntryState.IN_DOUBT  # not "failed": it was applied
    sandbox.faults.clear()
    report = await client.reconcile(older_than=0)
    assert (report.examined, report.counts.get("committed")) == (1, 1)
    entry = await client.ledger.get("refused")
    assert entry is not None and entry.state == EntryState.COMMITTED
    assert len(sandbox.applied_writes("/claim-tokens")) == 1
    assert await client.balance("c1") == 50


async def test_state_moved_by_more_than_the_write_is_not_sent_again(
    make_client: ClientFactory, sandbox: Sandbox, lands_in_the_backoff: Callable[[str], list[Callable[[], None]]]
) -> None:
    # While the guard waits to send again, its late request lands and someone outside the
    # SDK redeems too: the read before the second attempt cannot be explained by this
    # write, so it is neither sent again nor taken as applied.
    client = make_client(timeout=TIMEOUT)
    await client.upgrade_to_shakesco("c1", 100)
    lands_in_the_backoff("/redeem-tokens").append(lambda: sandbox.business().redeem_tokens("c1", 5))
    with pytest.raises(sa.OutcomeUnknown, match="total_spent moved by 15"):
        await client.redeem_tokens("c1", 10, idempotency_key="crowded")
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    assert await client.balance("c1") == 85
    entry = await client.ledger.get("crowded")
    assert entry is not None and entry.state == EntryState.IN_DOUBT


QUICK = [(k, 502) for k in ONCE_ONLY] + [(k, 504) for k in ONCE_ONLY if k.name == "redeem"]


@pytest.mark.parametrize(("kind", "status"), QUICK, ids=lambda v: v.name if isinstance(v, Kind) else str(v))
async def test_a_quick_failure_is_judged_once_its_request_can_no_longer_land(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, kind: Kind, status: int
) -> None:
    # A gateway answers at once and the API carries the request out a moment later, within
    # the client's timeout: read back at once, it looks not applied. Sent again then, it
    # would be applied twice.
    client = make_client(timeout=TIMEOUT)
    await kind.setup(client, sandbox)
    before = len(sandbox.applied_writes(kind.endpoint))
    monkeypatch.setattr(_wrapper, "backoff_delay", lambda *args, **kwargs: 0.0)
    sandbox.faults.add("fail_then_commit", endpoint=kind.endpoint, count=1, delay=TIMEOUT / 2, status=status)
    result: Any = await kind.call(client, "quick")
    await asyncio.sleep(TIMEOUT / 2)  # past the moment the first attempt lands, had the call not waited
    assert len(sandbox.applied_writes(kind.endpoint)) == before + 1
    assert (result.verified, result.tx_hash) == (True, None)
    entry = await client.ledger.get("quick")
    assert entry is not None
    assert (entry.state, entry.attempts) == (EntryState.COMMITTED, 1)
    await kind.check(client, sandbox)


async def test_reads_failing_after_a_quick_failure_leave_it_open_until_it_can_no_longer_land(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    # The read right after the 502 fails: in doubt then would hand the entry to the next
    # write or reconcile while the API may still carry it out. It is judged again once
    # it can no longer land, and then the reads tell.
    client = make_client(timeout=TIMEOUT)
    await client.upgrade_to_shakesco("c1", 100)
    sandbox.faults.add("fail_then_commit", endpoint="/redeem-tokens", count=1, delay=TIMEOUT / 2)
    unread = sandbox.faults.add("error", endpoint="/total-spent", on="read", status=500, after=1, count=1)
    receipt = await client.redeem_tokens("c1", 10, idempotency_key="unread")
    assert unread.fired == 1
    assert (receipt.verified, receipt.tx_hash) == (True, None)
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    entry = await client.ledger.get("unread")
    assert entry is not None and entry.state == EntryState.COMMITTED
