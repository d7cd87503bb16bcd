"""Reconcile settles what crashes and lost answers left, and never applies anything twice."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import attrs
import pytest

import shakesco_async as sa
from shakesco_async import _reconcile as reconcile_module
from shakesco_async.guard import _wrapper as wrapper_module
from shakesco_async.ledger import EntryState, KeySource, Settlement
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._crash import POINTS, die_at, long_ago

# (crash point, who chose the key) -> (reconcile outcome, final state, times applied)
EXPECTED = {
    ("recorded", KeySource.CALLER): ("resent", EntryState.COMMITTED, 1),
    ("sending_unsent", KeySource.CALLER): ("resent", EntryState.COMMITTED, 1),
    ("sending_applied", KeySource.CALLER): ("committed", EntryState.COMMITTED, 1),
    ("recorded", KeySource.GENERATED): ("abandoned", EntryState.ABANDONED, 0),
    ("sending_unsent", KeySource.GENERATED): ("abandoned", EntryState.ABANDONED, 0),
    ("sending_applied", KeySource.GENERATED): ("committed", EntryState.COMMITTED, 1),
}


@pytest.mark.parametrize("source", list(KeySource))
@pytest.mark.parametrize("point", POINTS)
async def test_each_crash_point(make_client: ClientFactory, sandbox: Sandbox, point: str, source: KeySource) -> None:
    client = make_client()
    await die_at(client, point, "k1", "cust", source)
    await asyncio.sleep(0.06)  # the dead process's lease runs out
    summary = await client.reconcile(older_than=0)
    outcome, state, applied = EXPECTED[(point, source)]
    assert summary.counts[outcome] == 1
    assert summary.examined == 1 and summary.clean
    entry = await client.ledger.get("k1")
    assert entry is not None and entry.state == state
    assert len(sandbox.applied_writes(idempotency_key="k1")) == applied
    assert await client.balance("cust") == 10 * applied
    again = await client.reconcile(older_than=0)  # nothing left to do
    assert again.examined == (1 if state == EntryState.RECORDED else 0)
    assert len(sandbox.applied_writes(idempotency_key="k1")) == applied
    if state == EntryState.ABANDONED:  # not applied, not sent: the same key sends it, once
        receipt = await client.upgrade_to_shakesco("cust", 10, idempotency_key="k1")
        assert receipt.tx_hash is not None and not receipt.replayed
        await client.upgrade_to_shakesco("cust", 10, idempotency_key="k1")
        assert len(sandbox.applied_writes(idempotency_key="k1")) == 1


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [
        ("drop_after_commit", "committed"),
        ("fail_after_commit", "committed"),
        ("garbage", "committed"),
        ("delay", "committed"),
        ("fail_before_commit", "resent"),
        ("reset", "resent"),
    ],
)
async def test_in_doubt_from_each_fault_is_settled(
    make_client: ClientFactory, sandbox: Sandbox, mode: str, outcome: str
) -> None:
    client = make_client(timeout=0.4)
    await client.upgrade_to_shakesco("p", 100)
    sandbox.faults.add(mode, endpoint="/redeem-tokens", count=1, delay=0.8)
    sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
    with pytest.raises(sa.OutcomeUnknown):
        await client.redeem_tokens("p", 10, idempotency_key="doubt")
    sandbox.faults.clear()  # the reads work again
    dry = await client.reconcile(older_than=0, dry_run=True)
    assert dry.counts[outcome] == 1
    entry = await client.ledger.get("doubt")
    assert entry is not None and entry.state == EntryState.IN_DOUBT  # dry run changed nothing
    summary = await client.reconcile(older_than=0)
    assert summary.counts[outcome] == 1 and summary.clean
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
    assert await client.balance("p") == 90


async def test_unreadable_stays_in_doubt_and_is_reported(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client(timeout=0.5)
    await client.upgrade_to_shakesco("q", 100)
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
    with pytest.raises(sa.OutcomeUnknown):
        await client.redeem_tokens("q", 10, idempotency_key="stuck")
    summary = await client.reconcile(older_than=0)
    assert not summary.clean
    assert [key for key, _ in summary.in_doubt] == ["stuck"]
    assert "503" in summary.in_doubt[0][1]
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1


async def test_dry_run_changes_nothing(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    for i, point in enumerate(POINTS):
        await die_at(client, point, f"d{i}", f"cust{i}", KeySource.CALLER)
    await asyncio.sleep(0.06)
    before = await client.ledger.entries()
    applied = len(sandbox.applied)
    summary = await client.reconcile(older_than=0, dry_run=True)
    assert summary.dry_run and summary.examined == 3
    assert summary.counts["resent"] == 2 and summary.counts["committed"] == 1
    assert await client.ledger.entries() == before
    assert len(sandbox.applied) == applied


async def test_older_than_leaves_fresh_entries(make_client: ClientFactory) -> None:
    client = make_client()
    await die_at(client, "recorded", "fresh", "f", KeySource.CALLER)
    assert (await client.reconcile(older_than=60)).examined == 0


async def test_two_reconcilers_never_both_resend(make_client: ClientFactory, sandbox: Sandbox) -> None:
    first, second = make_client(), make_client()  # two processes sharing one ledger file
    for i in range(20):
        await die_at(first, "recorded" if i % 2 else "sending_unsent", f"r{i}", f"c{i}", KeySource.CALLER)
    await asyncio.sleep(0.06)
    a, b = await asyncio.gather(first.reconcile(older_than=0), second.reconcile(older_than=0))
    # Each pass claimed its own entries (FOR UPDATE SKIP LOCKED on PostgreSQL): the work was split.
    assert a.examined + b.examined == 20
    assert a.counts["resent"] + b.counts["resent"] == 20
    for i in range(20):
        assert len(sandbox.applied_writes(idempotency_key=f"r{i}")) == 1
    assert (await first.ledger.counts())[EntryState.COMMITTED] == 20


async def test_two_reconcilers_split_the_work_page_by_page(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile_module, "wave_size", lambda concurrency: 2)  # pages of 4, 16
    first, second = make_client(), make_client()
    for i in range(30):
        await die_at(first, "recorded" if i % 2 else "sending_applied", f"s{i}", f"c{i}", KeySource.CALLER)
    await second.ledger.counts()  # opened now: neither pass may take every page while the other starts up
    sandbox.faults.add("delay", endpoint="/upgrade-to-shakesco", delay=0.02)  # each entry takes a moment
    await asyncio.sleep(0.06)
    a, b = await asyncio.gather(
        first.reconcile(older_than=0, concurrency=1), second.reconcile(older_than=0, concurrency=1)
    )
    assert a.examined + b.examined == 30 and a.examined and b.examined  # interleaved pages, none twice
    assert a.counts["resent"] + b.counts["resent"] == 15
    assert a.counts["committed"] + b.counts["committed"] == 15
    for i in range(30):
        assert len(sandbox.applied_writes(idempotency_key=f"s{i}")) == 1
    assert (await first.ledger.counts())[EntryState.COMMITTED] == 30


async def test_background_reconciler(
    make_client: ClientFactory, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    await die_at(client, "sending_applied", "bg", "b", KeySource.CALLER)
    task = client.start_reconciler(interval=0.05, older_than=0)
    with pytest.raises(RuntimeError):
        client.start_reconciler()
    for _ in range(100):
        entry = await client.ledger.get("bg")
        if entry is not None and entry.state == EntryState.COMMITTED:
            break
        await asyncio.sleep(0.02)
    assert entry is not None and entry.state == EntryState.COMMITTED
    await client.aclose()
    assert task.done()
    assert len(sandbox.applied_writes(idempotency_key="bg")) == 1


async def test_background_reconciler_logs_failures(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    calls = 0

    async def broken(*_: object, **__: object) -> list[object]:
        nonlocal calls
        calls += 1
        raise sa.LedgerError("disk on fire")

    monkeypatch.setattr(client.ledger, "claim_open", broken)
    with caplog.at_level(logging.ERROR, logger="shakesco_async.reconcile"):
        client.start_reconciler(interval=0.01)
        while calls < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await client.aclose()
    assert "reconcile pass failed" in caplog.text
    assert "disk on fire" in caplog.text


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
async def test_a_bad_limit_is_refused_before_anything_is_claimed(make_client: ClientFactory, limit: object) -> None:
    client = await _applied_but_unanswered(make_client, "bl", 1)
    with pytest.raises(sa.ValidationError, match="limit"):
        await client.reconcile(older_than=0, limit=limit)  # type: ignore[arg-type]
    assert (await client.reconcile(older_than=0, limit=1)).examined == 1  # nothing was claimed


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0},
        {"interval": -1},
        {"interval": "60"},
        {"concurrency": 0},
        {"concurrency": 10**9},  # a task and a wave of leases each: memory, not speed
        {"resend": "sometimes"},
        {"older_than": -5},
        {"older_than": "5"},
    ],
)
async def test_bad_reconcile_options_are_refused_up_front(
    make_client: ClientFactory, options: dict[str, object]
) -> None:
    client = make_client()
    with pytest.raises(sa.ValidationError):
        client.start_reconciler(**options)  # type: ignore[arg-type]
    assert client._life.reconciler is None
    if "interval" not in options:
        with pytest.raises(sa.ValidationError):
            await client.reconcile(**options)  # type: ignore[arg-type]


async def test_a_failure_mid_pass_is_raised_once_its_wave_is_settled(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await _applied_but_unanswered(make_client, "w", 6)
    guard = client._guard
    real = guard._judge
    judged: list[str] = []

    async def judge(entry: sa.ledger.LedgerEntry) -> object:
        judged.append(entry.key)
        if entry.key == "w2":
            raise sa.LedgerError("disk on fire")
        await asyncio.sleep(0.01)  # the others are still being judged when w2 fails
        return await real(entry)

    monkeypatch.setattr(guard, "_judge", judge)
    with pytest.raises(sa.LedgerError, match="disk on fire"):
        await client.reconcile(older_than=0, concurrency=2)
    assert sorted(judged) == [f"w{i}" for i in range(6)]  # the wave was finished, not abandoned
    assert len(guard._locks) == 0  # nothing held in-process
    states = {e.key: e.state for e in await client.ledger.entries()}
    assert states.pop("w2") == EntryState.SENDING  # left for the next pass
    assert set(states.values()) == {EntryState.COMMITTED}
    monkeypatch.setattr(guard, "_judge", real)
    again = await client.reconcile(older_than=0)  # its claim and lease were given back
    assert again.examined == 1 and again.counts["committed"] == 1


async def test_a_progress_callback_that_raises_ends_the_pass_with_its_error(make_client: ClientFactory) -> None:
    client = await _applied_but_unanswered(make_client, "p", 3)

    def progress(done: int, total: int) -> None:
        raise ValueError("progress bar broke")

    with pytest.raises(ValueError, match="progress bar broke"):
        await asyncio.wait_for(client.reconcile(older_than=0, progress=progress), 10)
    assert len(client._guard._locks) == 0
    assert (await client.reconcile(older_than=0)).examined == 0  # the verdicts were recorded all the same


async def test_a_wave_that_cannot_be_leased_ends_the_pass_and_frees_every_wave(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await _applied_but_unanswered(make_client, "l", 4)
    monkeypatch.setattr(wrapper_module, "_waves", lambda entries, size: ([e] for e in entries))  # a wave each
    real = client.ledger.lease_entries
    calls = 0

    async def flaky(wanted: Any, *, lease_ttl: float) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise sa.LedgerError("disk on fire")
        return await real(wanted, lease_ttl=lease_ttl)

    monkeypatch.setattr(client.ledger, "lease_entries", flaky)
    with pytest.raises(sa.LedgerError, match="disk on fire"):
        await asyncio.wait_for(client.reconcile(older_than=0, concurrency=1), 10)
    assert len(client._guard._locks) == 0  # no wave is left holding its customers in-process
    monkeypatch.undo()
    assert calls == 4  # the other waves ran to their end
    second = await asyncio.wait_for(client.reconcile(older_than=0), 10)  # and nothing of theirs is held
    assert second.examined == 1 and second.counts["committed"] == 1
    assert {e.state for e in await client.ledger.entries()} == {EntryState.COMMITTED}


@pytest.mark.parametrize("final", [0, 2])  # the callback fails before / after the others are handed out
async def test_a_callback_failing_mid_wave_still_settles_every_leased_entry(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, final: int
) -> None:
    client = await _applied_but_unanswered(make_client, "m", 3)
    guard = client._guard
    real_lease, real_judge = client.ledger.lease_entries, guard._judge

    async def lease(wanted: Any, *, lease_ttl: float) -> Any:
        found = list(await real_lease(wanted, lease_ttl=lease_ttl))
        settled, _ = found[final]
        assert settled is not None
        found[final] = (attrs.evolve(settled, state=EntryState.COMMITTED), False)  # settled meanwhile
        await client.ledger.release(settled.leases, owner=wanted[final][1])
        return found

    async def judge(entry: Any) -> Any:
        await asyncio.sleep(0.05)  # still being judged when the callback fails
        return await real_judge(entry)

    def progress(done: int, total: int) -> None:
        raise ValueError("progress bar broke")

    monkeypatch.setattr(client.ledger, "lease_entries", lease)
    monkeypatch.setattr(guard, "_judge", judge)
    with pytest.raises(ValueError, match="progress bar broke"):
        await asyncio.wait_for(client.reconcile(older_than=0, progress=progress), 10)
    assert len(guard._locks) == 0
    states = {e.key: e.state for e in await client.ledger.entries()}
    others = [f"m{i}" for i in range(3) if i != final]
    assert {states[k] for k in others} == {EntryState.COMMITTED}  # judged to the end, verdicts recorded
    for key in others:  # and their leases given back
        entry = await client.ledger.get(key)
        assert entry is not None and await client.ledger.acquire(entry.leases, owner="next", lease_ttl=1) is None


class _ClaimLog:
    """Records each page reconcile claims: its limit, and how many entries were settled by then."""

    def __init__(self, client: sa.ShakescoClient, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int | None, int]] = []
        self.given_back: dict[str, list[str]] = {}
        self.settled = 0
        claim, unclaim = client.ledger.claim_open, client.ledger.unclaim

        async def claim_open(**options: Any) -> Any:
            self.calls.append((options["limit"], self.settled))
            return await claim(**options)

        async def give_back(owner: str, keys: Any) -> None:
            self.given_back[owner] = list(keys)
            await unclaim(owner, keys)

        monkeypatch.setattr(client.ledger, "claim_open", claim_open)
        monkeypatch.setattr(client.ledger, "unclaim", give_back)

    def progress(self, done: int, total: int) -> None:
        self.settled = done


async def test_a_pass_claims_page_by_page_and_holds_at_most_two(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await _applied_but_unanswered(make_client, "pg", 11)
    monkeypatch.setattr(reconcile_module, "wave_size", lambda concurrency: 2)  # pages of 4, then 16...
    monkeypatch.setattr(reconcile_module, "_PAGES_MAX", 2)  # ...at most 4
    log = _ClaimLog(client, monkeypatch)
    summary = await client.reconcile(older_than=0, concurrency=1, progress=log.progress)
    assert summary.examined == 11 and summary.counts["committed"] == 11 and summary.clean
    assert [limit for limit, _ in log.calls] == [4, 4, 4]
    _, settled_at_second = log.calls[1]
    _, settled_at_third = log.calls[2]
    assert settled_at_second < 4  # the next page is claimed while the first is worked on
    assert settled_at_third >= 4  # but the third only once the first has ended
    assert sorted(k for keys in log.given_back.values() for k in keys) == sorted(f"pg{i}" for i in range(11))
    assert len(log.given_back) == 3  # each page under its own owner, each given back


async def test_a_page_limit_counts_across_pages(make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await _applied_but_unanswered(make_client, "pl", 7)
    monkeypatch.setattr(reconcile_module, "wave_size", lambda concurrency: 2)
    log = _ClaimLog(client, monkeypatch)
    summary = await client.reconcile(older_than=0, concurrency=1, limit=6)
    assert summary.examined == 6 and [limit for limit, _ in log.calls] == [4, 2]
    states = {e.key: e.state for e in await client.ledger.entries()}
    assert states.pop("pl6") == EntryState.SENDING  # the youngest is left for the next pass
    assert set(states.values()) == {EntryState.COMMITTED}


async def test_a_page_that_cannot_be_claimed_ends_the_pass_once_the_last_is_settled(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await _applied_but_unanswered(make_client, "pf", 6)
    monkeypatch.setattr(reconcile_module, "wave_size", lambda concurrency: 2)
    log = _ClaimLog(client, monkeypatch)
    claim = client.ledger.claim_open

    async def second_fails(**options: Any) -> Any:
        if len(log.calls) == 1:
            raise sa.LedgerError("disk on fire")
        return await claim(**options)

    monkeypatch.setattr(client.ledger, "claim_open", second_fails)
    with pytest.raises(sa.LedgerError, match="disk on fire"):
        await asyncio.wait_for(client.reconcile(older_than=0, concurrency=1), 10)
    assert len(client._guard._locks) == 0
    states = {e.key: e.state for e in await client.ledger.entries()}
    assert [k for k, state in sorted(states.items()) if state == EntryState.COMMITTED] == ["pf0", "pf1", "pf2", "pf3"]
    assert list(log.given_back.values()) == [["pf0", "pf1", "pf2", "pf3"]]  # the page it took, given back
    monkeypatch.undo()
    again = await client.reconcile(older_than=0)
    assert again.examined == 2 and again.counts["committed"] == 2


async def test_an_entry_whose_claim_lapsed_mid_pass_is_not_judged_twice(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await _applied_but_unanswered(make_client, "pd", 6)
    monkeypatch.setattr(reconcile_module, "wave_size", lambda concurrency: 2)
    monkeypatch.setattr(reconcile_module, "CLAIM_TTL", 0.0)  # every claim lapses at once
    summary = await client.reconcile(older_than=0, concurrency=1)
    # The next page starts where the last one ended: its last entry comes again, unclaimed.
    assert summary.examined == 6 and summary.counts["committed"] == 6 and summary.counts["final"] == 0


async def _applied_but_unanswered(make_client: ClientFactory, prefix: str, count: int) -> sa.ShakescoClient:
    """A client whose ledger holds ``count`` writes applied by the API whose answers were lost
    (keys ``{prefix}0``…, customers ``{prefix}c0``…), their dead process's leases run out."""
    client = make_client()
    for i in range(count):
        await die_at(client, "sending_applied", f"{prefix}{i}", f"{prefix}c{i}", KeySource.CALLER)
    await asyncio.sleep(0.06)
    return client


