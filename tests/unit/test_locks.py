"""In-process locks by name: exclusion, no deadlock on overlapping sets, nothing leaked."""

from __future__ import annotations

import asyncio

import pytest

from shakesco_async.guard._locks import KeyedLocks


async def test_holders_of_a_shared_name_take_turns_and_nothing_is_left_behind() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    order: list[str] = []

    async def work(tag: str, names: list[str]) -> None:
        async with locks.hold(names):
            assert not inside, f"{tag} entered while {inside} held an overlapping set"
            inside.append(tag)
            await asyncio.sleep(0.001)
            order.append(tag)
            inside.remove(tag)

    # a, b in opposite orders: sorted acquisition means no deadlock
    await asyncio.wait_for(
        asyncio.gather(work("1", ["a", "b"]), work("2", ["b", "a"]), work("3", ["b", "b", "a"])), timeout=5
    )
    assert sorted(order) == ["1", "2", "3"]
    assert len(locks) == 0


async def test_a_waiter_cancelled_or_failing_gives_everything_back() -> None:
    locks = KeyedLocks()
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def holder() -> None:
        async with locks.hold(["b"]):
            entered.set()
            await leave.wait()

    first = asyncio.create_task(holder())
    await entered.wait()
    waiter = asyncio.create_task(_enter(locks, ["a", "b"]))  # holds "a", waits for "b"
    await asyncio.sleep(0.01)
    assert len(locks) == 2
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    leave.set()
    await first
    assert len(locks) == 0  # "a" released, both names forgotten

    with pytest.raises(RuntimeError):
        async with locks.hold(["a"]):
            raise RuntimeError("boom")
    assert len(locks) == 0
    async with locks.hold(["a"]):  # and "a" is free again
        pass


async def _enter(locks: KeyedLocks, names: list[str]) -> None:
    async with locks.hold(names):
        pass
