"""What the SDK puts on the wire for reads: a query every server decodes the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web

from shakesco_async import ShakescoClient
from shakesco_async.sandbox import Sandbox
from tests.conftest import FAST_GUARD

ODD_REFS = ["a b", "a+b", "user+tag@example.com", "a%20b", "a&b=c", "a#b", "a/b?c", "ü🚀", " lead", "%", "a\u00a0b"]


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that answers every read with a zero balance and keeps the raw query."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.raw_path.partition("?")[2])
        return web.json_response({"balance": "0"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_query_percent_encodes_everything_but_unreserved_characters(
    recorder: tuple[str, list[str]], tmp_path: Path
) -> None:
    base_url, seen = recorder
    async with ShakescoClient("k", base_url=base_url, ledger=tmp_path / "l.sqlite3", timeout=2.0) as client:
        for ref in ("a b", "a+b", "user+tag@example.com", "ü", "A-z_0.9~"):
            await client.balance(ref)
    assert seen == [
        "customer_ref=a%20b",  # not "a+b": read as a plus by servers that decode RFC 3986 only
        "customer_ref=a%2Bb",
        "customer_ref=user%2Btag%40example.com",
        "customer_ref=%C3%BC",
        "customer_ref=A-z_0.9~",
    ]


async def test_odd_customer_refs_are_written_read_and_verified_as_the_same_customer(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    ledger = tmp_path / "l.sqlite3"
    async with ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=ledger, timeout=2.0, guard=FAST_GUARD
    ) as c:
        for n, ref in enumerate(ODD_REFS, start=1):
            await c.upgrade_to_shakesco(ref, n)
        sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens")  # every answer lost
        receipts = [await c.redeem_tokens(ref, 1) for ref in ODD_REFS]
        balances = [await c.balance(ref) for ref in ODD_REFS]
    assert all(r.verified for r in receipts)  # each read back its own customer, and found it applied
    assert balances == [Decimal(n - 1) for n in range(1, len(ODD_REFS) + 1)]
    assert [sandbox.business().customer(ref).balance for ref in ODD_REFS] == balances
    assert len(sandbox.applied_writes("/redeem-tokens")) == len(ODD_REFS)
