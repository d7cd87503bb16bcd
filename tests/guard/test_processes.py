"""Crashes and many processes: SIGKILL at random moments, several processes on one ledger."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from shakesco_async import GuardSettings, ShakescoClient
from shakesco_async.ledger import EntryState
from shakesco_async.sandbox import Sandbox
from tests.support.ledgers import LedgerSpec
from tests.support.spawn import spawn_module

JOBS = 40
pytestmark = pytest.mark.slow


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await spawn_module("tests.guard._worker", *args)


async def _worker(sandbox: Sandbox, spec: LedgerSpec, lease_ttl: float = 1.0) -> asyncio.subprocess.Process:
    return await _spawn(sandbox.base_url, sandbox.api_key, *spec.argv(), str(JOBS), str(lease_ttl))


@asynccontextmanager
async def _client(sandbox: Sandbox, spec: LedgerSpec, **options: object) -> AsyncIterator[ShakescoClient]:
    ledger = spec.make(sandbox.api_key)
    try:
        async with ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger=ledger, **options) as client:  # type: ignore[arg-type]
            yield client
    finally:
        await ledger.close()


async def _setup(sandbox: Sandbox, spec: LedgerSpec) -> None:
    async with _client(sandbox, spec) as client:
        await client.set_event_details("purchase", 5, False)


def _applied_once(sandbox: Sandbox) -> None:
    per_key = Counter(w.idempotency_key for w in sandbox.applied_writes("/claim-tokens"))
    assert sorted(per_key) == sorted(f"job-{i}" for i in range(JOBS))
    assert set(per_key.values()) == {1}, {k: n for k, n in per_key.items() if n != 1}
    for c in range(4):
        assert sandbox.business().customer(f"cust-{c}").balance == 5 * (JOBS // 4)


@pytest.mark.parametrize("run", range(3))
async def test_sigkill_at_random_moments_then_recover(ledger_spec: LedgerSpec, run: int) -> None:
    rng = random.Random(run)
    async with Sandbox(seed=run) as sandbox:
        await _setup(sandbox, ledger_spec)
        sandbox.faults.add("delay", endpoint="/claim-tokens", delay=0.05, probability=0.3)
        sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", probability=0.1)
        child = await _worker(sandbox, ledger_spec)
        # Kill it mid-way: after a random number of its writes reached the API.
        threshold = rng.randint(1, JOBS - 5)
        while len(sandbox.applied_writes("/claim-tokens")) < threshold:  # noqa: ASYNC110 (polls another process)
            await asyncio.sleep(0.001)
        await asyncio.sleep(rng.uniform(0, 0.01))
        os.kill(child.pid, signal.SIGKILL)
        await child.communicate()
        assert child.returncode == -signal.SIGKILL
        sandbox.faults.clear()
        # The worker comes back and replays its whole queue with the same keys (and its
        # settings: a write it was sending when killed is judged once it cannot be on its way).
        settings = GuardSettings(verify_delay=0.0, lease_wait=30.0)
        async with _client(sandbox, ledger_spec, timeout=2.0, guard=settings) as client:
            await asyncio.gather(
                *(client.claim_tokens("purchase", f"cust-{i % 4}", idempotency_key=f"job-{i}") for i in range(JOBS))
            )
            counts = await client.ledger.counts()
        assert counts[EntryState.COMMITTED] == JOBS + 1
        _applied_once(sandbox)


async def test_processes_sharing_one_ledger_apply_each_key_once(ledger_spec: LedgerSpec) -> None:
    async with Sandbox(seed=7) as sandbox:
        await _setup(sandbox, ledger_spec)
        sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", probability=0.1)
        sandbox.faults.add("fail_before_commit", endpoint="/claim-tokens", probability=0.1)
        children = [await _worker(sandbox, ledger_spec, lease_ttl=10.0) for _ in range(3)]
        outputs = [await child.communicate() for child in children]
        for child, (out, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, err.decode()
            assert b"unknown=0" in out
        _applied_once(sandbox)


async def test_the_lease_of_a_killed_process_ends_with_it(ledger_spec: LedgerSpec) -> None:
    async with Sandbox() as sandbox:
        await _setup(sandbox, ledger_spec)
        # A lease of five minutes, as the defaults give one.
        child = await _spawn("hold", sandbox.api_key, *ledger_spec.argv(), "victim", "300")
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"held"
        async with _client(sandbox, ledger_spec, guard=GuardSettings(verify_delay=0.0, lease_wait=0.3)) as client:
            with pytest.raises(Exception, match="leased by another process"):
                await client.upgrade_to_shakesco("victim", 1)  # alive: it really holds the lease
        os.kill(child.pid, signal.SIGKILL)
        await child.communicate()
        async with _client(sandbox, ledger_spec, guard=GuardSettings(verify_delay=0.0, lease_wait=10.0)) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await client.upgrade_to_shakesco("victim", 1)
            waited = loop.time() - started
        # SQLite: its process is seen to have exited; PostgreSQL: the lock died with the connection.
        assert waited < 3.0
        assert sandbox.business().customer("victim").balance == 1
