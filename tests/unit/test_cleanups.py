"""Work that outlives a cancelled caller, and the wait for it when a client closes."""

from __future__ import annotations

import asyncio

from shakesco_async.guard._cleanup import Cleanups
from tests.support.spin import fails_if_it_spins


async def test_drain_gives_way_to_the_loop_when_the_work_has_just_ended() -> None:
    # The work ended in this turn of the loop: the callback that forgets it runs on the next
    # one. Waiting on ended work alone does not yield (gather, Python 3.12+), so a drain that
    # asked only whether any work was still known spun forever and stalled the loop.
    cleanups = Cleanups()
    work: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    caller = asyncio.create_task(cleanups.finish(work))
    await asyncio.sleep(0)  # the caller waits on the work
    work.set_result(None)  # ended now; the callback that forgets it runs on the next turn
    with fails_if_it_spins():
        await cleanups.drain()
    await caller


async def test_drain_waits_for_work_still_under_way() -> None:
    cleanups = Cleanups()
    release = asyncio.Event()
    ended: list[str] = []

    async def give_back() -> None:
        await release.wait()
        ended.append("given back")

    caller = asyncio.create_task(cleanups.finish(give_back()))
    await asyncio.sleep(0)
    caller.cancel()  # the caller goes; the work goes on
    await asyncio.gather(caller, return_exceptions=True)
    draining = asyncio.create_task(cleanups.drain())
    await asyncio.sleep(0.01)
    assert not draining.done()
    release.set()
    await asyncio.wait_for(draining, 2)
    assert ended == ["given back"]
