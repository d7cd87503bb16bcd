"""Guard overhead: guarded claim_tokens writes/s over raw aiohttp POSTs of the same requests.

    python benchmarks/guard_overhead.py [--smoke]

Both run against one in-process sandbox on 127.0.0.1, in alternating rounds, so each
ratio compares measurements taken side by side.

The targets are judged on claims of a one-time event (a sign-up bonus per customer):
``/has-claimed-event`` settles a lost answer, so the guard's only cost before the send is
one durable commit. Claims of a repeatable event are measured too and recorded: they
need a read of ``total_earned`` before each send, a second request to the API.

For the judged cases two more contenders run in the same rounds, the floors (see
``_floor.py``): raw POSTs behind the least a guard must do, a group-committed durable
intent record before each send, kept as a row in SQLite (the store this SDK uses) or as
a line appended to a file (the least any durable record costs). ``floor/raw`` is the
best a guard on that store can reach here; ``guarded/floor`` is how close this one comes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from decimal import Decimal
from functools import partial
from pathlib import Path

import aiohttp
from _common import Run, bench_client, measure, median_ratio, parser, verdict
from _floor import Floor, JournalFloor, SQLiteFloor

from shakesco_async import ShakescoClient
from shakesco_async.sandbox import Sandbox

# (event, synchronous, concurrency) -> target; 0 = recorded only
CASES = {
    ("signup", "FULL", 64): 0.85,
    ("signup", "FULL", 1): 0.45,
    ("signup", "NORMAL", 64): 0.0,
    ("signup", "NORMAL", 1): 0.0,
    ("purchase", "FULL", 64): 0.0,
    ("purchase", "FULL", 1): 0.0,
}
EVENTS = {"signup": True, "purchase": False}  # name -> one-time
FLOORS = {"sqlite": "durable SQLite row", "journal": "durable line in a file"}


async def raw_run(
    sandbox: Sandbox, session: aiohttp.ClientSession, event: str, tag: str, count: int, concurrency: int
) -> Run:
    headers = {"Authorization": f"Bearer {sandbox.api_key}", "Content-Type": "application/json"}
    url = sandbox.base_url + "/claim-tokens"

    async def post(i: int) -> None:
        body = json.dumps({"event_name": event, "customer_ref": f"raw-{tag}-{i}"})
        async with session.post(url, data=body, headers=headers) as resp:
            assert resp.status == 200, resp.status
            await resp.read()

    return await measure(post, count, concurrency)


async def floor_run(
    sandbox: Sandbox,
    session: aiohttp.ClientSession,
    log: Floor,
    event: str,
    tag: str,
    count: int,
    concurrency: int,
) -> Run:
    headers = {"Authorization": f"Bearer {sandbox.api_key}", "Content-Type": "application/json"}
    url = sandbox.base_url + "/claim-tokens"

    async def post(i: int) -> None:
        key = f"floor-{tag}-{i}"
        params = {"event_name": event, "customer_ref": key}
        await log.record(key, params)
        async with session.post(url, data=json.dumps(params), headers=headers) as resp:
            assert resp.status == 200, resp.status
            answer = json.loads(await resp.read())
        log.settle(key, answer["tx_hash"])

    return await measure(post, count, concurrency)


async def guarded_run(client: ShakescoClient, event: str, tag: str, count: int, concurrency: int) -> Run:
    async def claim(i: int) -> None:
        await client.claim_tokens(event, f"g-{tag}-{i}")

    return await measure(claim, count, concurrency)


async def main(smoke: bool) -> int:
    rounds, count = (1, 40) if smoke else (5, 600)
    checks: list[tuple[str, float, float]] = []
    bounds: list[tuple[str, float, float]] = []  # recorded only
    async with Sandbox() as sandbox:
        for name, one_time in EVENTS.items():
            sandbox.business().set_event_details(name, Decimal(1), one_time)
        with tempfile.TemporaryDirectory() as tmp:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
                floors: dict[str, Floor] = {
                    "sqlite": SQLiteFloor(Path(tmp) / "floor.sqlite3"),
                    "journal": JournalFloor(Path(tmp) / "floor.log"),
                }
                for sync in ("FULL", "NORMAL"):
                    async with bench_client(sandbox, Path(tmp) / f"bench-{sync}.sqlite3", sync) as client:
                        for (event, case_sync, concurrency), target in CASES.items():
                            if case_sync != sync:
                                continue
                            n = count if concurrency > 1 else count // 3
                            rates, p50s, p99s, cpus = [], [], [], []
                            bounded: dict[str, list[tuple[float, float, float]]] = {name: [] for name in floors}
                            for r in range(rounds):
                                tag = f"{event}{sync}{concurrency}{r}"
                                contenders: dict[str, Callable[[], Awaitable[Run]]] = {
                                    "raw": partial(raw_run, sandbox, session, event, tag, n, concurrency),
                                    "guarded": partial(guarded_run, client, event, tag, n, concurrency),
                                }
                                for name, log in floors.items() if target else ():
                                    contenders[name] = partial(
                                        floor_run, sandbox, session, log, event, name + tag, n, concurrency
                                    )
                                # Each round starts with the next contender, so a drifting machine favours none.
                                order = list(contenders)
                                order = order[r % len(order) :] + order[: r % len(order)]
                                runs = {name: await contenders[name]() for name in order}
                                raw, guarded = runs["raw"], runs["guarded"]
                                for name in floors if target else ():
                                    bounded[name].append((runs[name].rate, raw.rate, guarded.rate))
                                rates.append((guarded.rate, raw.rate))
                                p50s.append((raw.p50, guarded.p50))
                                p99s.append((raw.p99, guarded.p99))
                                cpus.append((raw.cpu, guarded.cpu))
                            ratio = median_ratio(rates)
                            kind = "one-time" if EVENTS[event] else "repeatable"
                            print(
                                f"{kind:<10} synchronous={sync:<6} concurrency={concurrency:>2}:"
                                f" guarded/raw = {ratio:.2f}"
                                f" (raw {rates[-1][1]:.0f}/s, guarded {rates[-1][0]:.0f}/s);"
                                f" latency raw/guarded p50 = {median_ratio(p50s):.2f}, p99 = {median_ratio(p99s):.2f};"
                                f" CPU per write raw/guarded = {median_ratio(cpus):.2f}"
                                f" ({cpus[-1][0] * 1e6:.0f} µs, {cpus[-1][1] * 1e6:.0f} µs)"
                            )
                            checks.append((f"{kind} {sync} c{concurrency}", ratio, target))
                            for name, runs in bounded.items() if target else ():
                                bound = median_ratio([(f, raw) for f, raw, _ in runs])
                                near = median_ratio([(g, f) for f, _, g in runs])
                                print(
                                    f"{'':<10} floor, {FLOORS[name]} + raw POST:"
                                    f" floor/raw = {bound:.2f}; guarded/floor = {near:.2f}"
                                )
                                bounds.append((f"{name} floor/raw c{concurrency}", bound, 0.0))
                                bounds.append((f"guarded/{name} floor c{concurrency}", near, 0.0))
                for log in floors.values():
                    await log.aclose()
    return verdict([c for c in checks if c[2] > 0] + [c for c in checks if c[2] == 0] + bounds, smoke)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parser(__doc__ or "").parse_args().smoke)))
