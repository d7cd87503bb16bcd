"""The guard's own CPU per write: the event loop's work, with every answer from memory.

    python benchmarks/guard_cpu.py [--smoke]

Each request the client makes is answered from memory (the sandbox's first answer to
each endpoint, kept), so no network, no server and no waiting is left: what remains on
the event loop's thread is the client's work. Side by side, in alternating rounds, at
concurrency 1 and 32: guarded one-time claims, unguarded reads through the same client
(`balance`), and the harness alone. A claim's CPU less a read's is the guard's own work
on the loop (its intent, its outcome, its ledger batches' hand-offs; at concurrency 1
also the intent's durable commit, which a write with no other in flight makes on the
loop's thread, the fsync's kernel time included); the other threads' CPU (the ledger's
statements and commits) is given beside it. Recorded, not judged: the
figures differ from machine to machine, and from day to day on a shared one.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import bench_client, parser, verdict

from shakesco_async import _transport
from shakesco_async.sandbox import Sandbox

Call = Callable[[str], Awaitable[object]]


def answer_from_memory() -> None:
    """Answer each (method, path) with its first 200 from then on (the measurement's only
    reach into the SDK's insides: its one place that talks to the network)."""
    send = _transport.Transport.send
    kept: dict[tuple[str, str], Any] = {}

    async def remembered(self: _transport.Transport, method: str, path: str, **kwargs: Any) -> Any:
        if (known := kept.get((method, path))) is not None:
            await asyncio.sleep(0)  # an answer still arrives on a later turn of the loop
            return known
        response = await send(self, method, path, **kwargs)
        if response.status == 200:
            kept[(method, path)] = response
        return response

    _transport.Transport.send = remembered  # type: ignore[method-assign]


async def cpu_per_call(call: Call, tag: str, count: int, concurrency: int) -> tuple[float, float]:
    """(the loop thread's CPU, the other threads') per call, in seconds."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await call(f"{tag}-{i}")

    loop_cpu, all_cpu = time.thread_time(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(count)))
    loop_cpu, all_cpu = time.thread_time() - loop_cpu, time.process_time() - all_cpu
    return loop_cpu / count, (all_cpu - loop_cpu) / count


async def main() -> int:
    args = parser(__doc__ or "").parse_args()
    rounds, counts = (1, {1: 20, 32: 64}) if args.smoke else (5, {1: 1000, 32: 3000})
    answer_from_memory()
    checks: list[tuple[str, float, float]] = []
    async with Sandbox() as sandbox:
        with tempfile.TemporaryDirectory() as tmp:
            async with bench_client(sandbox, Path(tmp) / "ledger.sqlite3") as client:
                await client.set_event_details("signup", 5, True)
                await client.claim_tokens("signup", "warm")  # every answer is in memory from here on
                await client.balance("warm")

                async def nothing(ref: str) -> None:
                    await asyncio.sleep(0)

                calls: dict[str, Call] = {
                    "claim (guarded)": lambda ref: client.claim_tokens("signup", ref),
                    "read (unguarded)": client.balance,
                    "harness": nothing,
                }
                print(f"{'call':<18}{'conc':>5}{'loop µs':>10}{'others µs':>11}")
                for concurrency, count in counts.items():
                    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
                    for r in range(rounds):
                        for name in calls if r % 2 == 0 else reversed(list(calls)):
                            seen[name].append(
                                await cpu_per_call(calls[name], f"{name[:5]}{concurrency}-{r}", count, concurrency)
                            )
                    loop = {n: statistics.median(x for x, _ in s) * 1e6 for n, s in seen.items()}
                    others = {n: statistics.median(y for _, y in s) * 1e6 for n, s in seen.items()}
                    for name in calls:
                        print(f"{name:<18}{concurrency:>5}{loop[name]:>10.1f}{others[name]:>11.1f}")
                    own = loop["claim (guarded)"] - loop["read (unguarded)"]
                    print(
                        f"recorded: c{concurrency} the guard's own CPU per write on the loop {own:.0f} µs"
                        f" (a claim {loop['claim (guarded)']:.0f} µs, a read {loop['read (unguarded)']:.0f} µs),"
                        f" and {others['claim (guarded)']:.0f} µs on other threads"
                    )
                    checks.append((f"c{concurrency} guard µs on the loop", own, 0.0))
    return verdict(checks, args.smoke)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
