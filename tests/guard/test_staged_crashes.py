"""Staged writes across crashes: every committed order credited exactly once, no rolled-back one ever.

The application (``_staging_app``) is killed with SIGKILL right after a commit, before
anything could send what it staged, and at random moments while its sender works; then
it comes back, finishes its orders, and two sender processes finish the sending at once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from collections import Counter

import pytest

from shakesco_async import GuardSettings, ShakescoClient
from shakesco_async.sandbox import Sandbox
from tests.guard._staging_app import rolled_back
from tests.support.ledgers import LedgerSpec
from tests.support.spawn import spawn_module

ORDERS = 40


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await spawn_module("tests.guard._staging_app", *args)


async def _setup(sandbox: Sandbox, spec: LedgerSpec, table: str) -> None:
    ledger = spec.make(sandbox.api_key)
    async with ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=ledger, guard=GuardSettings()
    ) as client:
        await client.set_event_details("purchase", 5, False)  # the ledger's schema is made too
    await ledger.close()
    if spec.backend == "sqlite":
        import sqlite3

        db = sqlite3.connect(spec.location)
        with db:
            db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
        db.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(spec.location)
        await conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY)")
        await conn.close()


async def _until_order(child: asyncio.subprocess.Process, at_least: int) -> None:
    """Read the app's progress until it has taken ``at_least`` orders this run (or exited)."""
    assert child.stdout is not None
    seen = 0
    while seen < at_least:
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        if not line:
            return
        seen += line.startswith(b"order ")


async def _orders_in(spec: LedgerSpec, table: str) -> list[int]:
    if spec.backend == "sqlite":
        import sqlite3

        db = sqlite3.connect(spec.location)
        rows = db.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()
        db.close()
        return [row[0] for row in rows]
    import asyncpg

    conn = await asyncpg.connect(spec.location)
    rows = await conn.fetch(f"SELECT id FROM {table} ORDER BY id")
    await conn.close()
    return [row[0] for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1])
async def test_every_committed_order_is_credited_once_whenever_the_application_dies(
    ledger_spec: LedgerSpec, seed: int
) -> None:
    rng = random.Random(seed)
    table = f"orders_{uuid.uuid4().hex[:8]}"
    async with Sandbox(seed=seed) as sandbox:
        await _setup(sandbox, ledger_spec, table)
        sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", probability=0.1)
        sandbox.faults.add("delay", endpoint="/claim-tokens", delay=0.05, probability=0.2)
        args = [sandbox.base_url, sandbox.api_key, *ledger_spec.argv(), table, str(ORDERS)]

        # Dead right after a commit, before anything could send it.
        child = await _spawn("app", *args, "2")
        await child.communicate()
        assert child.returncode == -signal.SIGKILL
        assert await _orders_in(ledger_spec, table) == [0, 1, 2]
        assert sandbox.applied_writes("/claim-tokens") == []

        # Killed at random moments while its sender works.
        for _ in range(2):
            child = await _spawn("app", *args)
            await _until_order(child, rng.randint(1, 8))
            await asyncio.sleep(rng.uniform(0, 0.05))
            if child.returncode is None:
                os.kill(child.pid, signal.SIGKILL)
            await child.communicate()

        # Back for good: the rest of the orders; then two senders finish at once.
        child = await _spawn("app", *args)
        _, err = await child.communicate()
        assert child.returncode == 0, err.decode()
        sandbox.faults.clear()
        senders = [await _spawn("sender", *args) for _ in range(2)]
        for sender in senders:
            out, err = await asyncio.wait_for(sender.communicate(), 120)
            assert sender.returncode == 0, err.decode()
            assert b"all sent" in out

        committed = [n for n in range(ORDERS) if not rolled_back(n)]
        assert await _orders_in(ledger_spec, table) == committed
        applied = Counter(w.idempotency_key for w in sandbox.applied_writes("/claim-tokens"))
        assert applied == Counter(f"order-{n}" for n in committed)  # each once; none rolled back
