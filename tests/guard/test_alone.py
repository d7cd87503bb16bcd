"""The guard tells the ledger when a write has no other in flight (``begin(alone=...)``).

Only then may the SQLite ledger make the intent durable on the event loop's own thread:
with other writes in flight, their answers would wait behind the fsync.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shakesco_async.ledger import Intent, KeySource
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.support.ledgers import stage_committed


async def test_a_write_is_alone_only_while_no_other_of_its_client_is_in_flight(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    client = make_client()
    await client.set_event_details("purchase", 5, False)
    ledger: Any = client.ledger
    begin = ledger.begin
    seen: list[tuple[str, bool]] = []
    began = asyncio.Event()

    def spied_begin(intent: Any, **kwargs: Any) -> Any:
        seen.append((intent.customers[0], kwargs.get("alone", False)))
        began.set()
        return begin(intent, **kwargs)

    ledger.begin = spied_begin
    await client.claim_tokens("purchase", "ann")
    assert seen == [("ann", True)]

    seen.clear()
    began.clear()
    sandbox.faults.add("delay", endpoint="/claim-tokens", count=1, delay=0.5)
    first = asyncio.ensure_future(client.claim_tokens("purchase", "bob"))
    await began.wait()  # bob's intent is being recorded; its request will be held by the fault
    await client.claim_tokens("purchase", "cat")
    await first
    assert seen == [("bob", True), ("cat", False)]

    seen.clear()
    await client.claim_tokens("purchase", "dan")
    assert seen == [("dan", True)]  # the count came back down, also for the held write

    seen.clear()
    began.clear()
    sandbox.faults.add("delay", endpoint="/claim-tokens", count=1, delay=0.5)
    first = asyncio.ensure_future(client.with_options(timeout=3.0).claim_tokens("purchase", "eve"))
    await began.wait()
    await client.claim_tokens("purchase", "fay")
    await first
    assert seen == [("eve", True), ("fay", False)]  # a client made with_options is the same writer


async def test_an_owed_write_being_sent_is_a_write_in_flight(make_client: ClientFactory, sandbox: Sandbox) -> None:
    client = make_client()
    await client.set_event_details("purchase", 5, False)
    ledger: Any = client.ledger
    params = {"event_name": "purchase", "customer_ref": "gil"}
    await stage_committed(ledger, Intent("owed-1", "/claim-tokens", params, ("gil",), KeySource.CALLER))
    owed = await ledger.get("owed-1")
    begin = ledger.begin
    seen: list[tuple[str, bool]] = []
    began = asyncio.Event()

    def spied_begin(intent: Any, **kwargs: Any) -> Any:
        seen.append((intent.customers[0], kwargs.get("alone", False)))
        began.set()
        return begin(intent, **kwargs)

    ledger.begin = spied_begin
    sandbox.faults.add("delay", endpoint="/claim-tokens", count=1, delay=0.5)
    sending = asyncio.ensure_future(client.guard.send_owed(owed))
    await began.wait()  # the owed write's commit is under way; its request will be held
    await client.claim_tokens("purchase", "hal")
    await sending
    assert seen == [("gil", False), ("hal", False)]
