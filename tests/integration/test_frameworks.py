"""The examples: FastAPI under httpx's ASGI transport, aiohttp under its test client, the worker."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from examples import aiohttp_app, worker
from shakesco_async import ShakescoClient
from shakesco_async.integrations.aiohttp import SHAKESCO_CLIENT
from shakesco_async.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]


async def test_fastapi_example(seeded: Sandbox) -> None:
    from examples import fastapi_app

    app = fastapi_app.app
    async with app.router.lifespan_context(app):
        client: ShakescoClient = app.state.shakesco
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            seeded.faults.add("drop_after_commit", endpoint="/claim-tokens", count=1)
            first = await http.post("/orders/42/paid", json={"customer_ref": "web-1"})
            again = await http.post("/orders/42/paid", json={"customer_ref": "web-1"})  # a redelivered webhook
        assert first.status_code == 200 and first.json()["status"] == "awarded"
        assert again.json()["balance"] == "5.0"
        session = client._transport._pool.session
        assert session is not None and not session.closed
    assert session.closed  # shutdown closed the client
    assert len(seeded.applied_writes("/claim-tokens")) == 1


async def test_fastapi_example_stages_the_credit_with_the_order(seeded: Sandbox, tmp_path: Path) -> None:
    """The order row and its credit commit together; the sender delivers the credit once."""
    from examples import fastapi_app

    app = fastapi_app.app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            seeded.faults.add("drop_after_commit", endpoint="/claim-tokens", count=1)
            first = await http.post("/orders/5001", json={"customer_ref": "staged-1"})
            again = await http.post("/orders/5001", json={"customer_ref": "staged-1"})  # placed twice
            bad = await http.post("/orders/5002", json={"customer_ref": "   "})
        client: ShakescoClient = app.state.shakesco
        assert await client.balance("staged-1") == 5
    assert first.status_code == 200 and first.json()["status"] == "awarded", first.text
    assert again.json()["status"] == "awarded" and again.json()["tx_hash"] == first.json()["tx_hash"]
    assert bad.status_code == 400
    assert [w.idempotency_key for w in seeded.applied_writes("/claim-tokens")] == ["order:5001"]
    db = sqlite3.connect(tmp_path / "app-ledger.sqlite3")
    assert db.execute("SELECT id FROM orders").fetchall() == [("5001",)]  # the invalid one rolled back
    db.close()


async def test_fastapi_pending_on_outcome_unknown(seeded: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # Once the write can no longer land (its timeout after it left), the reads still fail.
    monkeypatch.setenv("SHAKESCO_TIMEOUT", "0.5")
    from examples import fastapi_app

    app = fastapi_app.app
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        seeded.faults.add("drop_after_commit", endpoint="/claim-tokens", count=1)
        seeded.faults.add("error", endpoint="/total-earned", after=1, status=503)
        response = await http.post("/orders/43/paid", json={"customer_ref": "web-2"})
    assert response.status_code == 202
    assert response.json() == {"status": "pending", "idempotency_key": "order:43"}


async def test_aiohttp_example(seeded: Sandbox) -> None:
    app = aiohttp_app.make_app()
    async with TestClient(TestServer(app)) as http:
        response = await http.post("/orders/7/paid", json={"customer_ref": "aio-1"})
        assert response.status == 200
        assert (await response.json())["status"] == "awarded"
        client = app[SHAKESCO_CLIENT]
        assert client._life.reconciler is not None and not client._life.reconciler.done()
        session = client._transport._pool.session
        assert session is not None and not session.closed
    assert client._life.reconciler is None  # stopped with the app
    assert session.closed
    assert len(seeded.applied_writes("/claim-tokens")) == 1


async def test_worker_example(capsys: pytest.CaptureFixture[str]) -> None:
    await asyncio.wait_for(worker.main(real=False), 60)
    assert "20 awards applied for 20 distinct jobs" in capsys.readouterr().out


@pytest.mark.slow  # another process
async def test_worker_example_stops_cleanly_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "examples/worker.py",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        while b"outcome unknown" not in await proc.stderr.readline():  # mid-run, a verification under way
            pass
        proc.send_signal(signal.SIGTERM)
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"INFO:worker:stopped" in err
    assert b"awards applied" not in out  # it did stop before the end
