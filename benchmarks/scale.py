"""Scale: ledger insert and key-lookup rates at 10k vs 1M rows; client RSS over many writes.

python benchmarks/scale.py [--smoke]
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from _common import bench_client, median_ratio, parser, verdict

from shakesco_async.ledger import Intent, KeySource, SQLiteLedger
from shakesco_async.sandbox import Sandbox

BATCH = 256


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def fill(ledger: SQLiteLedger, start: int, stop: int) -> float:
    """Insert intents start..stop, BATCH at a time; returns inserts per second."""
    began = time.perf_counter()
    for chunk in range(start, stop, BATCH):
        await asyncio.gather(
            *(
                ledger.begin(
                    Intent(f"k{i}", "/claim-tokens", {"customer_ref": f"c{i}"}, (f"c{i}",), KeySource.CALLER),
                    owner="bench",
                    lease_ttl=0.0,
                )
                for i in range(chunk, min(stop, chunk + BATCH))
            )
        )
    return (stop - start) / (time.perf_counter() - began)


async def lookups(ledger: SQLiteLedger, rows: int, count: int) -> float:
    keys = [f"k{random.randrange(rows)}" for _ in range(count)]
    began = time.perf_counter()
    for key in keys:
        assert await ledger.get(key) is not None
    return count / (time.perf_counter() - began)


async def ledger_scale(small: int, large: int, sample: int, rounds: int = 5) -> tuple[float, float]:
    """Two ledgers, one per size; inserts and lookups alternate between them, round by round."""
    with tempfile.TemporaryDirectory() as tmp:
        ledgers = [SQLiteLedger(Path(tmp) / f"scale-{n}.sqlite3", business="bench") for n in (small, large)]
        try:
            for ledger, rows in zip(ledgers, (small, large), strict=True):
                await fill(ledger, 0, rows - sample)
            step = sample // rounds
            inserts = []
            for r in range(rounds):
                at = (small - sample + r * step, large - sample + r * step)
                small_rate = await fill(ledgers[0], at[0], at[0] + step)
                large_rate = await fill(ledgers[1], at[1], at[1] + step)
                inserts.append((large_rate, small_rate))
            pairs = []
            for _ in range(rounds):
                small_rate = await lookups(ledgers[0], small, sample // rounds)
                large_rate = await lookups(ledgers[1], large, sample // rounds)
                pairs.append((large_rate, small_rate))
        finally:
            for ledger in ledgers:
                await ledger.close()
    print(
        f"insert/s (last round): {inserts[-1][1]:.0f} at {small} rows, {inserts[-1][0]:.0f} at {large} rows;"
        f" median ratio {median_ratio(inserts):.2f}"
    )
    print(
        f"lookup/s (last round): {pairs[-1][1]:.0f} at {small} rows, {pairs[-1][0]:.0f} at {large} rows;"
        f" median ratio {median_ratio(pairs):.2f}"
    )
    return median_ratio(inserts), median_ratio(pairs)


async def rss_growth(writes: int) -> float:
    async with Sandbox() as sandbox:
        sandbox.business().set_event_details("purchase", Decimal(1), False)
        with tempfile.TemporaryDirectory() as tmp:
            async with bench_client(sandbox, Path(tmp) / "rss.sqlite3") as client:
                warmup = min(2000, writes // 10)
                done = 0

                async def lane(n: int) -> None:
                    nonlocal done
                    for _ in range(n):
                        await client.claim_tokens("purchase", f"c{done % 500}")
                        done += 1
                        if done % 5000 == 0:
                            sandbox.applied.clear()  # the sandbox's log is not the client's memory

                await asyncio.gather(*(lane(warmup // 32) for _ in range(32)))
                before = rss_mb()
                await asyncio.gather(*(lane((writes - warmup) // 32) for _ in range(32)))
                after = rss_mb()
    print(f"RSS {before:.1f} MB -> {after:.1f} MB over {writes - warmup} guarded writes")
    return after - before


async def main(smoke: bool) -> int:
    small, large, sample = (2_000, 20_000, 500) if smoke else (10_000, 1_000_000, 5_000)
    insert_ratio, lookup_ratio = await ledger_scale(small, large, sample)
    growth = await rss_growth(2_000 if smoke else 100_000)
    return verdict(
        [
            ("insert large/small", insert_ratio, 0.8),
            ("lookup large/small", lookup_ratio, 0.8),
            ("20 MB - RSS growth (MB)", 20 - growth, 0.0),
        ],
        smoke,
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parser(__doc__ or "").parse_args().smoke)))
