"""The Python examples of the README and the documentation pages, run as a reader would run
them: none of them may rot."""

from __future__ import annotations

import asyncio
import re
import shlex
import sqlite3
import sys
from pathlib import Path

import httpx
import pytest

from shakesco_async import ShakescoClient
from shakesco_async.sandbox import Sandbox
from tests.support.cli import run_cli
from tests.support.user_project import run_users_pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "\n".join(page.read_text() for page in PAGES)
BLOCKS: list[str] = re.findall(r"^```python\n(.*?)^```", TEXT, flags=re.MULTILINE | re.DOTALL)
SHELL: list[str] = re.findall(r"^```sh\n(.*?)^```", TEXT, flags=re.MULTILINE | re.DOTALL)
# What marks each example; every Python block of the README must be one of them.
MARKS = {
    "quickstart": "asyncio.run(main())",
    "reconcile": "client.reconcile(",
    "fastapi": "FastAPI(",
    "sandbox": "async def test_",
    "metrics": "set_instrumentation_hooks(",
    "staged": "client.transaction(",
}


def example(name: str) -> str:
    found = [block for block in BLOCKS if MARKS[name] in block]
    assert len(found) == 1, f"README and docs: expected one Python block with {MARKS[name]!r}, found {len(found)}"
    return found[0]


def test_every_python_block_of_the_readme_and_docs_is_run_here() -> None:
    unclaimed = [block[:60] for block in BLOCKS if not any(mark in block for mark in MARKS.values())]
    assert len(BLOCKS) == len(MARKS) and not unclaimed, f"blocks no test runs: {unclaimed}"


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text()) < 10_000  # the depth is in docs/


async def _run_example(name: str, sandbox: Sandbox, tmp_path: Path) -> str:
    """Run the docs' ``name`` block as a script in ``tmp_path``, against the sandbox; its output."""
    (tmp_path / f"{name}.py").write_text(example(name))
    env = {"SHAKESCO_API_KEY": sandbox.api_key, "SHAKESCO_BASE_URL": sandbox.base_url, "PATH": ""}
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        sys.executable, f"{name}.py", cwd=tmp_path, env=env, stdout=pipe, stderr=pipe
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_quickstart(sandbox: Sandbox, tmp_path: Path) -> None:
    # Run again, as after a crash: the same key answers from the ledger.
    outputs = [(await _run_example("quickstart", sandbox, tmp_path)).split() for _ in range(2)]
    assert outputs[0] == outputs[1]
    tx_hash, balance = outputs[0]
    assert tx_hash.startswith("0x") and balance == "50.0"
    assert len(sandbox.applied_writes("/claim-tokens")) == 1
    assert (tmp_path / "shakesco-ledger.sqlite3").exists()  # the default ledger file, where the comment says


async def test_staged_example(sandbox: Sandbox, tmp_path: Path) -> None:
    """The order and its credit in one commit; the sender delivers it; result_of answers."""
    async with ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger=tmp_path / "x.sqlite3") as setup:
        await setup.set_event_details("purchase", 5, False)
    out = await _run_example("staged", sandbox, tmp_path)
    assert out.strip().startswith("0x")
    assert [w.idempotency_key for w in sandbox.applied_writes("/claim-tokens")] == ["order:1001"]
    db = sqlite3.connect(tmp_path / "shakesco-ledger.sqlite3")
    assert db.execute("SELECT id, customer FROM orders").fetchall() == [("1001", "user-7421")]
    db.close()


async def test_reconcile_example(client: ShakescoClient, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    await client.set_event_details("signup", 5, True)
    sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", count=1)
    sandbox.faults.add("error", endpoint="/has-claimed-event", status=503)
    with pytest.raises(Exception, match="outcome"):
        await client.claim_tokens("signup", "u1", idempotency_key="signup:u1")
    sandbox.faults.clear()
    text = example("reconcile").replace("older_than=30", "older_than=0")  # the entry is a moment old
    body = "".join(f"    {line}\n" for line in text.splitlines())
    namespace: dict[str, object] = {}
    exec(f"async def run(client):\n{body}", namespace)
    await namespace["run"](client)  # type: ignore[operator]
    assert "'committed': 1" in capsys.readouterr().out
    assert client._life.reconciler is not None and not client._life.reconciler.done()


async def test_fastapi_example(seeded: Sandbox) -> None:
    namespace: dict[str, object] = {}
    exec(compile(example("fastapi"), "README.md", "exec"), namespace)
    app = namespace["app"]
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            answers = [await http.post("/orders/7/paid", params={"customer_ref": "web-1"}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    first, again = (a.json() for a in answers)
    assert again == {**first, "replayed": True}  # a redelivered webhook: answered from the ledger
    assert first["tx_hash"].startswith("0x") and first["replayed"] is False
    assert len(seeded.applied_writes("/claim-tokens")) == 1


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_sandbox_example_in_a_users_project(tmp_path: Path, mode: str) -> None:
    run = run_users_pytest(tmp_path, mode, example("sandbox"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


async def test_ledger_commands(sandbox: Sandbox, tmp_path: Path) -> None:
    """Each line of the README's block of ledger and reconcile commands, on a ledger that
    has the entry it shows."""
    [block] = [b for b in SHELL if "shakesco-async ledger stats" in b]
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    env = {
        "SHAKESCO_API_KEY": sandbox.api_key,
        "SHAKESCO_BASE_URL": sandbox.base_url,
        "SHAKESCO_LEDGER": str(tmp_path / "ledger.sqlite3"),
    }
    async with ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger=env["SHAKESCO_LEDGER"]) as client:
        await client.upgrade_to_shakesco("user-7421", 10, idempotency_key="order:1001")
    assert len(lines) >= 5 and all(line[0] == "shakesco-async" for line in lines)
    for line in lines:
        code, out, err = await run_cli(*line[1:], env=env)
        assert code == 0, f"{shlex.join(line)}: {err}"
        if line[1:3] == ["ledger", "show"]:
            assert "committed" in out


async def test_metrics_example(client: ShakescoClient) -> None:
    namespace: dict[str, object] = {}
    exec(compile(example("metrics"), "README.md", "exec"), namespace)
    try:
        await client.upgrade_to_shakesco("ann", 5, idempotency_key="readme-metrics")
        await client.upgrade_to_shakesco("ann", 5, idempotency_key="readme-metrics")
    finally:
        import shakesco_async

        shakesco_async.set_instrumentation_hooks([])
    assert namespace["outcomes"] == {("write", "applied"): 1, ("write", "replayed"): 1}
