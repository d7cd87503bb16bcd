"""Recovery: time to reconcile N in-doubt entries over the time of the reads it must make.

    python benchmarks/recovery.py [--smoke]

Each entry is a claim whose answer was lost after the API applied it; reconcile must read
total_earned once per entry. The baseline makes exactly those reads with raw aiohttp at
the same concurrency.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
from _common import measure, parser, verdict

from shakesco_async import GuardSettings, ShakescoClient
from shakesco_async.endpoints.rewards import CLAIM_TOKENS
from shakesco_async.guard._outcome import canonical
from shakesco_async.ledger import Intent, KeySource
from shakesco_async.sandbox import Sandbox

CONCURRENCY = 16


async def leave_in_doubt(client: ShakescoClient, sandbox: Sandbox, count: int) -> None:
    """As if a process crashed after each claim was sent and applied: state `sending`."""
    business = sandbox.business()

    async def one(i: int) -> None:
        ref = f"cust-{i}"
        wire = CLAIM_TOKENS.prepare({"event_name": "purchase", "customer_ref": ref})
        intent = Intent(f"lost-{i}", CLAIM_TOKENS.path, canonical(wire), (ref,), KeySource.CALLER)
        await client.ledger.begin(intent, owner="crashed", lease_ttl=0.0)
        snapshot = {"total_earned": "0.0"}
        await client.ledger.mark_sending(intent.key, snapshot=snapshot, owner="crashed", customers=(), lease_ttl=0)
        business.claim_tokens("purchase", ref)  # the API applied it; the answer never came

    await asyncio.gather(*(one(i) for i in range(count)))


async def main(smoke: bool) -> int:
    count = 300 if smoke else 10_000
    async with Sandbox() as sandbox:
        sandbox.business().set_event_details("purchase", Decimal(1), False)
        headers = {"Authorization": f"Bearer {sandbox.api_key}"}
        with tempfile.TemporaryDirectory() as tmp:
            async with (
                ShakescoClient(
                    sandbox.api_key,
                    base_url=sandbox.base_url,
                    ledger=Path(tmp) / "recovery.sqlite3",
                    guard=GuardSettings(verify_delay=0.0),
                ) as client,
                aiohttp.ClientSession() as session,
            ):
                await leave_in_doubt(client, sandbox, count)

                async def read(i: int) -> None:
                    params = {"customer_ref": f"cust-{i}"}
                    async with session.get(sandbox.base_url + "/total-earned", params=params, headers=headers) as r:
                        await r.read()

                reads = await measure(read, count, CONCURRENCY)
                started = time.perf_counter()
                summary = await client.reconcile(older_than=0, concurrency=CONCURRENCY)
                elapsed = time.perf_counter() - started
    assert summary.counts["committed"] == count, summary.counts
    reads_time = count / reads.rate
    ratio = elapsed / reads_time
    print(f"reconciled {count} entries in {elapsed:.2f}s; the {count} reads alone take {reads_time:.2f}s")
    # The target is an upper bound on time, so compare its inverse against the lower bound.
    return verdict([("reads-time/reconcile-time", 1 / ratio, 1 / 1.5)], smoke)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parser(__doc__ or "").parse_args().smoke)))
