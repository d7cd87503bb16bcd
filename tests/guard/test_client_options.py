"""``client.with_options``: other limits for some calls, one client for everything else."""

from __future__ import annotations

import asyncio

import pytest

import shakesco_async as sa
from shakesco_async.sandbox import Sandbox
from tests.conftest import FAST_GUARD, ClientFactory


async def test_the_copy_has_its_own_limits_and_the_clients_connections(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client()  # timeout 2 s
    quick = client.with_options(timeout=0.3, max_retries=0)
    assert (quick.timeout, quick.max_retries, client.timeout, client.max_retries) == (0.3, 0, 2.0, 2)
    sandbox.faults.add("delay", endpoint="/balance", delay=0.8, count=2)
    with pytest.raises(sa.TransportTimeout):
        await quick.balance("c")
    assert await client.balance("c") == 0  # waited out the same delay
    assert quick._transport._pool.session is client._transport._pool.session is not None


async def test_a_copys_write_is_the_clients_write(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    quick = client.with_options(timeout=0.5)
    first = await quick.upgrade_to_shakesco("c", 5, idempotency_key="k1")
    again = await client.upgrade_to_shakesco("c", 5, idempotency_key="k1")
    assert again.replayed and again.tx_hash == first.tx_hash
    entry = await client.ledger.get("k1")
    assert entry is not None and entry.in_flight == 0.5 + FAST_GUARD.verify_delay + 1.0  # its own timeout
    # One writer to the ledger: the same customer from both waits in-process, not on a lease.
    assert quick.guard._locks is client.guard._locks
    writes = [client.redeem_tokens("c", 1), quick.redeem_tokens("c", 1), client.redeem_tokens("c", 1)]
    await asyncio.gather(*writes)
    assert await client.balance("c") == 2
    assert len(sandbox.applied_writes("/redeem-tokens")) == 3


async def test_closing_the_client_waits_for_a_copys_write_and_closes_the_copy(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client()
    quick = client.with_options(timeout=1.0)
    await client.upgrade_to_shakesco("c", 100)
    sandbox.faults.add("delay", endpoint="/redeem-tokens", delay=0.3, count=1)
    write = asyncio.create_task(quick.redeem_tokens("c", 10, idempotency_key="late"))
    await asyncio.sleep(0.1)  # the request is at the API
    await client.aclose()
    assert write.done() and write.result().tx_hash is not None  # finished, not cut off
    with pytest.raises(sa.TransportError, match="closed"):
        await quick.balance("c")
    await quick.aclose()  # closing it again is harmless
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1


@pytest.mark.parametrize(
    "options",
    [{"timeout": 0}, {"timeout": -1.0}, {"timeout": float("inf")}, {"timeout": True}, {"max_retries": -1}],
)
async def test_bad_options_are_refused(make_client: ClientFactory, options: dict[str, object]) -> None:
    with pytest.raises(sa.ConfigurationError):
        make_client().with_options(**options)  # type: ignore[arg-type]


async def test_a_timeout_the_lease_cannot_outlast_is_refused(make_client: ClientFactory) -> None:
    client = make_client(guard=sa.GuardSettings(lease_ttl=5.0))
    with pytest.raises(sa.ConfigurationError, match="lease_ttl"):
        client.with_options(timeout=10.0)
