"""A child process doing guarded writes, for the crash and multi-process tests.

    python -m tests.guard._worker BASE_URL API_KEY BACKEND LOCATION SCHEMA JOBS LEASE_TTL
    python -m tests.guard._worker hold API_KEY BACKEND LOCATION SCHEMA CUSTOMER LEASE_TTL
    python -m tests.guard._worker redeem BASE_URL API_KEY BACKEND LOCATION SCHEMA CUSTOMER KEY

Each job i claims the repeatable event "purchase" for customer cust-(i % 4) with the
idempotency key job-i, as a worker replaying its queue after a restart would. ``hold``
takes a customer's lease, says so, and waits to be killed. ``redeem`` redeems 10 tokens
of a customer under a key, with a five-minute lease and a 2 s timeout, and is killed while
its request is on its way.
"""

from __future__ import annotations

import asyncio
import sys

from shakesco_async import GuardSettings, OutcomeUnknown, ShakescoClient
from tests.support.ledgers import LedgerSpec

CUSTOMERS = 4


async def work(base_url: str, api_key: str, spec: LedgerSpec, jobs: int, lease_ttl: float) -> int:
    settings = GuardSettings(verify_delay=0.0, lease_ttl=lease_ttl, lease_wait=30.0)
    ledger = spec.make(api_key)
    # Enough retries that 10% refusals cannot exhaust them (three in a row happen in ~1 run of 10).
    # A short lease (so a killed worker's customers free up soon) needs a shorter timeout.
    timeout = min(2.0, lease_ttl / 2)
    async with ShakescoClient(
        api_key, base_url=base_url, ledger=ledger, timeout=timeout, guard=settings, max_retries=8
    ) as client:
        results = await asyncio.gather(
            *(
                client.claim_tokens("purchase", f"cust-{i % CUSTOMERS}", idempotency_key=f"job-{i}")
                for i in range(jobs)
            ),
            return_exceptions=True,
        )
    await ledger.close()
    unknown = sum(isinstance(r, OutcomeUnknown) for r in results)
    failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, OutcomeUnknown)]
    for error in failed:
        print(f"job failed: {error!r}", file=sys.stderr)
    print(f"done jobs={jobs} unknown={unknown} failed={len(failed)}")
    return 1 if failed else 0


async def hold(api_key: str, spec: LedgerSpec, customer: str, lease_ttl: float) -> int:
    ledger = spec.make(api_key)
    await ledger.open()
    assert await ledger.acquire([customer], owner="doomed", lease_ttl=lease_ttl) is None
    print("held", flush=True)
    await asyncio.sleep(120)
    return 0


async def redeem(base_url: str, api_key: str, spec: LedgerSpec, customer: str, key: str) -> int:
    ledger = spec.make(api_key)
    settings = GuardSettings(verify_delay=0.0, lease_ttl=300.0)
    async with ShakescoClient(api_key, base_url=base_url, ledger=ledger, timeout=2.0, guard=settings) as client:
        await client.redeem_tokens(customer, 10, idempotency_key=key)
    await ledger.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "redeem":
        url, key, backend, location, schema, customer, idempotency_key = sys.argv[2:9]
        spec = LedgerSpec.from_argv(backend, location, schema)
        sys.exit(asyncio.run(redeem(url, key, spec, customer, idempotency_key)))
    if sys.argv[1] == "hold":
        key, backend, location, schema, customer, ttl = sys.argv[2:8]
        sys.exit(asyncio.run(hold(key, LedgerSpec.from_argv(backend, location, schema), customer, float(ttl))))
    url, key, backend, location, schema, count, ttl = sys.argv[1:8]
    spec = LedgerSpec.from_argv(backend, location, schema)
    sys.exit(asyncio.run(work(url, key, spec, int(count), float(ttl))))
