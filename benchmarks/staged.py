"""Staged writes end to end (staged in the application's transaction → applied at the API)
beside direct guarded calls, with a real round trip.

    python benchmarks/staged.py [--smoke] [--read-ms 20]

The sandbox runs in a process of its own, answering every request after ``--read-ms``
(as ``latency.py``'s symmetric profile). Each round, side by side:

- direct: ``claim_tokens`` awaited by ``--concurrency`` handlers (the write guard, its
  SQLite ledger at synchronous=FULL);
- staged: as many handlers, each committing a transaction of its own (an order row and
  the staged claim) while the sender delivers; the clock stops when ``result_of`` has
  every write's receipt. The handlers share one connection to the ledger's file, one
  transaction at a time (an ``asyncio.Lock``), as the FastAPI example does: SQLite has
  one writer, and connections that wait for it in its busy handler sleep coarsely.

Rates are writes per second; the ratio is the median of per-round ratios (target 0.9).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiosqlite
from _common import parser, verdict
from latency import start_sandbox

from shakesco_async import GuardSettings, ShakescoClient

TARGET = 0.9


async def direct(client: ShakescoClient, tag: str, count: int, concurrency: int) -> float:
    queue = iter(range(count))

    async def lane() -> None:
        for i in queue:
            await client.claim_tokens("purchase", f"{tag}-{i}")

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def staged(client: ShakescoClient, db: aiosqlite.Connection, tag: str, count: int, concurrency: int) -> float:
    queue = iter(range(count))
    keys: list[str] = []
    one_at_a_time = asyncio.Lock()

    async def handler() -> None:
        for i in queue:
            async with one_at_a_time:
                await db.execute("BEGIN IMMEDIATE")
                await db.execute("INSERT INTO orders (id) VALUES (?)", (f"{tag}-{i}",))
                keys.append(await client.staged(db).claim_tokens("purchase", f"{tag}-{i}"))
                await db.commit()

    started = time.perf_counter()
    await asyncio.gather(*(handler() for _ in range(concurrency)))
    await asyncio.gather(*(client.result_of(key) for key in keys))
    return count / (time.perf_counter() - started)


async def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--read-ms", type=float, default=20.0, help="round trip of every request (default 20)")
    p.add_argument("--concurrency", type=int, default=32, help="handlers at once (default 32)")
    args = p.parse_args()
    rounds, count = (1, 64) if args.smoke else (4, 640)
    proc, base_url = await start_sandbox(args.read_ms, args.read_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "app.sqlite3"
            guard = GuardSettings(verify_delay=0.0)
            async with ShakescoClient("sk_sandbox_demo", base_url=base_url, ledger=path, guard=guard) as client:
                await client.set_event_details("purchase", 5, False)
                db = await aiosqlite.connect(path, isolation_level=None)
                await db.execute("PRAGMA busy_timeout = 30000")
                await db.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)")
                client.start_sender(poll=0.01, concurrency=args.concurrency)
                ratios = []
                print(f"reads and writes answered after {args.read_ms:g} ms; {args.concurrency} handlers")
                print(f"{'round':<7}{'direct w/s':>12}{'staged w/s':>12}{'ratio':>8}")
                for r in range(rounds):  # alternating order, side by side
                    if r % 2 == 0:
                        d = await direct(client, f"d{r}", count, args.concurrency)
                        s = await staged(client, db, f"s{r}", count, args.concurrency)
                    else:
                        s = await staged(client, db, f"s{r}", count, args.concurrency)
                        d = await direct(client, f"d{r}", count, args.concurrency)
                    ratios.append(s / d)
                    print(f"{r:<7}{d:>12.1f}{s:>12.1f}{s / d:>8.2f}")
                await db.close()
    finally:
        proc.terminate()
        await proc.wait()
    check = (f"staged/direct c{args.concurrency}", statistics.median(ratios), TARGET)
    return verdict([check], args.smoke)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
