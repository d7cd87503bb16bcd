"""A SQLite lease ends once the process that took it has exited, and only then."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shakesco_async import ShakescoClient
from shakesco_async.ledger import KeySource, SQLiteLedger
from shakesco_async.ledger import _processes as processes
from shakesco_async.sandbox import Sandbox
from tests.conftest import FAST_GUARD
from tests.guard._crash import die_at
from tests.support.ledgers import sqlite_execute

pytestmark = pytest.mark.skipif(not processes.this_process(), reason="needs Linux's /proc")


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_process_has_not_exited(child: subprocess.Popen[bytes]) -> None:
    me = processes.this_process()
    assert me == processes.identity_of(os.getpid())
    assert not processes.exited(me)
    them = processes.identity_of(child.pid)
    assert them and them != me
    assert not processes.exited(them)


def test_a_killed_process_has_exited_reaped_or_not(child: subprocess.Popen[bytes]) -> None:
    them = processes.identity_of(child.pid)
    child.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10  # the kill takes effect once the child is scheduled
    while not processes.exited(them) and time.monotonic() < deadline:  # a zombie until reaped
        time.sleep(0.001)
    assert processes.exited(them)
    child.wait()
    assert processes.exited(them)


def test_a_pid_that_now_names_another_process_has_exited(child: subprocess.Popen[bytes]) -> None:
    namespace, pid, started = processes.identity_of(child.pid).rsplit("/", 2)
    assert processes.exited(f"{namespace}/{pid}/{int(started) + 1}")  # same pid, another start


@pytest.mark.parametrize(
    "identity",
    [
        "",
        "garbage",
        "{boot}:pid:[1]/{pid}/{started}",
        "{pidns}time:[1]/{pid}/{started}",
        "another-boot:{boot_less}/{pid}/{started}",
        "{ns}/0/1",
        "{ns}/-1/1",
        "{ns}/x/1",
        "{ns}/{pid}",
    ],
    ids=[
        "empty",
        "garbage",
        "another-pid-namespace",
        "another-time-namespace",  # its start times count from another boot time
        "another-boot",  # start times count from boot
        "pid-0",
        "pid-negative",
        "not-a-pid",
        "no-start",
    ],
)
def test_what_cannot_be_told_counts_as_alive(child: subprocess.Popen[bytes], identity: str) -> None:
    namespace, pid, started = processes.identity_of(child.pid).rsplit("/", 2)
    child.kill()
    child.wait()  # it has exited: only a sound identity may say so
    assert processes.exited(f"{namespace}/{pid}/{started}")
    boot, _, boot_less = namespace.partition(":")
    parts = {"ns": namespace, "boot": boot, "boot_less": boot_less, "pid": pid, "started": started}
    assert not processes.exited(identity.format(pidns=namespace.partition("time:")[0], **parts))


def _exited_identity() -> str:
    # It waits to be told to end: one that ended before its identity was read has none.
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    identity = processes.identity_of(proc.pid)
    proc.communicate()
    assert identity and processes.exited(identity)
    return identity


async def test_the_ledger_ends_a_lease_whose_process_exited(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    dead = _exited_identity()
    async with SQLiteLedger(path, business="b") as ledger:
        assert await ledger.acquire(("c",), owner="them:1", lease_ttl=300) is None
        assert await ledger.acquire(("c",), owner="us:1", lease_ttl=300) is not None  # their process lives: ours
        sqlite_execute(path, "UPDATE leases SET holder = ? WHERE customer = 'c'", (f"{dead}|them:1",))
        assert await ledger.acquire(("c",), owner="us:1", lease_ttl=300) is None
        db = sqlite3.connect(path)
        try:
            [(holder,)] = db.execute("SELECT holder FROM leases WHERE customer = 'c'").fetchall()
        finally:
            db.close()
        assert holder == f"{processes.this_process()}|us:1"  # taken over: this process holds it now
        assert await ledger.acquire(("c",), owner="us:2", lease_ttl=300) is not None


@pytest.mark.parametrize(
    ("rewrite", "holder"),
    [
        # An SDK of ledger schema 5 takes a lease over without writing its holder: the row
        # then names the process of the lease before, which may have exited long ago.
        ("UPDATE leases SET owner = 'old-sdk:1', holder = ? WHERE customer = 'c'", "{dead}|them:1"),
        # A start time counts from its boot: a process of another boot tells nothing.
        ("UPDATE leases SET holder = ? WHERE customer = 'c'", "another-boot:{boot_less}|them:1"),
    ],
    ids=["taken-over-by-an-older-sdk", "another-boot"],
)
async def test_a_holder_the_row_cannot_vouch_for_is_not_believed(tmp_path: Path, rewrite: str, holder: str) -> None:
    path = tmp_path / "ledger.sqlite3"
    dead = _exited_identity()
    async with SQLiteLedger(path, business="b") as ledger:
        assert await ledger.acquire(("c",), owner="them:1", lease_ttl=300) is None
        sqlite_execute(path, rewrite, (holder.format(dead=dead, boot_less=dead.partition(":")[2]),))
        assert await ledger.acquire(("c",), owner="us:1", lease_ttl=300) is not None  # judged by its clocks


def test_without_a_proc_of_this_namespace_nothing_has_exited(
    child: subprocess.Popen[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    them = processes.identity_of(child.pid)
    child.kill()
    child.wait()
    assert processes.exited(them)
    # A /proc of another pid namespace (or none): /proc/self does not name this process.
    (tmp_path / "self").symlink_to(tmp_path / "1")
    monkeypatch.setattr(processes, "_PROC", tmp_path)
    monkeypatch.setattr(processes, "_this", (-1, ""))
    assert processes.this_process() == ""
    assert not processes.exited(them)


def test_a_process_proc_hides_is_alive(child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    # Mounted with hidepid, /proc shows only this user's processes; kill(pid, 0) still tells.
    them = processes.identity_of(child.pid)
    dead = _exited_identity()

    def hidden(pid: int) -> tuple[str, str]:
        raise FileNotFoundError(pid)

    monkeypatch.setattr(processes, "_stat", hidden)
    assert not processes.exited(them)
    assert processes.exited(dead)


@pytest.mark.parametrize("claimer", ["exited", "alive"])
async def test_a_pass_takes_over_what_an_exited_reconciler_claimed(
    sandbox: Sandbox, tmp_path: Path, claimer: str
) -> None:
    # A reconciler killed mid-pass (SIGKILL, OOM) leaves its pages claimed for five minutes;
    # once its process is seen to have exited, the next pass settles them at once.
    path = tmp_path / "ledger.sqlite3"
    async with ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=path, timeout=2.0, guard=FAST_GUARD
    ) as client:
        for n in range(3):
            await die_at(client, "sending_applied", f"k{n}", f"c{n}", KeySource.CALLER)
        await asyncio.sleep(0.06)  # the dead writer's leases lapse
        claimed = await client.ledger.claim_open(owner="reconcile:x:0", older_than=0, limit=None, ttl=300)
        assert len(claimed) == 3
        if claimer == "exited":
            holder = f"{_exited_identity()}|reconcile:x:0"
            sqlite_execute(path, "UPDATE entries SET claimed_holder = ? WHERE claimed_by = 'reconcile:x:0'", (holder,))
        summary = await client.reconcile(older_than=0)
        assert summary.examined == (3 if claimer == "exited" else 0)  # a live one's claims are its own
        assert summary.counts.get("committed", 0) == summary.examined
