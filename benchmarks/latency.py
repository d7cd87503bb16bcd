"""What the guard costs a user whose API answers over a network: guarded writes against raw
aiohttp, with a real round trip.

    python benchmarks/latency.py [--smoke] [--read-ms 20] [--write-extra-ms 0] [--postgres]

The sandbox runs in a process of its own and answers every read after ``--read-ms`` and
every write after ``--read-ms`` plus ``--write-extra-ms`` (the real API answers a write
only "once the change is fully recorded"). Per write kind and concurrency, three
contenders run side by side in alternating rounds:

- raw: the same POSTs through aiohttp, nothing else;
- floor (kinds whose proof needs the state before): a raw GET, then the raw POST, the
  least any client that can prove a lost answer must do; for a transfer, whose proof
  reads both customers' balances, also "floor2": both raw GETs at once, then the POST
  (recorded beside the judged ratio: what the guard adds beyond the reads it needs);
- guarded: the SDK, with its durable ledger (SQLite, synchronous=FULL; with
  ``--postgres``, a throwaway PostgreSQL cluster, the symmetric profile only, recorded);
- for one-time claims, the durable floors of ``_floor.py`` (recorded beside the judged
  ratio): the raw POST behind the least a guard must do, a group-committed durable intent
  record, as a SQLite row ("sqlite", the store this SDK uses) and as a line appended to a
  file ("journal", the least any durable record costs). ``floor/raw`` is the best any
  guard on that store reaches on this machine; ``guarded/floor`` how close this one comes.

A one-time claim is judged against raw (its proof, ``/has-claimed-event``, needs no read
before); the other kinds against their floor. Ratios are medians of per-round ratios of
writes per second; p50 and p99 are per write.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from _common import Run, measure, parser, verdict
from _floor import Floor, JournalFloor, SQLiteFloor

from shakesco_async import GuardSettings, ShakescoClient

Op = Callable[[int], Awaitable[object]]
ROOT = Path(__file__).resolve().parents[1]
KINDS = ("one_time_claim", "repeatable_claim", "redeem", "transfer")
DURABLE_FLOORS = ("sqlite", "journal")  # the contenders made from ``Contenders.floors``
READ_FIRST = {"repeatable_claim": "/total-earned", "redeem": "/total-spent", "transfer": "/balance"}
# (profile, kind, concurrency) -> target, against raw for one-time claims, else the floor
TARGETS = {
    ("symmetric", "one_time_claim", 1): 0.97,
    ("symmetric", "one_time_claim", 32): 0.95,
    **{("symmetric", k, c): 0.97 for k in READ_FIRST for c in (1, 32)},
    **{("slow_writes", "one_time_claim", c): 0.98 for c in (1, 32)},
    **{("slow_writes", k, c): 0.97 for k in READ_FIRST for c in (1, 32)},
}


async def start_sandbox(read_ms: float, write_ms: float) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shakesco_async",
        "sandbox",
        "--port",
        "0",
        "--fault",
        f"delay,on=read,delay={read_ms / 1000}",
        "--fault",
        f"delay,on=write,delay={write_ms / 1000}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    first = (await proc.stdout.readline()).decode()
    return proc, first.split(" on ")[1].strip()


class Contenders:
    """The ways of making one kind of write, each on customers of its own."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        client: ShakescoClient,
        floors: dict[str, Floor] | None = None,
    ) -> None:
        self.base_url, self.session, self.client = base_url, session, client
        self.floors = floors or {}
        self.headers = {"Authorization": "Bearer sk_sandbox_demo", "Content-Type": "application/json"}

    async def post(self, path: str, body: dict[str, object]) -> str:
        async with self.session.post(self.base_url + path, data=json.dumps(body), headers=self.headers) as resp:
            assert resp.status == 200, (path, resp.status, await resp.text())
            return await resp.text()

    async def get(self, path: str, **query: str) -> None:
        async with self.session.get(self.base_url + path, params=query, headers=self.headers) as resp:
            assert resp.status == 200, (path, resp.status)

    def body(self, kind: str, ref: str) -> tuple[str, dict[str, object]]:
        if kind == "one_time_claim":
            return "/claim-tokens", {"event_name": "signup", "customer_ref": ref}
        if kind == "repeatable_claim":
            return "/claim-tokens", {"event_name": "purchase", "customer_ref": ref}
        if kind == "redeem":
            return "/redeem-tokens", {"customer_ref": ref, "amount": 1}
        return "/transfer-tokens", {"from_customer_ref": ref, "to_customer_ref": f"{ref}-to", "amount": 1}

    def raw(self, kind: str, tag: str) -> Op:
        async def op(i: int) -> None:
            await self.post(*self.body(kind, f"{tag}-{i}"))

        return op

    def floor(self, kind: str, tag: str) -> Op:
        async def op(i: int) -> None:
            await self.get(READ_FIRST[kind], customer_ref=f"{tag}-{i}")
            await self.post(*self.body(kind, f"{tag}-{i}"))

        return op

    def floor2(self, kind: str, tag: str) -> Op:
        async def op(i: int) -> None:
            ref = f"{tag}-{i}"
            await asyncio.gather(self.get("/balance", customer_ref=ref), self.get("/balance", customer_ref=f"{ref}-to"))
            await self.post(*self.body(kind, ref))

        return op

    def sqlite(self, kind: str, tag: str) -> Op:
        return self._durable(self.floors["sqlite"], kind, tag)

    def journal(self, kind: str, tag: str) -> Op:
        return self._durable(self.floors["journal"], kind, tag)

    def _durable(self, log: Floor, kind: str, tag: str) -> Op:
        """The raw POST behind a durable intent record, its outcome queued after the answer."""

        async def op(i: int) -> None:
            key = f"{tag}-{i}"
            path, body = self.body(kind, key)
            await log.record(key, {k: str(v) for k, v in body.items()})
            log.settle(key, json.loads(await self.post(path, body))["tx_hash"])

        return op

    def guarded(self, kind: str, tag: str) -> Op:
        c = self.client

        async def op(i: int) -> None:
            ref = f"{tag}-{i}"
            if kind == "one_time_claim":
                await c.claim_tokens("signup", ref)
            elif kind == "repeatable_claim":
                await c.claim_tokens("purchase", ref)
            elif kind == "redeem":
                await c.redeem_tokens(ref, 1)
            else:
                await c.transfer_tokens(ref, f"{ref}-to", 1)

        return op

    async def fund(self, tags: list[str], count: int) -> None:
        """Give every customer a redeem or a transfer will use a balance first."""
        gate = asyncio.Semaphore(64)

        async def one(ref: str) -> None:
            async with gate:
                await self.post("/upgrade-to-shakesco", {"customer_ref": ref, "amount": 10})

        await asyncio.gather(*(one(f"{tag}-{i}") for tag in tags for i in range(count)))


