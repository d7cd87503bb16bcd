"""The guard's cache of event kinds: one read shared, trusted for a while, never guessed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import cast

from shakesco_async import EventDetails, TransportError
from shakesco_async._timing import VirtualClock
from shakesco_async.endpoints import EndpointMethods
from shakesco_async.guard._events import EventKinds


class FakeReader:
    def __init__(self, one_time: bool = True, fail: bool = False) -> None:
        self.calls = 0
        self.one_time = one_time
        self.fail = fail
        self.gate = asyncio.Event()
        self.gate.set()

    async def event_details(self, name: str) -> EventDetails:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise TransportError("down", sent=False)
        return EventDetails(Decimal(1), self.one_time)


def _reader(fake: FakeReader) -> EndpointMethods:
    return cast(EndpointMethods, fake)


async def test_concurrent_claims_share_one_read_and_it_is_kept() -> None:
    fake, kinds = FakeReader(), EventKinds(ttl=60)
    fake.gate.clear()
    waiting = [asyncio.ensure_future(kinds.one_time(_reader(fake), "signup")) for _ in range(5)]
    await asyncio.sleep(0)
    fake.gate.set()
    assert await asyncio.gather(*waiting) == [True] * 5
    assert await kinds.one_time(_reader(fake), "signup") is True
    assert fake.calls == 1


async def test_the_kind_is_read_again_after_its_ttl(virtual_clock: VirtualClock) -> None:
    fake, kinds = FakeReader(), EventKinds(ttl=60)
    await kinds.one_time(_reader(fake), "signup")
    await virtual_clock.sleep(59)
    await kinds.one_time(_reader(fake), "signup")
    assert fake.calls == 1
    await virtual_clock.sleep(2)
    fake.one_time = False
    assert await kinds.one_time(_reader(fake), "signup") is False
    assert fake.calls == 2


async def test_a_failed_read_is_unknown_and_not_kept() -> None:
    fake, kinds = FakeReader(fail=True), EventKinds(ttl=60)
    assert await kinds.one_time(_reader(fake), "signup") is None
    fake.fail = False
    assert await kinds.one_time(_reader(fake), "signup") is True
    assert fake.calls == 2


async def test_forget_during_a_read_drops_what_it_learns() -> None:
    fake, kinds = FakeReader(), EventKinds(ttl=60)
    fake.gate.clear()
    loading = asyncio.ensure_future(kinds.one_time(_reader(fake), "signup"))
    await asyncio.sleep(0)
    kinds.forget("signup")  # the event is being changed while it was read
    fake.gate.set()
    assert await loading is True  # that caller may use what it read...
    await kinds.one_time(_reader(fake), "signup")
    assert fake.calls == 2  # ...but it is not kept for the next


async def test_ttl_zero_never_reads() -> None:
    fake, kinds = FakeReader(), EventKinds(ttl=0)
    assert await kinds.one_time(_reader(fake), "signup") is None
    assert fake.calls == 0
