"""The SQLite ledger's split commit: an intent's durable commit does not carry the outcomes
queued beside it that it cannot see; those commit right after, in the same hop, while the
intent's caller already sends."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from shakesco_async.ledger import EntryState, Intent, KeySource, Settlement, SQLiteLedger
from shakesco_async.ledger import _sqlite_batch as sqlite_batch
from shakesco_async.ledger._sqlite_batch import Begin, Settle, deferrable

WAIT = 10.0  # seconds: a bound for a test that would otherwise hang, never a timing claim


def _intent(key: str, *customers: str) -> Intent:
    return Intent(key, "/transfer-tokens", {"from": key}, tuple(sorted(customers)), KeySource.CALLER)


def _begin(key: str, *customers: str) -> Begin:
    return Begin("b", _intent(key, *customers), f"owner-{key}", 60.0, {})


def _settle(key: str, *customers: str, owner: str | None = "o") -> Settle:
    return Settle("b", key, EntryState.COMMITTED, result=None, error=None, reason=None, release=customers, owner=owner)


# -- which outcomes may wait: a pure choice -------------------------------------------------------
def test_outcomes_no_intent_of_the_batch_could_see_are_deferred() -> None:
    ops = [_settle("k1", "c1"), _begin("k2", "c2"), _settle("k3", "c3")]
    assert deferrable(ops, [False, True, False]) == [True, False, True]


@pytest.mark.parametrize(
    ("ops", "durable", "why"),
    [
        ([_settle("k1", "c1"), _begin("k2", "c1")], [False, True], "an intent on the customer it releases"),
        ([_settle("k1", "c1"), _begin("k1", "c9")], [False, True], "an intent under its key"),
        ([_settle("k1", "c1"), _begin("k2", "c2", "c1")], [False, True], "a transfer touching its customer"),
        ([_settle("k1", "c1"), _begin("k2", "c2")], [True, True], "an outcome its caller waits for"),
        ([_settle("k1", "c1", owner=None), _begin("k2", "c2")], [False, True], "no leases named: customers unknown"),
        ([_settle("k1"), _begin("k2", "c2")], [False, True], "no leases named"),
    ],
)
def test_an_outcome_stays_in_the_intents_commit_when(ops: list[Any], durable: list[bool], why: str) -> None:
    assert deferrable(ops, durable) is None, why


def test_an_outcome_queued_twice_for_one_key_keeps_its_order() -> None:
    ops = [_settle("k1", "c1"), _begin("k2", "c2"), _settle("k1", "c1"), _settle("k4", "c4")]
    assert deferrable(ops, [False, True, False, False]) == [False, False, False, True]


def test_only_batches_of_intents_and_outcomes_split() -> None:
    assert deferrable([_settle("k1", "c1"), _settle("k2", "c2")], [False, False]) is None  # nothing durable waits
    mixed: list[Any] = [_settle("k1", "c1"), _begin("k2", "c2"), lambda db: None]
    assert deferrable(mixed, [False, True, True]) is None  # a plain function reads what it likes


# -- on the ledger -------------------------------------------------------------------------------
@pytest.fixture
async def sqlite_ledger(tmp_path: Path) -> AsyncIterator[SQLiteLedger]:
    async with SQLiteLedger(tmp_path / "split.sqlite3", business="b") as opened:
        yield opened


class _Gate(threading.Event):
    """Set: outcomes pass. ``entered``: one has reached the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()


@pytest.fixture
def held_outcomes(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Gate]:
    """Outcomes (settles) wait on the ledger thread until the event is set."""
    gate = _Gate()
    real = sqlite_batch.settle_many

    def held(db: Any, ops: Any) -> Any:
        gate.entered.set()
        if not gate.wait(WAIT):
            raise AssertionError("the outcomes were never let through")
        return real(db, ops)

    monkeypatch.setattr(sqlite_batch, "settle_many", held)
    try:
        yield gate
    finally:
        gate.set()


async def test_an_intent_commits_before_the_outcomes_queued_beside_it(
    sqlite_ledger: SQLiteLedger, held_outcomes: _Gate
) -> None:
    held_outcomes.set()
    await sqlite_ledger.begin(_intent("k1", "c1"), owner="o1", lease_ttl=60, snapshot={})
    held_outcomes.clear()
    await sqlite_ledger.settle("k1", Settlement(EntryState.COMMITTED, release=("c1",), owner="o1", wait=False))
    begun = await asyncio.wait_for(
        sqlite_ledger.begin(_intent("k2", "c2"), owner="o2", lease_ttl=60, snapshot={}), WAIT
    )
    # Recorded, durably, while the outcome queued before it has not been applied yet.
    assert begun.created and begun.entry is not None and begun.entry.state == EntryState.SENDING
    reading = asyncio.ensure_future(sqlite_ledger.get("k1"))
    await asyncio.sleep(0.05)
    assert not reading.done()  # a read still sees everything queued before it
    held_outcomes.set()
    entry = await asyncio.wait_for(reading, WAIT)
    assert entry is not None and entry.state == EntryState.COMMITTED
    assert await sqlite_ledger.acquire(("c1",), owner="next", lease_ttl=60) is None  # its lease went with it


