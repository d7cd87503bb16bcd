"""A client made before the process forks, as ``gunicorn --preload`` or a prefork pool
makes it, then used by two children: the first's write is held in flight while the
second runs the same job. Prints each child's outcome, the second's first.

    python -m tests.guard._forked BASE_URL API_KEY BACKEND LOCATION SCHEMA
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from shakesco_async import GuardSettings, ShakescoClient
from tests.support.ledgers import LedgerSpec

url, api_key = sys.argv[1:3]
ledger = LedgerSpec.from_argv(*sys.argv[3:6]).make(api_key)
client = ShakescoClient(
    api_key,
    base_url=url,
    ledger=ledger,
    timeout=5.0,
    guard=GuardSettings(verify_delay=0.0, lease_ttl=30.0, lease_wait=0.5),
)


async def job(hold: tuple[int, int] | None) -> str:
    if hold is not None:
        in_flight, go_on = hold
        send_once = client.guard._send_once

        async def held_up(*args: Any) -> Any:
            os.write(in_flight, b".")
            await asyncio.to_thread(os.read, go_on, 1)
            return await send_once(*args)

        client.guard._send_once = held_up  # type: ignore[method-assign]
    try:
        receipt = await client.claim_tokens("visit", "cust", idempotency_key="job-1")
    except Exception as exc:
        return f"refused {type(exc).__name__}"
    finally:
        await client.aclose()
        await ledger.close()
    return "replayed" if receipt.replayed else "sent"


def child(hold: tuple[int, int] | None) -> int:
    print(asyncio.run(job(hold)), flush=True)
    return 0


def main() -> None:
    in_flight_r, in_flight_w = os.pipe()
    go_on_r, go_on_w = os.pipe()
    first = os.fork()
    if first == 0:
        os._exit(child((in_flight_w, go_on_r)))
    os.read(in_flight_r, 1)
    second = os.fork()
    if second == 0:
        os._exit(child(None))
    os.waitpid(second, 0)
    os.write(go_on_w, b".")
    os.waitpid(first, 0)


main()
