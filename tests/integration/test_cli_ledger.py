"""The ledger and reconcile commands on a real ledger file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest

import shakesco_async as sa
from shakesco_async.ledger import KeySource
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.guard._crash import die_at
from tests.support.cli import run_cli as _cli
from tests.support.cli import start_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def ledger_file(make_client: ClientFactory, sandbox: Sandbox, tmp_path: Path) -> Path:
    """A ledger with one entry in each interesting state."""
    client = make_client()
    await client.upgrade_to_shakesco("ann", 10, idempotency_key="ok-1")
    with pytest.raises(sa.InsufficientBalance):
        await client.redeem_tokens("bob", 5, idempotency_key="fail-1")
    await die_at(client, "sending_applied", "crash-1", "cat", KeySource.CALLER)
    await client.aclose()
    await asyncio.sleep(0.06)
    return tmp_path / "ledger.sqlite3"


async def test_list_show_stats_export(ledger_file: Path) -> None:
    code, out, _ = await _cli("ledger", "list", "--ledger", str(ledger_file), "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["key"], r["state"]) for r in rows] == [
        ("ok-1", "committed"),
        ("fail-1", "failed"),
        ("crash-1", "sending"),
    ]
    code, out, _ = await _cli("ledger", "list", "--ledger", str(ledger_file), "--state", "failed", "--json")
    assert [r["key"] for r in json.loads(out)] == ["fail-1"]
    code, out, _ = await _cli("ledger", "list", "--ledger", str(ledger_file), "--customer", "ann", "--json")
    assert [r["key"] for r in json.loads(out)] == ["ok-1"]
    code, out, _ = await _cli("ledger", "list", "--ledger", str(ledger_file))
    assert code == 0 and "crash-1" in out and "state" in out.splitlines()[0]

    code, out, _ = await _cli("ledger", "show", "fail-1", "--ledger", str(ledger_file), "--json")
    shown = json.loads(out)
    assert shown["error"]["class"] == "InsufficientBalance"
    assert shown["params"] == {"customer_ref": "bob", "amount": "5"}
    code, _, err = await _cli("ledger", "show", "nope", "--ledger", str(ledger_file))
    assert code == 1 and "no entry" in err

    code, out, _ = await _cli("ledger", "stats", "--ledger", str(ledger_file), "--json")
    assert json.loads(out) | {} == {
        "staged": 0,
        "recorded": 0,
        "sending": 1,
        "committed": 1,
        "failed": 1,
        "in_doubt": 0,
        "abandoned": 0,
    }

    code, out, _ = await _cli("ledger", "export", "--format", "jsonl", "--ledger", str(ledger_file))
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["ok-1", "fail-1", "crash-1"]
    code, out, _ = await _cli("ledger", "export", "--format", "csv", "--ledger", str(ledger_file))
    records = list(csv.DictReader(io.StringIO(out)))
    assert [r["state"] for r in records] == ["committed", "failed", "sending"]


async def test_missing_ledger_is_an_error(tmp_path: Path) -> None:
    code, _, err = await _cli("ledger", "stats", "--ledger", str(tmp_path / "none.sqlite3"))
    assert code != 0 and "no ledger" in err
    assert not (tmp_path / "none.sqlite3").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("ledger", "list", "--limit", "-5"),
        ("ledger", "list", "--limit", "0"),
        ("reconcile", "--limit", "0"),
        ("ledger", "move-to-postgres", "postgresql://127.0.0.1:1/x", "--recent-days", "-1"),
        ("ledger", "prune", "--older-than-days", "0.5"),
        ("ledger", "prune", "--older-than-days", "inf"),
    ],
)
async def test_bad_options_are_refused(ledger_file: Path, args: tuple[str, ...]) -> None:
    code, out, err = await _cli(*args, "--ledger", str(ledger_file))
    assert code == 2 and "must" in err and out == ""


async def test_prune_command(ledger_file: Path, sandbox: Sandbox) -> None:
    env = {"SHAKESCO_API_KEY": sandbox.api_key}
    code, out, _ = await _cli(
        "ledger", "prune", "--older-than-days", "1", "--json", "--ledger", str(ledger_file), env=env
    )
    assert (code, json.loads(out)) == (0, {"pruned": 0})  # nothing is a day old
    db = sqlite3.connect(ledger_file)  # two days pass
    with db:
        db.execute("UPDATE entries SET created_at = created_at - 172800, updated_at = updated_at - 172800")
    db.close()
    code, _, err = await _cli("ledger", "prune", "--older-than-days", "1", "--ledger", str(ledger_file))
    assert code == 2 and "SHAKESCO_API_KEY" in err  # no business named: nothing deleted
    code, out, _ = await _cli("ledger", "prune", "--older-than-days", "1", "--ledger", str(ledger_file), env=env)
    assert code == 0 and "pruned 2 final entries" in out
    code, out, _ = await _cli("ledger", "list", "--json", "--ledger", str(ledger_file), env=env)
    assert [e["key"] for e in json.loads(out)] == ["crash-1"]  # the open entry stays


async def test_reconcile_command(ledger_file: Path, sandbox: Sandbox) -> None:
    env = {"SHAKESCO_API_KEY": sandbox.api_key, "SHAKESCO_BASE_URL": sandbox.base_url}
    code, out, _ = await _cli(
        "reconcile", "--dry-run", "--older-than", "0", "--json", "--ledger", str(ledger_file), env=env
    )
    assert code == 0
    assert json.loads(out)["counts"]["committed"] == 1
    code, out, _ = await _cli("ledger", "stats", "--json", "--ledger", str(ledger_file), env=env)
    assert json.loads(out)["sending"] == 1  # the dry run changed nothing

    code, out, _ = await _cli("reconcile", "--older-than", "0", "--ledger", str(ledger_file), env=env)
    assert code == 0 and "examined 1 open entry: settled 1, in doubt 0" in out
    assert "verified applied, recorded  1" in out
    code, out, _ = await _cli("ledger", "stats", "--json", "--ledger", str(ledger_file), env=env)
    assert json.loads(out)["committed"] == 2
    assert len(sandbox.applied_writes(idempotency_key="crash-1")) == 1


async def test_reconcile_exits_non_zero_while_in_doubt(
    make_client: ClientFactory, sandbox: Sandbox, tmp_path: Path
) -> None:
    client = make_client(timeout=0.5)
    await client.upgrade_to_shakesco("dan", 50)
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
    with pytest.raises(sa.OutcomeUnknown):
        await client.redeem_tokens("dan", 5, idempotency_key="doubt-cli")
    await client.aclose()
    env = {"SHAKESCO_API_KEY": sandbox.api_key, "SHAKESCO_BASE_URL": sandbox.base_url}
    ledger = str(tmp_path / "ledger.sqlite3")
    code, out, _ = await _cli("reconcile", "--older-than", "0", "--json", "--ledger", ledger, env=env)
    assert code == 3
    assert [d["key"] for d in json.loads(out)["in_doubt"]] == ["doubt-cli"]
    sandbox.faults.clear()
    code, out, _ = await _cli("reconcile", "--older-than", "0", "--json", "--ledger", ledger, env=env)
    assert code == 0
    assert json.loads(out)["counts"]["committed"] == 1


@pytest.mark.slow  # another process
async def test_reconcile_stopped_by_sigterm_gives_back_its_claims_and_leases(
    make_client: ClientFactory, sandbox: Sandbox, tmp_path: Path
) -> None:
    # systemd, Kubernetes and `docker stop` send SIGTERM: it must end the command as Ctrl-C
    # does, not kill it with its claims and leases held (they would block the customers'
    # writes, and the next reconcile, until they lapse).
    client = make_client(timeout=0.3)  # each doubt is declared once its claim can no longer land
    await client.set_event_details("signup", 5, True)
    await client.claim_tokens("signup", "first")  # the event is known one-time: no read before a claim
    sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens")
    sandbox.faults.add("error", on="read", status=503)
    for n in range(12):
        with pytest.raises(sa.OutcomeUnknown):
            await client.claim_tokens("signup", f"c{n}", idempotency_key=f"doubt-{n}")
    await client.aclose()
    sandbox.faults.clear()
    slow = sandbox.faults.add("delay", on="read", delay=0.5)
    env = {"SHAKESCO_API_KEY": sandbox.api_key, "SHAKESCO_BASE_URL": sandbox.base_url}
    ledger = str(tmp_path / "ledger.sqlite3")
    proc = await start_cli("reconcile", "--older-than", "0", "--concurrency", "2", "--ledger", ledger, env=env)
    async with asyncio.timeout(30):
        while not slow.fired:  # noqa: ASYNC110 (another process): the pass has claimed, and reads
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
    assert proc.returncode == 143, err.decode()
    assert "stopped" in err.decode()
    db = sqlite3.connect(ledger)
    try:
        claimed = db.execute("SELECT COUNT(*) FROM entries WHERE claimed_by IS NOT NULL").fetchone()[0]
        leased = db.execute("SELECT COUNT(*) FROM leases WHERE expires_at > ?", (time.time(),)).fetchone()[0]
        open_ = db.execute("SELECT COUNT(*) FROM entries WHERE state = 'in_doubt'").fetchone()[0]
    finally:
        db.close()
    assert (claimed, leased) == (0, 0)
    assert open_ > 0, "the pass must have been stopped before it settled everything"
    sandbox.faults.clear()
    code, out, _ = await _cli("reconcile", "--older-than", "0", "--json", "--ledger", ledger, env=env)
    assert code == 0 and json.loads(out)["counts"]["committed"] == open_  # nothing left held


async def test_reconcile_without_a_key_is_a_clear_error(ledger_file: Path) -> None:
    code, _, err = await _cli("reconcile", "--ledger", str(ledger_file))
    assert code == 2 and "SHAKESCO_API_KEY" in err
