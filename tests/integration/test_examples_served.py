"""The web examples run as their docstrings say: the sandbox command in one process, the app
in another (uvicorn, or ``python examples/aiohttp_app.py``), real HTTP between them, on a
fresh sandbox and a fresh ledger."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.postgres import wait_for_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def sandbox_process() -> AsyncIterator[str]:
    """``shakesco-async sandbox`` in a process of its own; yields its base URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shakesco_async", "sandbox", "--port", "0", cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    try:
        yield first.split(" on ")[1].strip()
    finally:
        # SIGTERM, as a service manager stops it: a shell that starts the suite as a
        # background job starts it with SIGINT ignored, which the sandbox then keeps.
        proc.send_signal(signal.SIGTERM)
        try:
            assert await asyncio.wait_for(proc.wait(), 30) == 128 + signal.SIGTERM  # its clean-up ran
        finally:
            await _reap(proc)


async def _serve(args: list[str], base_url: str, tmp_path: Path, port: int) -> asyncio.subprocess.Process:
    """The app on ``port``; a port another process took meanwhile fails it with the reason."""
    env = {
        **os.environ,
        "SHAKESCO_API_KEY": "sk_sandbox_demo",
        "SHAKESCO_BASE_URL": base_url,
        "SHAKESCO_LEDGER": str(tmp_path / "app-ledger.sqlite3"),
        "PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    await asyncio.to_thread(wait_for_port, port, 30)
    await asyncio.sleep(0.2)  # a process that lost the port to another one exits now
    if proc.returncode is not None:
        _, err = await proc.communicate()
        raise AssertionError(f"{args} exited at start: {err.decode()[-2000:]}")
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGINT)  # uvicorn and aiohttp's run_app handle it themselves
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await _reap(proc)
    return err.decode()


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """A process that did not stop is killed: none outlives the test."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def _exercise(url: str, bad_body_status: int) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/orders/1001/paid", json={"customer_ref": "user-7421"}) as first:
            assert first.status == 200, await first.text()
            awarded = await first.json()
        assert awarded["status"] == "awarded" and awarded["balance"] == "5.0"
        async with http.post(f"{url}/orders/1001/paid", json={"customer_ref": "user-7421"}) as again:
            assert again.status == 200 and (await again.json())["balance"] == "5.0"  # a redelivery: applied once
        async with http.post(
            f"{url}/orders/1002/paid", data=b"{not json", headers={"content-type": "application/json"}
        ) as bad:
            assert bad.status == bad_body_status
        async with http.post(f"{url}/orders/1003/paid", json={"customer": "x"}) as missing:
            assert missing.status == bad_body_status
        async with http.post(f"{url}/orders/1004/paid", json={"customer_ref": "   "}) as empty:
            assert empty.status == 400  # the SDK's ValidationError, before anything is recorded


async def test_the_fastapi_example_under_uvicorn(sandbox_process: str, tmp_path: Path) -> None:
    port = _free_port()
    app = await _serve(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", str(port)],
        sandbox_process,
        tmp_path,
        port,
    )
    try:
        await _exercise(f"http://127.0.0.1:{port}", bad_body_status=422)
        # The staged pattern: the order and its credit in one commit.
        order = f"http://127.0.0.1:{port}/orders/1005"
        async with aiohttp.ClientSession() as http, http.post(order, json={"customer_ref": "user-9"}) as placed:
            assert placed.status == 200, await placed.text()
            assert (await placed.json())["status"] == "awarded"
    finally:
        err = await _stop(app)
    assert "Traceback" not in err, err


async def test_the_aiohttp_example_as_a_script(sandbox_process: str, tmp_path: Path) -> None:
    port = _free_port()
    app = await _serve([sys.executable, "examples/aiohttp_app.py"], sandbox_process, tmp_path, port)
    try:
        await _exercise(f"http://127.0.0.1:{port}", bad_body_status=400)
    finally:
        err = await _stop(app)
    assert "Traceback" not in err, err
