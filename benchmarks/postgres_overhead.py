"""Guard overhead with the shared PostgreSQL ledger: guarded claim_tokens writes/s over raw, at concurrency 64.

    python benchmarks/postgres_overhead.py [--smoke]

Starts a throwaway PostgreSQL cluster on loopback (or uses SHAKESCO_TEST_POSTGRES_DSN).
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_client, median_ratio, parser, verdict
from guard_overhead import guarded_run, raw_run

from shakesco_async.sandbox import Sandbox
from tests.support.postgres import postgres_cluster

CONCURRENCY = 64


async def main(dsn: str, smoke: bool) -> int:
    rounds, count = (1, 60) if smoke else (5, 600)
    rates = []
    async with Sandbox() as sandbox:
        sandbox.business().set_event_details("signup", Decimal(1), True)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session,
            bench_client(sandbox, dsn) as client,
        ):
            for r in range(rounds):
                raw = await raw_run(sandbox, session, "signup", f"pg{r}", count, CONCURRENCY)
                guarded = await guarded_run(client, "signup", f"pg{r}", count, CONCURRENCY)
                rates.append((guarded.rate, raw.rate))
                print(f"round {r}: raw {raw.rate:.0f}/s, guarded (PostgreSQL ledger) {guarded.rate:.0f}/s")
    return verdict([("postgres c64 guarded/raw", median_ratio(rates), 0.0)], smoke)


if __name__ == "__main__":
    smoke = parser(__doc__ or "").parse_args().smoke
    with postgres_cluster() as dsn:
        sys.exit(asyncio.run(main(dsn, smoke)))
