"""A server that misbehaves on purpose, and input no one should pass: every failure a caller
sees is a ShakescoError, and no guarded write is left behind by an escaped exception."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aioresponses import aioresponses

import shakesco_async as sa
from shakesco_async.ledger import EntryState
from tests.conftest import FAST_GUARD, UNIT_KEY, UNIT_URL
from tests.unit._mock import ANY_READ, QUIET_STATE, TX

DEEP = "[" * 200_000 + "]" * 200_000
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000


class Hostile:
    """A real HTTP server on loopback (aioresponses cannot feed large bodies) answering
    reads with ``read`` and writes with the next of ``writes``, as (status, body)."""

    def __init__(self) -> None:
        self.read: tuple[int, str] = (200, "{}")
        self.writes: list[tuple[int, str]] = []
        self.posts = 0
        self.posted = asyncio.Event()
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            self.posts += 1
            self.posted.set()
            status, body = self.writes.pop(0)
        else:
            status, body = self.read
        return web.Response(status=status, text=body, content_type="application/json")


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    server = Hostile()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def hostile_client(hostile: Hostile, tmp_path: Path) -> AsyncIterator[sa.ShakescoClient]:
    async with sa.ShakescoClient(
        UNIT_KEY, base_url=hostile.base_url, ledger=tmp_path / "h.sqlite3", timeout=0.5, max_retries=0, guard=FAST_GUARD
    ) as client:
        yield client


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, '{"balance": ' + DEEP + "}"], ids=["list", "object", "field"])
@pytest.mark.parametrize("status", [200, 400, 404, 502])
async def test_deeply_nested_json_is_malformed_or_an_error_of_its_status(
    hostile: Hostile, hostile_client: sa.ShakescoClient, body: str, status: int
) -> None:
    hostile.read = (status, body)
    with pytest.raises(sa.MalformedResponse if status == 200 else sa.APIError) as info:
        await hostile_client.balance("c")
    if status != 200:
        assert info.value.status == status  # type: ignore[attr-defined]


@pytest.mark.parametrize("answer", [(200, DEEP), (502, DEEP), (200, "1e9999999"), (200, '{"tx_hash": ' + DEEP + "}")])
async def test_a_write_answered_with_an_unreadable_body_is_verified_never_escaped(
    hostile: Hostile, hostile_client: sa.ShakescoClient, answer: tuple[int, str]
) -> None:
    """The POST left: a body that cannot be read is an unknown outcome (verify), not a crash
    that leaves the entry looking sent."""
    hostile.read = (200, json.dumps(QUIET_STATE))  # the reads: nothing was applied
    hostile.writes = [answer, (200, json.dumps({"tx_hash": TX}))]
    receipt = await hostile_client.with_options(max_retries=1).redeem_tokens("c", 1, idempotency_key="deep")
    assert hostile.posts == 2  # proven not applied, then sent once more
    assert receipt.tx_hash == TX
    entry = await hostile_client.ledger.get("deep")
    assert entry is not None and entry.state == EntryState.COMMITTED


async def test_a_verification_read_out_of_range_leaves_the_write_in_doubt(
    hostile: Hostile, hostile_client: sa.ShakescoClient
) -> None:
    hostile.read = (200, '{"total_spent": "0"}')
    hostile.writes = [(502, '{"error": "Transaction failed"}')]
    task = asyncio.ensure_future(hostile_client.redeem_tokens("c", 1, idempotency_key="huge"))
    await hostile.posted.wait()
    hostile.read = (200, '{"total_spent": 1e9999999}')  # what it reads back cannot be a balance
    with pytest.raises(sa.OutcomeUnknown):
        await task
    assert hostile.posts == 1
    entry = await hostile_client.ledger.get("huge")
    assert entry is not None and entry.state == EntryState.IN_DOUBT


@pytest.mark.parametrize(
    "value",
    ["1e9999999", '"1E+999999"', '"1E-999999"', '"1e60"', "1" * 5000, '"0.' + "0" * 40 + '1"', '"NaN"', "-1e9999999"],
)
async def test_numbers_out_of_range_are_malformed(unit_client: sa.ShakescoClient, value: str) -> None:
    with aioresponses() as m:
        m.get(ANY_READ, body='{"balance": ' + value + "}", content_type="application/json")
        with pytest.raises(sa.MalformedResponse):
            await unit_client.balance("c")


@pytest.mark.parametrize("value", ['"99999999999999999999"', "1e300", '"-1e300"', '"2026-13-45T99:00:00Z"', "[1]"])
async def test_times_out_of_range_are_malformed(unit_client: sa.ShakescoClient, value: str) -> None:
    with aioresponses() as m:
        m.get(ANY_READ, body='{"last_activity": ' + value + "}", content_type="application/json")
        with pytest.raises(sa.MalformedResponse):
            await unit_client.last_activity("c")


async def test_a_bound_amount_still_reads_exactly(unit_client: sa.ShakescoClient) -> None:
    biggest = sa._validate.MAX_AMOUNT  # type: ignore[attr-defined]
    with aioresponses() as m:
        m.get(ANY_READ, body=f'{{"balance": "{biggest}"}}', content_type="application/json")
        assert await unit_client.balance("c") == biggest


# -- the size of an answer ---------------------------------------------------------------------
@pytest.fixture
async def endless() -> AsyncIterator[tuple[str, list[int]]]:
    """A server whose every answer is a 200 that never stops (no Content-Length): the list
    counts the bytes it managed to write before the client hung up."""
    written = [0]

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk = b" " * (1 << 16)
        try:
            await resp.write(b'{"balance": "1"')
            while written[0] < 256 << 20:
                await resp.write(chunk)
                written[0] += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", written
    await runner.cleanup()


async def test_an_endless_answer_is_cut_off_at_the_cap(endless: tuple[str, list[int]], tmp_path: Path) -> None:
    base_url, written = endless
    async with sa.ShakescoClient(UNIT_KEY, base_url=base_url, ledger=tmp_path / "l.sqlite3", timeout=10) as client:
        with pytest.raises(sa.MalformedResponse, match="over the 1048576-byte limit"):
            await client.balance("c")
    await asyncio.sleep(0.1)
    assert written[0] < 64 << 20  # read while it arrived, stopped at the cap: not 256 MB


async def test_the_cap_is_a_client_setting(hostile: Hostile, tmp_path: Path) -> None:
    hostile.read = (200, '{"balance": "7"' + " " * (2 << 20) + "}")
    async with sa.ShakescoClient(UNIT_KEY, base_url=hostile.base_url, ledger=tmp_path / "a.sqlite3") as small:
        with pytest.raises(sa.MalformedResponse):
            await small.balance("c")
    async with sa.ShakescoClient(
        UNIT_KEY, base_url=hostile.base_url, ledger=tmp_path / "b.sqlite3", max_response_bytes=4 << 20
    ) as large:
        assert await large.balance("c") == 7
    for bad in (0, -1, True, 1.5):
        with pytest.raises(sa.ConfigurationError):
            sa.ShakescoClient(UNIT_KEY, base_url=UNIT_URL, max_response_bytes=bad)  # type: ignore[arg-type]


# -- input no one should pass ----------------------------------------------------------------------
HUGE = 10**5000
BAD_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("redeem_tokens", ("c", HUGE)),
    ("redeem_tokens", ("c", -HUGE)),
    ("redeem_tokens", ("c", "١٢")),  # Arabic-Indic digits: Decimal() reads them as 12
    ("redeem_tokens", ("c", Decimal(HUGE))),
    ("unstake", ("c", HUGE)),
    ("unstake", ("c", -HUGE)),
    ("unstake", ("c", 2**256)),
    ("create_stake", ("c", 1, HUGE)),
    ("create_stake", ("c", 1, "²")),
    ("create_stake", ("c", 1, "①")),
    ("create_stake", ("c", 1, "٣")),
    ("create_stake", ("c", 1, "1" * 100)),
    ("set_happy_hour", (-HUGE, 2)),
    ("create_vesting_grant", ("c", 10, HUGE, 0, 25)),
]


@pytest.mark.parametrize(("name", "args"), BAD_CALLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_CALLS)])
async def test_bad_input_is_a_validation_error_before_anything_is_recorded_or_sent(
    unit_client: sa.ShakescoClient, name: str, args: tuple[Any, ...]
) -> None:
    with aioresponses() as m:
        with pytest.raises(sa.ValidationError) as info:
            await getattr(unit_client, name)(*args, idempotency_key="bad")
        assert not m.requests
    assert len(str(info.value)) < 300  # the message shows the value short, never 5,000 digits
    assert await unit_client.ledger.get("bad") is None


@pytest.mark.parametrize("args", [(HUGE,), ("²",), ("٣",)], ids=["huge", "superscript", "arabic-indic"])
async def test_bad_read_arguments_are_validation_errors(unit_client: sa.ShakescoClient, args: tuple[Any, ...]) -> None:
    with aioresponses() as m:
        with pytest.raises(sa.ValidationError):
            await unit_client.calculate_staking_reward(*args)
        assert not m.requests


@pytest.mark.parametrize("value", [HUGE, 10**400, -HUGE], ids=["huge", "over-float", "huge-negative"])
async def test_huge_settings_are_validation_errors(unit_client: sa.ShakescoClient, value: int) -> None:
    with pytest.raises(sa.ValidationError, match=re.escape("bit int")):
        await unit_client.reconcile(older_than=value)


def test_guard_settings_refuse_huge_numbers() -> None:
    with pytest.raises(sa.ShakescoError):
        sa.GuardSettings(verify_delay=10**400).check(1.0)
    assert FAST_GUARD.verify_delay == 0.0
