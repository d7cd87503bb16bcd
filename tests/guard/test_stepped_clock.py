"""A wall clock stepped while writes are in flight (NTP, a clock set by hand, a resumed host).

A lease must outlive the request sent under it, whose deadline runs on the monotonic
clock: so a stepped wall clock may make a lease last longer, never shorter.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import shakesco_async as sa
from shakesco_async.ledger import EntryState, Fence, Intent, KeySource, SQLiteLedger
from shakesco_async.ledger import _clock as clock
from shakesco_async.ledger import _sqlite_batch as sqlite_batch
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.support.ledgers import sqlite_execute


@pytest.fixture
def step_wall_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Step the wall clock (``time.time``) by some seconds; the monotonic clock runs on."""
    real = time.time
    offset = 0.0

    def step(seconds: float) -> None:
        nonlocal offset
        offset += seconds
        monkeypatch.setattr(time, "time", lambda: real() + offset)

    return step


def _intent(key: str, customer: str) -> Intent:
    return Intent(
        key, "/claim-tokens", {"event_name": "visit", "customer_ref": customer}, (customer,), KeySource.CALLER
    )


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[SQLiteLedger, SQLiteLedger]]:
    """Two processes' ledgers on one file."""
    async with (
        SQLiteLedger(tmp_path / "l.sqlite3", business="b") as one,
        SQLiteLedger(tmp_path / "l.sqlite3", business="b") as other,
    ):
        yield one, other


async def test_a_request_in_flight_keeps_its_lease_when_the_wall_clock_jumps_ahead(
    make_client: ClientFactory, sandbox: Sandbox, step_wall_clock: Callable[[float], None]
) -> None:
    settings = sa.GuardSettings(verify_delay=0.0, lease_ttl=30.0, lease_wait=0.5)
    first = make_client(guard=settings)
    await first.set_event_details("visit", 10, False)  # repeatable: the API takes every claim
    in_flight, go_on = asyncio.Event(), asyncio.Event()
    send_once = first.guard._send_once

    async def held_up(*args: Any) -> Any:
        in_flight.set()  # the request has left; it reaches the API when go_on is set
        await go_on.wait()
        return await send_once(*args)

    first.guard._send_once = held_up  # type: ignore[method-assign]
    sending = asyncio.create_task(first.claim_tokens("visit", "cust", idempotency_key="job-1"))
    await in_flight.wait()
    step_wall_clock(3600)  # an hour: far past the lease's 30 s by the wall clock
    redelivered = make_client(guard=settings)  # another worker, the same job
    try:
        # Its write is on its way from the other worker: pending, not "not applied".
        with pytest.raises(sa.OutcomeUnknown, match="another process holds its customers"):
            await redelivered.claim_tokens("visit", "cust", idempotency_key="job-1")
    finally:
        go_on.set()
    receipt = await sending
    assert [w.tx_hash for w in sandbox.applied_writes("/claim-tokens")] == [receipt.tx_hash]
    assert (await redelivered.claim_tokens("visit", "cust", idempotency_key="job-1")).replayed


async def test_a_lease_lasts_while_either_clock_says_so(
    two: tuple[SQLiteLedger, SQLiteLedger], step_wall_clock: Callable[[float], None]
) -> None:
    one, other = two
    assert await one.acquire(("c",), owner="one:1", lease_ttl=60) is None
    step_wall_clock(3600)
    busy_until = await other.acquire(("c",), owner="other:1", lease_ttl=60)
    assert busy_until is not None and 0 < busy_until - time.time() <= 60  # in wall-clock terms, now
    begun = await other.begin(_intent("k", "c"), owner="other:2", lease_ttl=60)
    assert not begun.created and begun.busy_until is not None
    entry = (await one.begin(_intent("held", "c"), owner="one:1", lease_ttl=60)).entry
    assert entry is not None
    assert await other.lease_entries([(entry, "other:3")], lease_ttl=60) == [(entry, False)]
    step_wall_clock(-7200)  # and back an hour before it began: the wall clock keeps it
    await one.release(("c",), owner="one:1")
    assert await other.acquire(("c",), owner="other:1", lease_ttl=60) is None  # given back ends it on both


async def test_a_fence_sees_a_write_made_while_the_wall_clock_went_back(
    two: tuple[SQLiteLedger, SQLiteLedger], step_wall_clock: Callable[[float], None]
) -> None:
    one, other = two
    fence = Fence.starting_now("one:", 1.0)  # one process starts its read
    step_wall_clock(-30)
    assert await other.acquire(("c",), owner="other:1", lease_ttl=60) is None  # another writes meanwhile
    await other.release(("c",), owner="other:1")  # and ends "before" the read began, by the wall clock
    begun = await one.begin(_intent("k", "c"), owner="one:1", lease_ttl=60, snapshot={"total_earned": "0"}, fence=fence)
    assert begun.entry is not None and begun.entry.state == EntryState.RECORDED and begun.entry.snapshot is None


def _set_lease(path: Path, **columns: Any) -> None:
    assignments = ", ".join(f"{name} = ?" for name in columns)
    sqlite_execute(path, f"UPDATE leases SET {assignments} WHERE customer = 'c'", tuple(columns.values()))


@pytest.mark.parametrize(
    "columns",
    [
        {"boot": "another-boot"},  # the host restarted since: its monotonic clock began again
        {"boot": None, "mono_from": None, "mono_until": None},  # written by an SDK before this one
        {"mono_from": 1e12, "mono_until": 1e12 + 60},  # another time namespace's clock, far ahead
    ],
)
async def test_a_lease_whose_monotonic_times_mean_nothing_here_goes_by_the_wall_clock(
    two: tuple[SQLiteLedger, SQLiteLedger], columns: dict[str, Any]
) -> None:
    one, other = two
    assert await one.acquire(("c",), owner="one:1", lease_ttl=60) is None
    _set_lease(one.path, expires_at=time.time() - 1, **columns)  # ended, by the wall clock
    assert await other.acquire(("c",), owner="other:1", lease_ttl=60) is None


async def test_ended_leases_are_forgotten_only_once_both_clocks_say_they_ended_long_ago(
    two: tuple[SQLiteLedger, SQLiteLedger], step_wall_clock: Callable[[float], None]
) -> None:
    one, _ = two
    assert await one.acquire(("c",), owner="one:1", lease_ttl=60) is None
    assert await one.acquire(("live",), owner="one:1", lease_ttl=60) is None
    long_ago = time.monotonic() - 2 * sqlite_batch.LEASE_MEMORY
    _set_lease(one.path, mono_from=long_ago, mono_until=long_ago + 60)
    step_wall_clock(2 * sqlite_batch.LEASE_MEMORY)  # both ended long ago by the wall clock
    db = sqlite3.connect(one.path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        sqlite_batch.end_batch(db, checkpoint=True)
        left = [name for (name,) in db.execute("SELECT customer FROM leases")]
    finally:
        db.close()
    assert left == ["live"]  # still held by the monotonic clock


def test_without_a_boot_id_leases_go_by_the_wall_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert clock.boot_id(tmp_path / "missing") == ""
    monkeypatch.setattr(clock, "BOOT", "")
    now = clock.now()
    end = clock.LeaseEnd.after(now, 60)
    assert end.boot is None and end.wall_end(now) == end.wall
    assert not clock.LeaseEnd(now.wall - 1, "", now.mono, now.mono + 60).lasts_past(now, now)
