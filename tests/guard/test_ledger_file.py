"""The SQLite ledger's file deleted or replaced under a running process: nothing more is sent."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shakesco_async import LedgerError, ShakescoClient
from shakesco_async.cli import _ledger as cli_ledger
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


def _remove(*suffixes: str) -> Callable[[Path], None]:
    return lambda path: [os.remove(f"{path}{suffix}") for suffix in suffixes] and None


CHANGES = {
    "deleted": (_delete, "was deleted or replaced"),
    "replaced": (_replace_with_a_copy, "was deleted or replaced"),
    "wal": (_remove("-wal"), "lost its -wal file"),
    "shm": (_remove("-shm"), "lost its -shm file"),
    "wal-and-shm": (_remove("-wal", "-shm"), "lost its -wal file"),
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_writes_stop_once_the_ledger_file_is_not_the_one_opened(
    sandbox: Sandbox, tmp_path: Path, change: str
) -> None:
    """The file, or its -wal or -shm beside it, deleted or replaced under a running process."""
    alter, says = CHANGES[change]
    path = tmp_path / "ledger.sqlite3"
    async with ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=path, timeout=2.0, guard=FAST_GUARD
    ) as client:
        await client.upgrade_to_shakesco("ann", 1, idempotency_key="before")
        alter(path)
        for key in ("after-1", "after-2"):
            with pytest.raises(LedgerError, match=says):
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

    async def key_is_good(_: object) -> None:
        return None

    monkeypatch.setattr(cli_ledger, "_prove_the_key", key_is_good)  # no API here to prove it with

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
    assert "examined 0 open entries" in capsys.readouterr().out


# -- a writer killed after its -wal was deleted ------------------------------------------------------
_WRITER = """
import asyncio, sys
from shakesco_async import GuardSettings, LedgerError, ShakescoClient

async def main(base_url, key, path):
    guard = GuardSettings(verify_delay=0.0, lease_ttl=5.0)
    async with ShakescoClient(key, base_url=base_url, ledger=path, timeout=2.0, guard=guard) as client:
        for n in range(3):
            await client.upgrade_to_shakesco(f"c{n}", 1, idempotency_key=f"before-{n}")
        print("ready", flush=True)
        sys.stdin.readline()  # the test deletes -wal and -shm meanwhile
        try:
            await client.upgrade_to_shakesco("late", 1, idempotency_key="after")
            print("sent", flush=True)
        except LedgerError:
            print("refused", flush=True)
        await asyncio.sleep(3600)  # SIGKILLed here

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_writer_killed_after_its_wal_was_deleted_loses_no_entry(sandbox: Sandbox, tmp_path: Path) -> None:
    """Entries between checkpoints live in the -wal: deleted under a running writer, they
    would be gone for the next process, which would send their writes again."""
    path = tmp_path / "ledger.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WRITER,
        sandbox.base_url,
        sandbox.api_key,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        _delete_journal(path)
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"refused\n"
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        await proc.wait()
    async with ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=path, timeout=2.0, guard=FAST_GUARD
    ) as client:
        for n in range(3):  # a redelivered job: answered from the ledger, not sent again
            assert (await client.upgrade_to_shakesco(f"c{n}", 1, idempotency_key=f"before-{n}")).replayed
        await client.upgrade_to_shakesco("late", 1, idempotency_key="after")  # never sent: sent now, once
    keys = sorted(str(w.idempotency_key) for w in sandbox.applied_writes())
    assert keys == ["after", "before-0", "before-1", "before-2"]


def _delete_journal(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        os.remove(f"{path}{suffix}")