async def test_an_outcome_an_intent_depends_on_commits_first(sqlite_ledger: SQLiteLedger, held_outcomes: _Gate) -> None:
    held_outcomes.set()
    await sqlite_ledger.begin(_intent("k1", "c1"), owner="o1", lease_ttl=60, snapshot={})
    await sqlite_ledger.settle("k1", Settlement(EntryState.COMMITTED, release=("c1",), owner="o1", wait=False))
    begun = await sqlite_ledger.begin(_intent("k2", "c1"), owner="o2", lease_ttl=60, snapshot={})
    # The customer's lease was given back in the same commit, before the new intent took it,
    # and the earlier write, final, is no open entry to settle first.
    assert begun.created and begun.busy_until is None and begun.others == ()


async def test_a_deferred_outcome_that_fails_fails_alone(
    sqlite_ledger: SQLiteLedger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await sqlite_ledger.begin(_intent("k1", "c1"), owner="o1", lease_ttl=60, snapshot={})

    def broken(db: Any, ops: Any) -> Any:
        raise RuntimeError("disk said no")

    monkeypatch.setattr(sqlite_batch, "settle_many", broken)
    with caplog.at_level(logging.ERROR, logger="shakesco_async"):
        await sqlite_ledger.settle("k1", Settlement(EntryState.COMMITTED, release=("c1",), owner="o1", wait=False))
        begun = await sqlite_ledger.begin(_intent("k2", "c2"), owner="o2", lease_ttl=60, snapshot={})
        assert begun.created
        stored = await sqlite_ledger.get("k1")
    assert stored is not None and stored.state == EntryState.SENDING  # open, for verification
    assert any("failed to commit" in r.getMessage() and "k1" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    later = await sqlite_ledger.get("k2")
    assert later is not None and later.state == EntryState.SENDING  # the intent beside it stands
    assert await sqlite_ledger.settle("k1", Settlement(EntryState.COMMITTED))  # and the ledger goes on


async def test_a_flush_cancelled_between_its_transactions_tells_each_caller_what_it_did(
    sqlite_ledger: SQLiteLedger, held_outcomes: _Gate, caplog: pytest.LogCaptureFixture
) -> None:
    held_outcomes.set()
    await sqlite_ledger.begin(_intent("k1", "c1"), owner="o1", lease_ttl=60, snapshot={})
    held_outcomes.clear()
    await sqlite_ledger.settle("k1", Settlement(EntryState.COMMITTED, release=("c1",), owner="o1", wait=False))
    begin = asyncio.ensure_future(sqlite_ledger.begin(_intent("k2", "c2"), owner="o2", lease_ttl=60, snapshot={}))
    await asyncio.wait_for(asyncio.shield(begin), WAIT)  # committed
    await asyncio.wait_for(asyncio.to_thread(held_outcomes.entered.wait, WAIT), WAIT)  # the outcome is on the thread
    flusher = sqlite_ledger._flusher
    assert flusher is not None and not flusher.done()
    flusher.cancel()  # e.g. the loop shutting down under the flush
    await asyncio.sleep(0.05)
    held_outcomes.set()
    with pytest.raises(asyncio.CancelledError):
        await flusher
    begun = begin.result()  # the intent was durable before the cancellation: its caller heard so
    assert begun.created and begun.entry is not None and begun.entry.state == EntryState.SENDING
    settled = await sqlite_ledger.get("k1")
    assert settled is not None and settled.state == EntryState.COMMITTED  # the outcome committed after it
    assert not [r for r in caplog.records if "failed to commit" in r.getMessage()]  # and is not said to have failed
    later = await sqlite_ledger.begin(_intent("k3", "c3"), owner="o3", lease_ttl=60, snapshot={})
    assert later.created  # and the ledger goes on


async def test_a_flush_cancelled_before_its_outcomes_ran_leaves_them_open_and_says_so(
    sqlite_ledger: SQLiteLedger, caplog: pytest.LogCaptureFixture
) -> None:
    await sqlite_ledger.begin(_intent("k1", "c1"), owner="o1", lease_ttl=60, snapshot={})
    await sqlite_ledger.settle("k1", Settlement(EntryState.COMMITTED, release=("c1",), owner="o1", wait=False))
    begin = asyncio.ensure_future(sqlite_ledger.begin(_intent("k2", "c2"), owner="o2", lease_ttl=60, snapshot={}))
    flusher = sqlite_ledger._flusher
    assert flusher is not None
    # Cancelled the moment the intent's caller is told, before the outcomes' turn comes.
    begin.add_done_callback(lambda _: flusher.cancel())
    with pytest.raises(asyncio.CancelledError):
        await flusher
    begun = begin.result()
    assert begun.created and begun.entry is not None and begun.entry.state == EntryState.SENDING
    stored = await sqlite_ledger.get("k1")
    assert stored is not None and stored.state == EntryState.SENDING  # not committed: open, for verification
    assert any("failed to commit" in r.getMessage() and "k1" in r.getMessage() for r in caplog.records)
