"""The guard tells the ledger when a write has no other in flight (``begin(alone=...)``).

Only then may the SQLite ledger make the intent durable on the event loop's own thread:
with other writes in flight, their answers would wait behind the fsync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import shakesco_async as sa
from shakesco_async.ledger import Intent, KeySource
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.support.ledgers import stage_committed


class Begins:
    """Spies on the ledger's ``begin``: each intent's first customer and its ``alone`` hint."""

    def __init__(self, client: sa.ShakescoClient) -> None:
        self.seen: list[tuple[str, bool]] = []
        self.began = asyncio.Event()
        ledger: Any = client.ledger
        begin = ledger.begin

        def spied(intent: Any, **kwargs: Any) -> Any:
            self.seen.append((intent.customers[0], kwargs.get("alone", False)))
            self.began.set()
            return begin(intent, **kwargs)

        ledger.begin = spied

    async def beside_a_held_write(self, sandbox: Sandbox, held: Awaitable[Any], then: Awaitable[Any]) -> None:
        """Start ``held`` (its request held by the sandbox), then run ``then`` once its intent is under way."""
        self.seen.clear()
        self.began.clear()
        sandbox.faults.add("delay", endpoint="/claim-tokens", count=1, delay=0.5)
        first = asyncio.ensure_future(held)
        await self.began.wait()
        await then
        await first


async def test_a_write_is_alone_only_while_no_other_of_its_client_is_in_flight(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client()
    await client.set_event_details("purchase", 5, False)
    begins = Begins(client)
    await client.claim_tokens("purchase", "ann")
    assert begins.seen == [("ann", True)]

    await begins.beside_a_held_write(
        sandbox, client.claim_tokens("purchase", "bob"), client.claim_tokens("purchase", "cat")
    )
    assert begins.seen == [("bob", True), ("cat", False)]

    begins.seen.clear()
    await client.claim_tokens("purchase", "dan")
    assert begins.seen == [("dan", True)]  # the count came back down, also for the held write

    sibling = client.with_options(timeout=3.0)
    await begins.beside_a_held_write(
        sandbox, sibling.claim_tokens("purchase", "eve"), client.claim_tokens("purchase", "fay")
    )
    assert begins.seen == [("eve", True), ("fay", False)]  # a client made with_options is the same writer


async def test_an_owed_write_being_sent_is_a_write_in_flight(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    await client.set_event_details("purchase", 5, False)
    params: dict[str, Any] = {"event_name": "purchase", "customer_ref": "gil"}
    await stage_committed(client.ledger, Intent("owed-1", "/claim-tokens", params, ("gil",), KeySource.CALLER))
    owed = await client.ledger.get("owed-1")
    assert owed is not None
    begins = Begins(client)
    await begins.beside_a_held_write(sandbox, client.guard.send_owed(owed), client.claim_tokens("purchase", "hal"))
    assert begins.seen == [("gil", False), ("hal", False)]
