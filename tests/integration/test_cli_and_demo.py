"""The README's main command, the sandbox command line and the pytest plugin."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import pytest

from shakesco_async import ShakescoClient
from shakesco_async._demo import run_demo
from shakesco_async.cli._sandbox import parse_fault
from shakesco_async.sandbox import FaultMode, Sandbox
from tests.support.cli import run_cli
from tests.support.user_project import run_users_pytest

ROOT = Path(__file__).resolve().parents[2]


async def test_demo_runs_and_shows_the_guard(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_demo() == 0
    out = capsys.readouterr().out
    assert "verified=True" in out
    assert "times the API applied it: 1" in out
    assert "receipt: verified=True; times applied: 1 (sent again at once" in out
    assert "every idempotency key applied at most once: yes" in out


def test_parse_fault() -> None:
    assert parse_fault("drop_after_commit,endpoint=/claim-tokens,count=3,probability=0.5") == {
        "mode": FaultMode.DROP_AFTER_COMMIT,
        "endpoint": "/claim-tokens",
        "count": 3,
        "probability": 0.5,
    }
    for bad in ("nope", "reset,count", "reset,count=x", "reset,colour=red"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_fault(bad)


async def test_sandbox_command_serves_with_faults(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shakesco_async.sandbox",
        "--port",
        "0",
        "--fault",
        "fail_before_commit,endpoint=/upgrade-to-shakesco,count=1",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        base_url = first.split(" on ")[1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        async with ShakescoClient(
            "sk_sandbox_demo", base_url=base_url, ledger=tmp_path / "l.sqlite3", timeout=0.5
        ) as client:
            assert await client.event_counter() == 0
            receipt = await client.upgrade_to_shakesco("x", 2)  # 502 first, verified, sent again
            assert receipt.tx_hash is not None
            assert await client.balance("x") == 2
    finally:
        proc.terminate()
        await proc.wait()


async def test_pytest_plugin_fixture(shakesco_sandbox: Sandbox, tmp_path: Path) -> None:
    async with ShakescoClient(
        shakesco_sandbox.api_key, base_url=shakesco_sandbox.base_url, ledger=tmp_path / "p.sqlite3"
    ) as client:
        await client.upgrade_to_shakesco("plugin-user", 3)
        assert await client.balance("plugin-user") == 3
    assert len(shakesco_sandbox.applied) == 1


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_pytest_plugin_fixture_in_a_users_project(tmp_path: Path, mode: str) -> None:
    """The fixture as a user's suite gets it: pytest-asyncio's default mode is strict, where
    only fixtures it was told about are run (a plain async fixture is an error there)."""
    run = run_users_pytest(
        tmp_path,
        mode,
        "import pytest\n"
        "from shakesco_async import ShakescoClient\n\n\n"
        "@pytest.mark.asyncio\n"
        "async def test_award(shakesco_sandbox, tmp_path):\n"
        "    async with ShakescoClient(\n"
        "        shakesco_sandbox.api_key, base_url=shakesco_sandbox.base_url, ledger=tmp_path / 'l.sqlite3'\n"
        "    ) as client:\n"
        "        await client.upgrade_to_shakesco('u1', 3)\n"
        "    assert len(shakesco_sandbox.applied) == 1\n",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


async def test_sandbox_command_refuses_a_fault_that_could_never_fire() -> None:
    code, out, err = await run_cli("sandbox", "--port", "0", "--fault", "drop_after_commit,endpoint=/claim-token")
    assert code == 1 and out == ""  # refused before serving
    assert "did you mean '/claim-tokens'" in err
