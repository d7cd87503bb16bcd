"""Crashes and many processes: SIGKILL at random moments, several processes on one ledger."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from shakesco_async import GuardSettings, ShakescoClient
from shakesco_async.ledger import EntryState
from shakesco_async.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
JOBS = 40
pytestmark = pytest.mark.slow


async def _spawn(sandbox: Sandbox, ledger: Path, lease_ttl: float = 1.0) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.guard._worker",
        sandbox.base_url,
        sandbox.api_key,
        str(ledger),
        str(JOBS),
        str(lease_ttl),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _setup(sandbox: Sandbox, ledger: Path) -> None:
    async with ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger=ledger) as client:
        await client.set_event_details("purchase", 5, False)


def _applied_once(sandbox: Sandbox) -> None:
    per_key = Counter(w.idempotency_key for w in sandbox.applied_writes("/claim-tokens"))
    assert sorted(per_key) == sorted(f"job-{i}" for i in range(JOBS))
    assert set(per_key.values()) == {1}, {k: n for k, n in per_key.items() if n != 1}
    for c in range(4):
        assert sandbox.business().customer(f"cust-{c}").balance == 5 * (JOBS // 4)


@pytest.mark.parametrize("run", range(4))
async def test_sigkill_at_random_moments_then_recover(tmp_path: Path, run: int) -> None:
    rng = random.Random(run)
    async with Sandbox(seed=run) as sandbox:
        ledger = tmp_path / "crash.sqlite3"
        await _setup(sandbox, ledger)
        sandbox.faults.add("delay", endpoint="/claim-tokens", delay=0.05, probability=0.3)
        sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", probability=0.1)
        child = await _spawn(sandbox, ledger)
        # Kill it mid-way: after a random number of its writes reached the API.
        threshold = rng.randint(1, JOBS - 5)
        while len(sandbox.applied_writes("/claim-tokens")) < threshold:  # noqa: ASYNC110 (polls another process)
            await asyncio.sleep(0.001)
        await asyncio.sleep(rng.uniform(0, 0.01))
        os.kill(child.pid, signal.SIGKILL)
        await child.communicate()
        assert child.returncode == -signal.SIGKILL
        sandbox.faults.clear()
        # The worker comes back and replays its whole queue with the same keys.
        settings = GuardSettings(verify_delay=0.0, lease_wait=30.0)
        async with ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger=ledger, guard=settings) as client:
            await asyncio.gather(
                *(client.claim_tokens("purchase", f"cust-{i % 4}", idempotency_key=f"job-{i}") for i in range(JOBS))
            )
            counts = await client.ledger.counts()
        assert counts[EntryState.COMMITTED] == JOBS + 1
        _applied_once(sandbox)


async def test_processes_sharing_one_ledger_apply_each_key_once(tmp_path: Path) -> None:
    async with Sandbox(seed=7) as sandbox:
        ledger = tmp_path / "shared.sqlite3"
        await _setup(sandbox, ledger)
        sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", probability=0.1)
        sandbox.faults.add("fail_before_commit", endpoint="/claim-tokens", probability=0.1)
        children = [await _spawn(sandbox, ledger, lease_ttl=10.0) for _ in range(3)]
        outputs = [await child.communicate() for child in children]
        for child, (out, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, err.decode()
            assert b"unknown=0" in out
        _applied_once(sandbox)


async def test_a_dead_process_lease_expires(tmp_path: Path) -> None:
    from shakesco_async.ledger import SQLiteLedger

    async with Sandbox() as sandbox:
        ledger = tmp_path / "lease.sqlite3"
        async with ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger=ledger) as client:
            business = client.ledger.business
        dead = SQLiteLedger(ledger, business=business)
        assert await dead.acquire(["victim"], owner="dead-process", lease_ttl=0.5) is None
        await dead.close()
        settings = GuardSettings(verify_delay=0.0, lease_wait=5.0)
        async with ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger=ledger, guard=settings) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await client.upgrade_to_shakesco("victim", 1)
            waited = loop.time() - started
        assert 0.3 < waited < 3.0
