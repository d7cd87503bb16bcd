"""The SQLite ledger's file deleted or replaced under a running process: nothing more is sent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from shakesco_async import LedgerError, ShakescoClient
from shakesco_async.sandbox import Sandbox
from tests.conftest import FAST_GUARD


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
