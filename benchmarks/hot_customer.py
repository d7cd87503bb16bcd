"""Hot customer: guarded writes to one customer (serialized by design) vs concurrency-1 raw.

    python benchmarks/hot_customer.py [--smoke]

Prints guarded-hot / raw-c1 and guarded-hot / guarded-c1 (distinct customers): the second
shows that 64 callers queueing on one customer cost nothing beyond one-at-a-time writes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import aiohttp
from _common import bench_client, measure, median_ratio, parser, verdict

from shakesco_async.sandbox import Sandbox


async def main(smoke: bool) -> int:
    rounds, count = (1, 30) if smoke else (5, 200)
    hot_vs_raw, hot_vs_c1 = [], []
    async with Sandbox() as sandbox:
        sandbox.business().set_event_details("purchase", Decimal(1), False)
        headers = {"Authorization": f"Bearer {sandbox.api_key}", "Content-Type": "application/json"}
        with tempfile.TemporaryDirectory() as tmp:
            async with (
                aiohttp.ClientSession() as session,
                bench_client(sandbox, Path(tmp) / "hot.sqlite3") as client,
            ):

                async def raw(i: int) -> None:
                    body = json.dumps({"event_name": "purchase", "customer_ref": f"raw-{i}"})
                    async with session.post(sandbox.base_url + "/claim-tokens", data=body, headers=headers) as r:
                        await r.read()

                for r in range(rounds):
                    raw_c1 = await measure(raw, count, 1)
                    spread = await measure(lambda i, r=r: client.claim_tokens("purchase", f"c1-{r}-{i}"), count, 1)
                    hot = await measure(lambda i, r=r: client.claim_tokens("purchase", f"hot-{r}"), count, 64)
                    hot_vs_raw.append((hot.rate, raw_c1.rate))
                    hot_vs_c1.append((hot.rate, spread.rate))
                    print(
                        f"round {r}: raw c1 {raw_c1.rate:.0f}/s, guarded c1 {spread.rate:.0f}/s,"
                        f" hot x64 {hot.rate:.0f}/s"
                    )
    return verdict(
        [
            ("hot/guarded-c1", median_ratio(hot_vs_c1), 0.8),
            ("hot/raw-c1", median_ratio(hot_vs_raw), 0.0),
        ],
        smoke,
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parser(__doc__ or "").parse_args().smoke)))
