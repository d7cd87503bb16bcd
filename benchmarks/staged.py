"""Staged writes end to end (staged in the application's transaction → applied at the API)
beside direct guarded calls, with a real round trip.

    python benchmarks/staged.py [--smoke] [--read-ms 20]

The sandbox runs in a process of its own, answering every request after ``--read-ms``
(as ``latency.py``'s symmetric profile). Each round, side by side, ``--concurrency``
handlers sharing 640 writes a round (64 with ``--smoke``):

- direct (judged): the handler the issue describes, without staging: it commits its
  order row (``client.transaction``), then awaits ``claim_tokens`` (the write guard, its
  SQLite ledger at synchronous=FULL);
- bare (recorded): ``claim_tokens`` alone, no order row, no transaction of the
  application's;
- staged: the order row and the staged claim in one ``client.transaction`` while the
  sender (as many writes at once as there are handlers) delivers; the clock stops when
  ``result_of`` has every write's receipt.

The handlers share one aiosqlite connection to the ledger's file, as the FastAPI example
does. Rates are writes per second; ratios are medians of per-round ratios (target 0.9 of
direct).
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


async def direct(
    client: ShakescoClient, db: aiosqlite.Connection | None, tag: str, count: int, concurrency: int
) -> float:
    """Guarded calls; with ``db``, each after its handler commits its order row (as staged does)."""
    queue = iter(range(count))

    async def lane() -> None:
        for i in queue:
            if db is not None:
                async with client.transaction(db):
                    await db.execute("INSERT INTO orders (id) VALUES (?)", (f"{tag}-{i}",))
            await client.claim_tokens("purchase", f"{tag}-{i}")

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def staged(client: ShakescoClient, db: aiosqlite.Connection, tag: str, count: int, concurrency: int) -> float:
    queue = iter(range(count))
    keys: list[str] = []

    async def handler() -> None:
        for i in queue:
            async with client.transaction(db) as staged:
                await db.execute("INSERT INTO orders (id) VALUES (?)", (f"{tag}-{i}",))
                keys.append(await staged.claim_tokens("purchase", f"{tag}-{i}"))

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
                ratios, bare = [], []
                print(f"reads and writes answered after {args.read_ms:g} ms; {args.concurrency} handlers")
                print(f"{'round':<7}{'direct w/s':>12}{'bare calls':>12}{'staged w/s':>12}{'ratio':>8}{'/bare':>8}")
                for r in range(rounds):  # alternating order, side by side
                    contenders = {
                        "direct": lambda r=r: direct(client, db, f"d{r}", count, args.concurrency),
                        "bare": lambda r=r: direct(client, None, f"b{r}", count, args.concurrency),
                        "staged": lambda r=r: staged(client, db, f"s{r}", count, args.concurrency),
                    }
                    order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
                    rate = {name: await contenders[name]() for name in order}
                    ratios.append(rate["staged"] / rate["direct"])
                    bare.append(rate["staged"] / rate["bare"])
                    print(
                        f"{r:<7}{rate['direct']:>12.1f}{rate['bare']:>12.1f}{rate['staged']:>12.1f}"
                        f"{ratios[-1]:>8.2f}{bare[-1]:>8.2f}"
                    )
                await db.close()
    finally:
        proc.terminate()
        await proc.wait()
    print(f"staged / bare calls (recorded): {statistics.median(bare):.2f}")
    check = (f"staged/direct c{args.concurrency}", statistics.median(ratios), TARGET)
    return verdict([check], args.smoke)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
