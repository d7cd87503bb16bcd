"""The group-commit helper of the networked ledger: batches while one is in flight, never hangs a caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shakesco_async.ledger._batches import Batches
from tests.support.spin import fails_if_it_spins


async def test_what_is_asked_while_a_batch_runs_goes_out_together_in_the_next() -> None:
    seen: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int | BaseException]:
        seen.append(list(items))
        await release.wait()
        return [i * 10 if i >= 0 else ValueError(f"bad {i}") for i in items]

    batches: Batches[int, int] = Batches(run)
    first = batches.submit(1)
    await asyncio.sleep(0)  # the first batch is under way
    rest = [batches.submit(i) for i in (2, -3, 4)]
    release.set()
    assert await first == 10
    outcomes = await asyncio.gather(*rest, return_exceptions=True)
    assert outcomes[0] == 20 and outcomes[2] == 40
    assert isinstance(outcomes[1], ValueError)  # one item's error is its caller's alone
    assert seen == [[1], [2, -3, 4]]


async def test_a_batch_that_breaks_fails_its_callers_instead_of_hanging() -> None:
    async def short(items: Sequence[int]) -> list[int | BaseException]:
        return list(items)[1:]  # one outcome missing

    async def failing(items: Sequence[int]) -> list[int | BaseException]:
        raise OSError("connection reset")

    for run, error in ((short, RuntimeError), (failing, OSError)):
        batches: Batches[int, int] = Batches(run)
        calls = [batches.submit(i) for i in range(3)]
        for call in calls:
            with pytest.raises(error):
                await asyncio.wait_for(call, 1)
        await batches.drain()


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"), reason="eager tasks are Python 3.12+")
async def test_a_flusher_that_ends_before_it_is_stored_does_not_stop_later_batches() -> None:
    # Under an eager task factory, a run that fails before its first await ends the flusher
    # inside ensure_future: the Batches must not keep that ended task as "in flight".
    async def refuse_first(items: Sequence[int]) -> list[int | BaseException]:
        if items[0] == 1:
            raise OSError("refused at once")
        await asyncio.sleep(0)
        return [i * 10 for i in items]

    loop = asyncio.get_running_loop()
    batches: Batches[int, int] = Batches(refuse_first)
    previous = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)
    try:
        with pytest.raises(OSError, match="refused at once"):
            await batches.submit(1)
        assert await asyncio.wait_for(batches.submit(2), 2) == 20
        with fails_if_it_spins():
            await batches.drain()
    finally:
        loop.set_task_factory(previous)
