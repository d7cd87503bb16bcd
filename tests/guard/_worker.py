"""A child process doing guarded writes, for the crash and multi-process tests.

    python -m tests.guard._worker BASE_URL API_KEY LEDGER JOBS LEASE_TTL

Each job i claims the repeatable event "purchase" for customer cust-(i % 4) with the
idempotency key job-i, as a worker replaying its queue after a restart would.
"""

from __future__ import annotations

import asyncio
import sys

from shakesco_async import GuardSettings, OutcomeUnknown, ShakescoClient

CUSTOMERS = 4


def job(client: ShakescoClient, i: int) -> asyncio.Future[object]:
    return asyncio.ensure_future(client.claim_tokens("purchase", f"cust-{i % CUSTOMERS}", idempotency_key=f"job-{i}"))


async def main(base_url: str, api_key: str, ledger: str, jobs: int, lease_ttl: float) -> int:
    settings = GuardSettings(verify_delay=0.0, lease_ttl=lease_ttl, lease_wait=30.0)
    async with ShakescoClient(api_key, base_url=base_url, ledger=ledger, timeout=2.0, guard=settings) as client:
        results = await asyncio.gather(*(job(client, i) for i in range(jobs)), return_exceptions=True)
    unknown = sum(isinstance(r, OutcomeUnknown) for r in results)
    failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, OutcomeUnknown)]
    for error in failed:
        print(f"job failed: {error!r}", file=sys.stderr)
    print(f"done jobs={jobs} unknown={unknown} failed={len(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    url, key, path, count, ttl = sys.argv[1:6]
    sys.exit(asyncio.run(main(url, key, path, int(count), float(ttl))))
