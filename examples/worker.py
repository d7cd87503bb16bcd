"""A plain asyncio worker: consumes award jobs from a queue, reconciles in the background.

python examples/worker.py            # against an in-process sandbox, no set-up needed
SHAKESCO_API_KEY=... python examples/worker.py --real
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from pathlib import Path

from shakesco_async import OutcomeUnknown, ShakescoClient, ShakescoError
from shakesco_async.sandbox import Sandbox

log = logging.getLogger("worker")
STOP = None


async def consume(client: ShakescoClient, jobs: asyncio.Queue[tuple[str, str] | None]) -> int:
    """Award each (job id, customer) once; a job id is the idempotency key, so redelivery is safe."""
    done = 0
    while (job := await jobs.get()) is not STOP:
        job_id, customer_ref = job
        try:
            await client.claim_tokens("purchase", customer_ref, idempotency_key=f"job:{job_id}")
            done += 1
        except OutcomeUnknown as exc:
            log.warning("job %s pending: %s (the reconciler will settle it)", job_id, exc.reason)
        except ShakescoError as exc:
            log.error("job %s failed: %s", job_id, exc)
    return done


async def run(client: ShakescoClient, jobs: list[tuple[str, str]], workers: int = 4) -> int:
    client.start_reconciler(interval=30)
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    for _ in range(workers):
        queue.put_nowait(STOP)
    return sum(await asyncio.gather(*(consume(client, queue) for _ in range(workers))))


async def main(real: bool) -> None:
    jobs = [(str(n), f"customer-{n % 5}") for n in range(20)]
    jobs += jobs[:5]  # redelivered by the queue: must not award twice
    if real:
        async with ShakescoClient() as client:
            print(f"awarded {await run(client, jobs)} jobs")
        return
    async with Sandbox() as sandbox:
        with tempfile.TemporaryDirectory() as tmp:
            async with ShakescoClient(
                sandbox.api_key, base_url=sandbox.base_url, ledger=Path(tmp) / "worker.sqlite3"
            ) as client:
                await client.set_event_details("purchase", 5, False)
                sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", probability=0.2)
                done = await run(client, jobs)
        print(f"{done} job runs, {len(sandbox.applied_writes('/claim-tokens'))} awards applied for 20 distinct jobs")


async def until_stopped(real: bool) -> None:
    """Run the worker; SIGTERM (systemd, Kubernetes, `docker stop`) ends it as Ctrl-C does.

    Cancelled, `main` leaves its `async with` blocks: the client closes, waiting for the
    writes under way and giving back their customers' leases. Killed where it stands, a
    worker leaves those leases to lapse (lease_ttl, about six minutes by default), and
    the customers' next writes wait for them.
    """
    task = asyncio.current_task()
    assert task is not None
    with contextlib.suppress(NotImplementedError):  # Windows: no signal handlers in asyncio
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await main(real)
    except asyncio.CancelledError:
        log.info("stopped")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(until_stopped("--real" in sys.argv))
