"""A request that timed out before it had a connection is known not sent (``sent=False``).

Such requests are either queued behind the pool's connections (they wait in the SDK) or
stuck connecting (an unreachable host): a write is then sent again or given back as not
sent, never verified by reads that would time out too and leave it in doubt.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shakesco_async import EntryState, GuardSettings, OutcomeUnknown, ShakescoClient, TransportTimeout
from shakesco_async.sandbox import Sandbox


@pytest.fixture
async def one_connection() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        yield session


def _client(sandbox: Sandbox, tmp_path: Path, session: aiohttp.ClientSession, **options: object) -> ShakescoClient:
    return ShakescoClient(
        sandbox.api_key,
        base_url=sandbox.base_url,
        ledger=tmp_path / "ledger.sqlite3",
        session=session,
        guard=GuardSettings(verify_delay=0.0, lease_ttl=10.0),
        **options,  # type: ignore[arg-type]
    )


async def test_a_request_that_never_got_a_connection_is_known_not_sent(
    sandbox: Sandbox, tmp_path: Path, one_connection: aiohttp.ClientSession
) -> None:
    sandbox.faults.add("delay", endpoint="/balance", on="read", delay=1.0, count=1)
    async with _client(sandbox, tmp_path, one_connection, timeout=0.3, max_retries=0) as client:
        slow, queued = await asyncio.gather(client.balance("c1"), client.event_counter(), return_exceptions=True)
    assert isinstance(slow, TransportTimeout) and slow.sent is None  # it left: who knows
    assert isinstance(queued, TransportTimeout) and queued.sent is False
    assert "free connection" in str(queued)


async def test_writes_queued_behind_a_slow_api_are_never_left_in_doubt(
    sandbox: Sandbox, tmp_path: Path, one_connection: aiohttp.ClientSession
) -> None:
    # Every answer comes too late: the writes that got the connection are in doubt (their
    # reads fail too). The ones that never got it were provably not sent, and must say so.
    async with _client(sandbox, tmp_path, one_connection, timeout=0.3, max_retries=0) as client:
        patient = client.with_options(timeout=5.0)  # the set-up must not hit the short timeout on a busy machine
        await patient.set_event_details("signup", 5, True)
        await patient.claim_tokens("signup", "first")  # the event is known one-time: no read before a claim
        sandbox.faults.add("delay", on="any", delay=0.6)
        results = await asyncio.gather(
            *(client.claim_tokens("signup", f"c{i}", idempotency_key=f"k{i}") for i in range(4)),
            return_exceptions=True,
        )
        entries = {f"k{i}": await client.ledger.get(f"k{i}") for i in range(4)}
    applied = {write.idempotency_key for write in sandbox.applied_writes("/claim-tokens")}
    unsent = {
        key
        for key, result in zip(entries, results, strict=True)
        if isinstance(result, TransportTimeout) and result.sent is False
    }
    assert unsent, "some writes must have timed out waiting for the one connection"
    for key, result in zip(entries, results, strict=True):
        entry = entries[key]
        assert entry is not None
        if key in unsent:
            assert "free connection" in str(result)
            assert key not in applied and entry.state == EntryState.ABANDONED  # given up: yours to send again
        else:  # it had the connection: what the API did is unknown, and the reads fail too
            assert isinstance(result, OutcomeUnknown) and "waiting for the answer" in str(result)
            assert entry.state == EntryState.IN_DOUBT


async def test_a_burst_beyond_the_pool_waits_its_turn_and_cancelled_waits_free_nothing_twice(
    sandbox: Sandbox, tmp_path: Path, one_connection: aiohttp.ClientSession
) -> None:
    async with _client(sandbox, tmp_path, one_connection, timeout=5.0) as client:
        await client.set_event_details("signup", 5, True)
        receipts = await asyncio.gather(*(client.claim_tokens("signup", f"c{i}") for i in range(20)))
        assert [r.verified for r in receipts] == [False] * 20
        sandbox.faults.add("delay", endpoint="/balance", on="read", delay=0.3, count=1)
        reads = [asyncio.ensure_future(client.balance(f"c{i}")) for i in range(6)]
        await asyncio.sleep(0.1)  # the first read holds the connection, the rest wait for it
        for read in reads[1:4]:
            read.cancel()
        async with asyncio.timeout(5):  # a slot lost to a cancelled wait would hang this for ever
            done = await asyncio.gather(*reads, return_exceptions=True)
            assert await client.balance("c0") == 5
    assert [isinstance(r, asyncio.CancelledError) for r in done] == [False, True, True, True, False, False]
    assert len(sandbox.applied_writes("/claim-tokens")) == 20


async def test_the_slots_follow_the_sessions_pool() -> None:
    from shakesco_async._transport import _slots

    for connector, slots in (
        (aiohttp.TCPConnector(limit=7), 7),
        (aiohttp.TCPConnector(limit=50, limit_per_host=3), 3),
        (aiohttp.TCPConnector(limit=0, limit_per_host=4), 4),
    ):
        async with aiohttp.ClientSession(connector=connector) as session:
            assert _slots(session) == slots
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        assert _slots(session) > 10**6  # no limit: no request ever waits in the SDK


class _Resolver(aiohttp.abc.AbstractResolver):
    """Resolves localhost to 127.0.0.1 until ``unreachable``, then never answers (a black hole)."""

    unreachable = False

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        if self.unreachable:
            await asyncio.Event().wait()
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


async def test_a_write_to_an_unreachable_api_is_given_back_as_not_sent(sandbox: Sandbox, tmp_path: Path) -> None:
    resolver = _Resolver()
    # A new connection, so a new lookup, for every request: the host can vanish between them.
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        base_url = sandbox.base_url.replace("127.0.0.1", "localhost")
        async with ShakescoClient(
            sandbox.api_key,
            base_url=base_url,
            ledger=tmp_path / "ledger.sqlite3",
            session=session,
            timeout=0.3,
            guard=GuardSettings(verify_delay=0.0, lease_ttl=10.0),
        ) as client:
            await client.set_event_details("signup", 5, True)
            await client.claim_tokens("signup", "first")  # the event is known one-time: no read before a claim
            resolver.unreachable = True
            with pytest.raises(TransportTimeout, match="timed out connecting") as caught:
                await client.claim_tokens("signup", "c1", idempotency_key="k1")
            entry = await client.ledger.get("k1")
            resolver.unreachable = False
            receipt = await client.claim_tokens("signup", "c1", idempotency_key="k1")
    assert caught.value.sent is False
    assert entry is not None and entry.state == EntryState.ABANDONED  # not in doubt: yours to send again
    assert receipt.tx_hash is not None and not receipt.replayed
    assert [w.idempotency_key for w in sandbox.applied_writes("/claim-tokens")][1:] == ["k1"]
