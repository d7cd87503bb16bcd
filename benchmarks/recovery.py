"""Recovery: time to reconcile N in-doubt entries over the time of the reads it must make.

    python benchmarks/recovery.py [--smoke] [--postgres]

Each entry is a claim whose answer was lost after the API applied it; reconcile must read
total_earned once per entry. The baseline makes exactly those reads with raw aiohttp at
the same concurrency, timed just before and just after the reconcile (the mean of the two).
The target is judged on the default SQLite ledger; ``--postgres`` runs the same on the
PostgreSQL ledger (a throwaway cluster, or SHAKESCO_TEST_POSTGRES_DSN) and only records it.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
from _common import bench_client, measure, parser, verdict

from shakesco_async import ShakescoClient
from shakesco_async.endpoints.rewards import CLAIM_TOKENS
from shakesco_async.guard._outcome import canonical
from shakesco_async.ledger import EntryState, Intent, KeySource, Settlement
from shakesco_async.sandbox import Sandbox

CONCURRENCY = 16


async def leave_in_doubt(client: ShakescoClient, sandbox: Sandbox, count: int, tag: str = "") -> None:
    """As if each claim was sent and applied, its answer lost, and the reads that would have
    told failed too: state `in_doubt`, left for reconcile."""
    business = sandbox.business()

    async def one(i: int) -> None:
        ref = f"cust-{tag}{i}"
        wire = CLAIM_TOKENS.prepare({"event_name": "purchase", "customer_ref": ref})
        intent = Intent(f"lost-{tag}{i}", CLAIM_TOKENS.path, canonical(wire), (ref,), KeySource.CALLER)
        await client.ledger.begin(intent, owner="crashed", lease_ttl=0.0)
        # Its call has ended and given its leases back.
        await client.ledger.release(intent.leases, owner="crashed")
        snapshot = {"total_earned": "0.0"}
        await client.ledger.mark_sending(intent.key, snapshot=snapshot, owner="crashed", customers=(), lease_ttl=0)
        business.claim_tokens("purchase", ref)  # the API applied it; the answer never came
        await client.ledger.settle(intent.key, Settlement(EntryState.IN_DOUBT, reason="the reads failed too"))

    await asyncio.gather(*(one(i) for i in range(count)))


async def main(smoke: bool, ledger: str | None = None) -> int:
    rounds, count = (1, 300) if smoke else (3, 10_000)
    ratios = []
    async with Sandbox() as sandbox:
        sandbox.business().set_event_details("purchase", Decimal(1), False)
        headers = {"Authorization": f"Bearer {sandbox.api_key}"}
        with tempfile.TemporaryDirectory() as tmp:
            async with (
                bench_client(sandbox, ledger or Path(tmp) / "recovery.sqlite3") as client,
                aiohttp.ClientSession() as session,
            ):
                for r in range(rounds):
                    await leave_in_doubt(client, sandbox, count, tag=f"r{r}-")

                    async def read(i: int, r: int = r) -> None:
                        params = {"customer_ref": f"cust-r{r}-{i}"}
                        url = sandbox.base_url + "/total-earned"
                        async with session.get(url, params=params, headers=headers) as rsp:
                            await rsp.read()

                    # The reads are timed before and after, and averaged: this machine drifts
                    # over seconds, and bracketing cancels a steady drift.
                    before = await measure(read, count, CONCURRENCY)
                    started = time.perf_counter()
                    summary = await client.reconcile(older_than=0, concurrency=CONCURRENCY)
                    elapsed = time.perf_counter() - started
                    after = await measure(read, count, CONCURRENCY)
                    assert summary.counts["committed"] == count, summary.counts
                    reads_time = (count / before.rate + count / after.rate) / 2
                    ratios.append(elapsed / reads_time)
                    print(
                        f"round {r}: reconciled {count} entries in {elapsed:.2f}s;"
                        f" the {count} reads alone take {reads_time:.2f}s ({elapsed / reads_time:.2f}x)"
                    )
    ratio = statistics.median(ratios)
    if ledger is not None:
        return verdict([("postgres reads-time/reconcile-time", 1 / ratio, 0.0)], smoke)
    # The target is an upper bound on time, so compare its inverse against the lower bound.
    return verdict([("reads-time/reconcile-time", 1 / ratio, 1 / 1.5)], smoke)


if __name__ == "__main__":
    options = parser(__doc__ or "")
    options.add_argument("--postgres", action="store_true", help="on the PostgreSQL ledger (recorded, not judged)")
    args = options.parse_args()
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.support.postgres import postgres_cluster

        with postgres_cluster() as dsn:
            sys.exit(asyncio.run(main(args.smoke, dsn)))
    sys.exit(asyncio.run(main(args.smoke)))