@pytest.mark.parametrize("source", [KeySource.CALLER, KeySource.GENERATED])
async def test_a_verdict_does_not_undo_what_another_writer_settled_meanwhile(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, source: KeySource
) -> None:
    client = make_client()
    await die_at(client, "sending_unsent", "raced", "c-raced", source)  # not applied: the verdict proves it
    await asyncio.sleep(0.06)
    judge = client.guard._judge

    async def judged_while_the_caller_sent_it(entry: Any) -> Any:
        judgement = await judge(entry)
        assert judgement.verdict.name == "NOT_APPLIED"
        # Meanwhile its caller (with the key again) sent it, and it applied.
        await client.ledger.settle(
            "raced", Settlement(EntryState.COMMITTED, result={"kind": "receipt", "tx_hash": "0x1"})
        )
        return judgement

    monkeypatch.setattr(client.guard, "_judge", judged_while_the_caller_sent_it)
    summary = await client.reconcile(older_than=0, resend="none")
    assert summary.counts["final"] == 1  # settled meanwhile: not counted as this pass's verdict
    entry = await client.ledger.get("raced")
    assert entry is not None and entry.state == EntryState.COMMITTED  # not recorded: no replay sends it again


async def test_a_ledger_failure_after_a_resend_is_logged_and_the_next_pass_settles_it(
    make_client: ClientFactory, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    await die_at(client, "recorded", "unsent", "c-ledger", KeySource.CALLER)
    await asyncio.sleep(0.06)
    settle = client.ledger.settle

    async def broken(key: str, move: Settlement) -> bool:
        if move.state == EntryState.COMMITTED:
            raise sa.LedgerError("ledger write failed: disk I/O error")
        return await settle(key, move)

    monkeypatch.setattr(client.ledger, "settle", broken)
    with caplog.at_level(logging.ERROR, logger="shakesco_async.guard"):
        first = await client.reconcile(older_than=0)
    assert first.counts["resent"] == 1  # what the API did, not "not_applied"
    assert "could not be recorded" in caplog.text
    entry = await client.ledger.get("unsent")
    assert entry is not None and entry.state == EntryState.SENDING  # open, with its snapshot
    monkeypatch.undo()
    assert (await client.reconcile(older_than=0)).counts["busy"] == 1  # its request may be on its way
    await long_ago(client.ledger, "unsent")
    summary = await client.reconcile(older_than=0)
    assert summary.counts["committed"] == 1  # verified applied, not sent again
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == 1


async def test_outcomes_are_an_enum_that_reads_as_strings(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    await die_at(client, "sending_applied", "enum-1", "enum-cust", KeySource.CALLER)
    await asyncio.sleep(0.06)
    summary = await client.reconcile(older_than=0)
    assert all(isinstance(k, sa.ReconcileOutcome) for k in summary.counts)
    assert list(summary.counts) == list(sa.ReconcileOutcome)
    assert summary.counts["committed"] == summary.counts[sa.ReconcileOutcome.COMMITTED] == 1


async def test_a_write_whose_read_before_sending_is_refused_stays_owed_not_failed(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    """The refusal is the read's, not the write's: reconcile reports it not applied and
    leaves it to be sent, once the read works again."""
    client = make_client()
    await die_at(client, "recorded", "k-read", "cust", KeySource.CALLER)
    await asyncio.sleep(0.06)  # the dead process's lease runs out
    refused = sandbox.faults.add("error", endpoint="/total-earned", on="read", status=400, message="no", count=1)
    summary = await client.reconcile(older_than=0)
    assert refused.fired == 1
    assert summary.counts["not_applied"] == 1 and summary.counts["failed"] == 0
    assert (await client.ledger.get("k-read")).state == EntryState.RECORDED  # type: ignore[union-attr]
    assert (await client.reconcile(older_than=0)).counts["resent"] == 1  # the read works again
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == 1