async def profile(
    name: str, read_ms: float, write_ms: float, rounds: int, counts: dict[int, int], dsn: str | None = None
) -> list[tuple[str, float, float]]:
    proc, base_url = await start_sandbox(read_ms, write_ms)
    checks: list[tuple[str, float, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            guard = GuardSettings(verify_delay=0.0)
            ledger = dsn if dsn is not None else Path(tmp) / "l.sqlite3"
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session,
                ShakescoClient("sk_sandbox_demo", base_url=base_url, ledger=ledger, guard=guard) as client,
            ):
                floors: dict[str, Floor] = {}
                if dsn is None:
                    floors = {
                        "sqlite": SQLiteFloor(Path(tmp) / "floor.sqlite3"),
                        "journal": JournalFloor(Path(tmp) / "floor.log"),
                    }
                who = Contenders(base_url, session, client, floors)
                await client.set_event_details("signup", 5, True)
                await client.set_event_details("purchase", 5, False)
                print(f"\n{name}: reads answered after {read_ms:g} ms, writes after {write_ms:g} ms")
                print(
                    f"{'kind':<17}{'conc':>5}  {'contender':<8}{'writes/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs':>9}"
                )
                for kind in KINDS:
                    for concurrency, count in counts.items():
                        checks.append(await one_case(who, name, kind, concurrency, count, rounds))
                for log in floors.values():
                    await log.aclose()
    finally:
        proc.terminate()
        await proc.wait()
    return checks


async def one_case(
    who: Contenders, name: str, kind: str, concurrency: int, count: int, rounds: int
) -> tuple[str, float, float]:
    names = ["raw", "guarded"] + (["floor"] if kind in READ_FIRST else []) + (["floor2"] if kind == "transfer" else [])
    if kind == "one_time_claim":
        names += [n for n in DURABLE_FLOORS if n in who.floors]
    tags = {n: [f"{name}-{kind}-{concurrency}-{n}-{r}" for r in range(rounds)] for n in names}
    if kind in ("redeem", "transfer"):
        await who.fund([t for n in names for t in tags[n]], count)
    runs: dict[str, list[Run]] = {n: [] for n in names}
    for r in range(rounds):  # alternating: each round measures every contender side by side
        for n in names if r % 2 == 0 else reversed(names):
            make = getattr(who, n)
            runs[n].append(await measure(make(kind, tags[n][r]), count, concurrency))
    for n in names:
        lat = [x for run in runs[n] for x in run.latencies]
        rate = statistics.median(run.rate for run in runs[n])
        p50, p99 = sorted(lat)[len(lat) // 2], sorted(lat)[min(len(lat) - 1, int(len(lat) * 0.99))]
        cpu = statistics.median(run.cpu for run in runs[n]) * 1e6
        print(f"{kind:<17}{concurrency:>5}  {n:<8}{rate:>10.1f}{p50 * 1000:>9.1f}{p99 * 1000:>9.1f}{cpu:>9.0f}")
    against = "raw" if kind == "one_time_claim" else "floor"
    # The client's CPU per write (its event loop and ledger thread: the sandbox is another
    # process), guarded beside the contender it is judged against: the guard's own work.
    mine, theirs = (statistics.median(run.cpu for run in runs[n]) * 1e6 for n in ("guarded", against))
    print(
        f"recorded: {name} {kind} c{concurrency} CPU per write guarded {mine:.0f} µs, {against} {theirs:.0f} µs"
        f" (the guard's own: {mine - theirs:.0f} µs)"
    )
    ratio = statistics.median(g.rate / b.rate for g, b in zip(runs["guarded"], runs[against], strict=True))
    if "floor2" in runs:
        both = statistics.median(g.rate / b.rate for g, b in zip(runs["guarded"], runs["floor2"], strict=True))
        print(f"recorded: {name} {kind} c{concurrency} guarded/floor2 (both reads) = {both:.2f}")
    for n in DURABLE_FLOORS:
        if n in runs:
            bound = statistics.median(f.rate / b.rate for f, b in zip(runs[n], runs["raw"], strict=True))
            near = statistics.median(g.rate / f.rate for g, f in zip(runs["guarded"], runs[n], strict=True))
            print(f"recorded: {name} {kind} c{concurrency} {n} floor/raw = {bound:.2f}; guarded/{n} floor = {near:.2f}")
    target = TARGETS[(name, kind, concurrency)]
    return f"{name} {kind} c{concurrency} guarded/{against}", ratio, target


async def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--read-ms", type=float, default=20.0, help="round trip of a read (default 20)")
    p.add_argument("--write-extra-ms", type=float, default=180.0, help="a write's extra time, second profile (180)")
    p.add_argument("--postgres", action="store_true", help="the PostgreSQL ledger (a throwaway cluster); recorded")
    args = p.parse_args()
    rounds = 1 if args.smoke else 3
    symmetric = {1: 3, 32: 32} if args.smoke else {1: 40, 32: 640}
    slow = {1: 2, 32: 32} if args.smoke else {1: 10, 32: 192}
    if args.postgres:
        sys.path.insert(0, str(ROOT))
        from tests.support.postgres import postgres_cluster

        with postgres_cluster() as dsn:
            checks = await profile("symmetric", args.read_ms, args.read_ms, rounds, symmetric, dsn)
        return verdict([(f"postgres {name}", ratio, 0.0) for name, ratio, _ in checks], args.smoke)
    checks = await profile("symmetric", args.read_ms, args.read_ms, rounds, symmetric)
    checks += await profile("slow_writes", args.read_ms, args.read_ms + args.write_extra_ms, rounds, slow)
    return verdict(checks, args.smoke)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
