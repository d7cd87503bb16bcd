"""The SQLite ledger's file deleted or replaced under a running process: nothing more is sent."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from shakesco_async import LedgerError, ShakescoClient
from shakesco_async.cli import main as cli_main
from shakesco_async.ledger import Intent, KeySource, SQLiteLedger
from shakesco_async.ledger import _filesystems as filesystems
from shakesco_async.sandbox import Sandbox
from tests.conftest import FAST_GUARD
from tests.support.filesystems import mountinfo


def _delete(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        os.remove(f"{path}{suffix}")


def _replace_with_a_copy(path: Path) -> None:  # a restore of a backup, or an editor's save
    shutil.copy(path, f"{path}.copy")
    os.replace(f"{path}.copy", path)


@pytest.mark.parametrize("change", [_delete, _replace_with_a_copy], ids=["deleted", "replaced"])
async def test_writes_stop_once_the_ledger_file_is_not_the_one_opened(
    sandbox: Sandbox, tmp_path: Path, change: Callable[[Path], None]
) -> None:
    path = tmp_path / "ledger.sqlite3"
    async with ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=path, timeout=2.0, guard=FAST_GUARD
    ) as client:
        await client.upgrade_to_shakesco("ann", 1, idempotency_key="before")
        change(path)
        for key in ("after-1", "after-2"):
            with pytest.raises(LedgerError, match="deleted or replaced"):
                await client.upgrade_to_shakesco("bob", 1, idempotency_key=key)
    # SQLite would have recorded these in a file no other process can see, and one
    # would have sent them again.
    assert [w.idempotency_key for w in sandbox.applied_writes()] == ["before"]


# -- a file on a filesystem other hosts mount (a ReadWriteMany volume on NFS or EFS) -------------
def test_the_filesystem_of_a_path_is_its_deepest_latest_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data dir"
    (data / "ledgers").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    info = mountinfo(tmp_path, (str(tmp_path), "tmpfs"), (str(data), "ext4"), (str(data), "nfs4"))
    monkeypatch.setattr(filesystems, "MOUNTINFO", info)
    assert filesystems.filesystem_of(data / "ledgers") == "nfs4"  # mounted over the ext4 one
    assert filesystems.filesystem_of(data) == "nfs4"
    assert filesystems.filesystem_of(tmp_path / "data") == "tmpfs"  # a prefix of the name is not a parent
    monkeypatch.setattr(filesystems, "MOUNTINFO", tmp_path / "missing")
    assert filesystems.filesystem_of(data) is None  # not Linux: nothing known, nothing refused


async def test_a_ledger_file_on_a_shared_filesystem_is_refused_before_anything_is_sent(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    monkeypatch.setattr(filesystems, "MOUNTINFO", mountinfo(tmp_path, (str(shared), "nfs4")))
    path = shared / "ledger.sqlite3"
    async with ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=path, timeout=2.0, guard=FAST_GUARD
    ) as client:
        with pytest.raises(LedgerError, match="on a nfs4 filesystem, which other hosts can mount"):
            await client.upgrade_to_shakesco("ann", 1, idempotency_key="k")
    assert sandbox.applied_writes("/upgrade-to-shakesco") == [] and not path.exists()
    # A share only this host uses can be declared so.
    async with SQLiteLedger(path, business="b", allow_shared_filesystem=True) as ledger:
        assert (await ledger.begin(Intent("k", "/x", {}, ("c",), KeySource.CALLER), owner="o", lease_ttl=1)).created


def test_the_command_line_opens_a_ledger_on_a_shared_filesystem_only_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared"
    path = shared / "ledger.sqlite3"
    monkeypatch.setattr(filesystems, "MOUNTINFO", mountinfo(tmp_path, (str(shared), "nfs4")))
    for name in ("SHAKESCO_LEDGER", "SHAKESCO_LEDGER_SCOPE", "SHAKESCO_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHAKESCO_API_KEY", "sk_cli_test_key")  # reconcile needs one; no entry needs the API

    async def made() -> None:
        async with SQLiteLedger(path, business="b", allow_shared_filesystem=True) as ledger:
            await ledger.begin(Intent("k", "/x", {}, ("c",), KeySource.CALLER), owner="o", lease_ttl=1)

    asyncio.run(made())
    monkeypatch.setenv("SHAKESCO_LEDGER_SCOPE", "b")
    assert cli_main(["ledger", "stats", "--ledger", str(path)]) == 2
    assert "--allow-shared-filesystem" in capsys.readouterr().err
    assert cli_main(["ledger", "stats", "--ledger", str(path), "--allow-shared-filesystem", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recorded"] == 1
    monkeypatch.setenv("SHAKESCO_LEDGER_SCOPE", "another-business")  # nothing for reconcile to send
    assert cli_main(["reconcile", "--ledger", str(path), "--older-than", "0"]) == 2
    assert "--allow-shared-filesystem" in capsys.readouterr().err
    assert cli_main(["reconcile", "--ledger", str(path), "--older-than", "0", "--allow-shared-filesystem"]) == 0
    assert "settled 0 open entries" in capsys.readouterr().out
