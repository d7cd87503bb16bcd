"""Each fault mode does what it says, checked against the applied-write log (raw HTTP)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from shakesco_async.sandbox import Sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _post(
    http: aiohttp.ClientSession, sandbox: Sandbox, path: str, body: dict[str, Any], timeout: float = 5.0
) -> tuple[int, str]:
    async with http.post(
        sandbox.base_url + path,
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {sandbox.api_key}", "Idempotency-Key": "trace-1"},
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as resp:
        return resp.status, await resp.text()


UPGRADE = {"customer_ref": "c1", "amount": 10}


async def test_no_fault_applies_and_answers(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    status, text = await _post(http, sandbox, "/upgrade-to-shakesco", UPGRADE)
    assert status == 200 and json.loads(text)["tx_hash"].startswith("0x")
    [write] = sandbox.applied_writes("/upgrade-to-shakesco")
    assert (write.body, write.idempotency_key, write.tx_hash) == (UPGRADE, "trace-1", json.loads(text)["tx_hash"])
    assert len(write.tx_hash or "") == 66


async def test_drop_after_commit(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    sandbox.faults.add("drop_after_commit", endpoint="/upgrade-to-shakesco")
    with pytest.raises(aiohttp.ClientError):
        await _post(http, sandbox, "/upgrade-to-shakesco", UPGRADE)
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == 1
    assert sandbox.business().customer("c1").balance == 10


async def test_reset_applies_nothing(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    sandbox.faults.add("reset", endpoint="/upgrade-to-shakesco")
    with pytest.raises(aiohttp.ClientError):
        await _post(http, sandbox, "/upgrade-to-shakesco", UPGRADE)
    assert sandbox.applied_writes() == []
    assert sandbox.business().customer("c1").balance == 0


@pytest.mark.parametrize(("mode", "applied"), [("fail_before_commit", 0), ("fail_after_commit", 1)])
async def test_502_before_and_after_commit(
    http: aiohttp.ClientSession, sandbox: Sandbox, mode: str, applied: int
) -> None:
    sandbox.faults.add(mode, endpoint="/upgrade-to-shakesco")
    status, text = await _post(http, sandbox, "/upgrade-to-shakesco", UPGRADE)
    assert (status, json.loads(text)) == (502, {"error": "Transaction failed"})
    assert len(sandbox.applied_writes()) == applied


async def test_garbage_applies_and_answers_non_json(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    sandbox.faults.add("garbage")
    status, text = await _post(http, sandbox, "/upgrade-to-shakesco", UPGRADE)
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert len(sandbox.applied_writes()) == 1


async def test_delay_applies_then_answers_late(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    sandbox.faults.add("delay", delay=1.0)
    with pytest.raises(asyncio.TimeoutError):
        await _post(http, sandbox, "/upgrade-to-shakesco", UPGRADE, timeout=0.2)
    assert len(sandbox.applied_writes()) == 1


async def _lands_later(sandbox: Sandbox) -> None:
    """The upgrade of c1 by 10 is not applied yet (a read made now would not see it), and
    is applied once, within five seconds."""
    assert sandbox.applied_writes() == []
    assert sandbox.business().customer("c1").balance == 0
    for _ in range(100):
        if sandbox.applied_writes():
            break
        await asyncio.sleep(0.05)
    assert len(sandbox.applied_writes()) == 1
    assert sandbox.business().customer("c1").balance == 10


async def test_commit_late_applies_after_the_client_gave_up(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    sandbox.faults.add("commit_late", endpoint="/upgrade-to-shakesco", delay=0.5)
    [rule] = sandbox.faults.rules
    post = asyncio.create_task(_post(http, sandbox, "/upgrade-to-shakesco", UPGRADE))
    for _ in range(200):  # the client gives up once the sandbox has read the request (a loaded
        if rule.held:  # machine may take longer than a short client timeout to get it there)
            break
        await asyncio.sleep(0.005)
    assert rule.held == 1, "the request never reached the sandbox"
    post.cancel()
    with pytest.raises(asyncio.CancelledError):
        await post
    await _lands_later(sandbox)


async def test_commit_late_answers_a_patient_client(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    sandbox.faults.add("commit_late", delay=0.2)
    status, text = await _post(http, sandbox, "/upgrade-to-shakesco", UPGRADE)
    [write] = sandbox.applied_writes()
    assert (status, json.loads(text)) == (200, {"tx_hash": write.tx_hash})


async def test_commit_late_applies_when_the_test_releases_it(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    release = asyncio.Event()
    sandbox.faults.add("commit_late", endpoint="/upgrade-to-shakesco", release=release)
    post = asyncio.create_task(_post(http, sandbox, "/upgrade-to-shakesco", UPGRADE))
    for _ in range(20):  # however long it is held, nothing lands
        await asyncio.sleep(0.01)
    assert sandbox.applied_writes() == [] and not post.done()
    release.set()
    status, _ = await post
    assert status == 200 and len(sandbox.applied_writes()) == 1


async def test_fail_then_commit_answers_at_once_and_applies_later(
    http: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    sandbox.faults.add("fail_then_commit", endpoint="/upgrade-to-shakesco", delay=0.3, status=504)
    status, text = await _post(http, sandbox, "/upgrade-to-shakesco", UPGRADE)
    assert (status, json.loads(text)) == (504, {"error": "Transaction failed"})
    await _lands_later(sandbox)


async def test_fail_then_commit_held_until_released_and_refused_writes_never_land(
    http: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    release = asyncio.Event()
    sandbox.faults.add("fail_then_commit", endpoint="/redeem-tokens", release=release)
    status, _ = await _post(http, sandbox, "/redeem-tokens", {"customer_ref": "nobody", "amount": 5})
    assert status == 502
    release.set()
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert sandbox.applied_writes() == []  # the backend refused it (no balance): nothing applied


async def test_a_write_still_held_when_the_sandbox_stops_is_never_applied() -> None:
    release = asyncio.Event()
    async with Sandbox() as sandbox, aiohttp.ClientSession() as http:
        sandbox.faults.add("fail_then_commit", endpoint="/upgrade-to-shakesco", release=release)
        assert (await _post(http, sandbox, "/upgrade-to-shakesco", UPGRADE))[0] == 502
    release.set()
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert sandbox.applied_writes() == []


async def test_count_and_probability(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    rule = sandbox.faults.add("fail_before_commit", count=2)
    statuses = [(await _post(http, sandbox, "/prune-inactive-stakes", {"customer_ref": "c"}))[0] for _ in range(4)]
    assert statuses == [502, 502, 200, 200]
    assert rule.fired == 2
    sandbox.faults.clear()
    never = sandbox.faults.add("fail_before_commit", probability=0.0)
    assert (await _post(http, sandbox, "/prune-inactive-stakes", {"customer_ref": "c"}))[0] == 200
    assert never.fired == 0


async def test_faults_target_one_endpoint_or_reads(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    sandbox.faults.add("fail_before_commit", endpoint="redeem-tokens")
    assert (await _post(http, sandbox, "/prune-inactive-stakes", {"customer_ref": "c"}))[0] == 200
    sandbox.faults.clear()
    sandbox.faults.add("error", on="read", status=503, message="down")
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    async with http.get(sandbox.base_url + "/balance", params={"customer_ref": "c"}, headers=headers) as resp:
        assert resp.status == 503
    assert (await _post(http, sandbox, "/prune-inactive-stakes", {"customer_ref": "c"}))[0] == 200


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"mode": "drop_after_commit", "endpoint": "/claim-token"}, "did you mean '/claim-tokens'"),
        ({"mode": "reset", "endpoint": "/no-such-thing"}, "no endpoint '/no-such-thing'"),
        ({"mode": "reset", "on": "writes"}, "on must be"),
        ({"mode": "reset", "count": 0}, "count must be at least 1"),
        ({"mode": "reset", "after": -1}, "after must not be negative"),
        ({"mode": "delay", "endpoint": "/balance"}, "needs delay="),
        ({"mode": "delay", "delay": float("inf")}, "finite seconds"),
        ({"mode": "commit_late"}, "a commit_late fault needs delay="),
        ({"mode": "delay", "delay": 1, "release": asyncio.Event()}, "release= holds a commit_late or fail"),
        ({"mode": "fail_then_commit"}, "a fail_then_commit fault needs delay="),
        ({"mode": "commit_late", "release": True}, "release must be an asyncio.Event, got bool"),
        ({"mode": "error", "status": 42}, "HTTP status"),
        ({"mode": "reset", "probability": 2}, "within 0..1"),
        ({"mode": "explode"}, "explode"),
    ],
)
def test_a_rule_that_could_never_fire_is_refused(sandbox: Sandbox, rule: dict[str, Any], error: str) -> None:
    # A user's test built on a misspelt rule would pass without testing anything.
    with pytest.raises(ValueError, match=re.escape(error)):
        sandbox.faults.add(**rule)
    assert sandbox.faults.rules == []


def test_an_endpoint_may_be_named_without_its_slash(sandbox: Sandbox) -> None:
    assert sandbox.faults.add("reset", endpoint="claim-tokens").endpoint == "/claim-tokens"
    assert sandbox.applied_writes("claim-tokens") == []


def test_the_applied_log_refuses_a_path_that_is_no_write(sandbox: Sandbox) -> None:
    # `assert not sandbox.applied_writes("/redeem-token")` would otherwise always pass.
    with pytest.raises(ValueError, match=re.escape("did you mean '/redeem-tokens'")):
        sandbox.applied_writes("/redeem-token")
    with pytest.raises(ValueError, match="no write endpoint '/balance'"):
        sandbox.applied_writes("/balance")


@pytest.mark.parametrize(
    "body",
    [{}, {"customer_ref": "c1"}, {"customer_ref": "", "amount": 1}, {"customer_ref": "c1", "amount": -1}, [1]],
)
async def test_malformed_input_is_400_invalid_parameters(
    http: aiohttp.ClientSession, sandbox: Sandbox, body: Any
) -> None:
    status, text = await _post(http, sandbox, "/redeem-tokens", body)
    assert (status, json.loads(text)) == (400, {"error": "Invalid parameters"})
    assert sandbox.applied_writes() == []


async def test_missing_key_is_401(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    async with http.get(sandbox.base_url + "/token-info") as resp:
        assert resp.status == 401


async def test_200_concurrent_redeems_never_overdraw(http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
    sandbox.business().customer("hot").balance = Decimal("100.000000000000000001")

    async def redeem() -> int:
        return (await _post(http, sandbox, "/redeem-tokens", {"customer_ref": "hot", "amount": "0.7"}))[0]

    statuses = await asyncio.gather(*(redeem() for _ in range(200)))
    ok = statuses.count(200)
    assert ok == 142  # floor(100.000000000000000001 / 0.7)
    assert statuses.count(400) == 58
    customer = sandbox.business().customer("hot")
    assert customer.balance == Decimal("100.000000000000000001") - ok * Decimal("0.7")
    assert customer.balance >= 0
    assert customer.total_spent == ok * Decimal("0.7")
    assert len(sandbox.applied_writes("/redeem-tokens")) == ok
