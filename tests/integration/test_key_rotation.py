"""A rotated API key keeps its ledger when the client names its scope."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import shakesco_async as sa
from shakesco_async.ledger import KeySource, SQLiteLedger
from shakesco_async.sandbox import Sandbox
from tests.conftest import FAST_GUARD
from tests.guard._crash import die_at
from tests.support.cli import run_cli


def _client(sandbox: Sandbox, ledger: Path, api_key: str, **options: Any) -> sa.ShakescoClient:
    return sa.ShakescoClient(
        api_key, base_url=sandbox.base_url, ledger=ledger, timeout=2.0, guard=FAST_GUARD, **options
    )


async def test_after_a_key_rotation_the_same_scope_replays_and_reconciles(sandbox: Sandbox, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    old_key = sandbox.api_key
    async with _client(sandbox, ledger, old_key, ledger_scope="acme-prod") as old:
        first = await old.upgrade_to_shakesco("u1", 10, idempotency_key="migrate:u1")
        await old.set_event_details("visit", 1, False)
        await die_at(old, "sending_applied", "claim:u2", "u2", KeySource.CALLER)  # the process died
    await asyncio.sleep(0.06)
    sandbox.rotate_key(old_key, "sk_rotated")

    async with _client(sandbox, ledger, "sk_rotated", ledger_scope="acme-prod") as new:
        again = await new.upgrade_to_shakesco("u1", 10, idempotency_key="migrate:u1")
        assert again.replayed and again.tx_hash == first.tx_hash
        summary = await new.reconcile(older_than=0)
        assert summary.counts["committed"] == 1  # the entry the old key left open
    assert len(sandbox.applied_writes(idempotency_key="migrate:u1")) == 1
    assert len(sandbox.applied_writes(idempotency_key="claim:u2")) == 1


async def test_without_a_scope_a_new_key_sees_none_of_the_old_entries(sandbox: Sandbox, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    async with _client(sandbox, ledger, sandbox.api_key) as old:
        await old.upgrade_to_shakesco("u1", 10, idempotency_key="migrate:u1")
    sandbox.rotate_key(sandbox.api_key, "sk_rotated")
    async with _client(sandbox, ledger, "sk_rotated") as new:
        assert await new.ledger.get("migrate:u1") is None  # why the README says to set a scope


async def test_the_scope_comes_from_the_environment(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHAKESCO_LEDGER_SCOPE", "from-env")
    async with _client(sandbox, tmp_path / "ledger.sqlite3", sandbox.api_key) as client:
        assert client.ledger.business == "from-env"
    async with _client(sandbox, tmp_path / "ledger.sqlite3", sandbox.api_key, ledger_scope="explicit") as client:
        assert client.ledger.business == "explicit"


@pytest.mark.parametrize("scope", ["", "   ", "*", "x" * 129, "line\nbreak", 5])
def test_a_bad_scope_is_refused(tmp_path: Path, scope: Any) -> None:
    with pytest.raises(sa.ConfigurationError, match="ledger_scope"):
        sa.ShakescoClient("sk_test", ledger=tmp_path / "l.sqlite3", ledger_scope=scope)
    assert not (tmp_path / "l.sqlite3").exists()


def test_the_api_key_is_refused_as_a_scope(tmp_path: Path) -> None:
    with pytest.raises(sa.ConfigurationError, match="must not be the API key") as info:
        sa.ShakescoClient("sk_secret_123", ledger=tmp_path / "l.sqlite3", ledger_scope="sk_secret_123")
    assert "sk_secret_123" not in str(info.value)
    assert not (tmp_path / "l.sqlite3").exists()


def test_a_scope_with_a_ledger_instance_is_refused(tmp_path: Path) -> None:
    with pytest.raises(sa.ConfigurationError, match="business="):
        sa.ShakescoClient("sk_test", ledger=SQLiteLedger(tmp_path / "l.sqlite3", business="b"), ledger_scope="acme")


async def test_a_rotated_key_answers_401(sandbox: Sandbox, tmp_path: Path) -> None:
    old_key = sandbox.api_key
    sandbox.rotate_key(old_key, "sk_rotated")
    async with _client(sandbox, tmp_path / "ledger.sqlite3", old_key) as stale:
        with pytest.raises(sa.Unauthorized):
            await stale.balance("u1")


async def test_the_cli_reads_the_scope_from_the_environment(sandbox: Sandbox, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    async with _client(sandbox, ledger, sandbox.api_key, ledger_scope="acme-prod") as client:
        await client.upgrade_to_shakesco("u1", 10, idempotency_key="migrate:u1")
    env = {"SHAKESCO_API_KEY": "sk_rotated", "SHAKESCO_LEDGER_SCOPE": "acme-prod"}
    code, out, err = await run_cli("ledger", "show", "migrate:u1", "--json", "--ledger", str(ledger), env=env)
    assert code == 0, err
    assert json.loads(out)["state"] == "committed"
    other = {"SHAKESCO_API_KEY": "sk_x"}
    code, _, _ = await run_cli("ledger", "show", "migrate:u1", "--ledger", str(ledger), env=other)
    assert code == 1  # another key's scope: not there
