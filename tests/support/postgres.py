"""A throwaway PostgreSQL cluster on loopback for the tests (or SHAKESCO_TEST_POSTGRES_DSN)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, seconds: float) -> None:
    """Until something listens on ``port`` of 127.0.0.1 (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise FileNotFoundError(f"{name} not found: install PostgreSQL (apt-get install postgresql)")


@contextlib.contextmanager
def _workdir(prefix: str) -> Iterator[Path]:
    """A directory the postgres user owns, deleted afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if os.geteuid() == 0:
            shutil.chown(workdir, "postgres", "postgres")
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _running(workdir: Path, settings: str = "") -> Iterator[str]:
    """Start the cluster in ``workdir``/data on a free loopback port; yield its DSN; stop it."""
    data, port = workdir / "data", _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={workdir} {settings}"
    subprocess.run(
        _as_postgres([_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(workdir / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        wait_for_port(port, 20)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yield a DSN for a fresh cluster, stopped and deleted afterwards."""
    given = os.environ.get("SHAKESCO_TEST_POSTGRES_DSN")
    if given:
        yield given
        return
    with _workdir("shakesco-pg-") as workdir:
        initdb = [_binary("initdb"), "-A", "trust", "-U", "postgres", "--no-sync"]
        subprocess.run(_as_postgres([*initdb, "-D", str(workdir / "data")]), check=True, capture_output=True)
        with _running(workdir, "-c fsync=on") as dsn:
            yield dsn


@contextlib.contextmanager
def standby_of(dsn: str) -> Iterator[str]:
    """Yield a DSN for a hot standby streaming from the cluster at ``dsn`` (one of ours)."""
    primary_port = dsn.rsplit(":", 1)[1].split("/", 1)[0]
    backup = [_binary("pg_basebackup"), "-h", "127.0.0.1", "-p", primary_port, "-U", "postgres", "-c", "fast"]
    with _workdir("shakesco-pg-standby-") as workdir:
        subprocess.run(
            _as_postgres([*backup, "-D", str(workdir / "data"), "-R", "-X", "stream"]), check=True, capture_output=True
        )
        with _running(workdir, "-c hot_standby=on") as standby:
            yield standby


class Cluster:
    """A throwaway cluster of a test's own, to stop, start and restart under the SDK."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _ctl(self, *args: str) -> None:
        data = str(self.workdir / "data")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.workdir}"
        command = [_binary("pg_ctl"), "-D", data, "-o", options, "-l", str(self.workdir / "log"), "-w", *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True)

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def start(self) -> None:
        self._ctl("start")
        wait_for_port(self.port, 20)

    def restart(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "restart")
        wait_for_port(self.port, 20)


@contextlib.contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A cluster for one test, which it may stop and restart; deleted afterwards."""
    with _workdir("shakesco-pg-own-") as workdir:
        initdb = [_binary("initdb"), "-A", "trust", "-U", "postgres", "--no-sync"]
        subprocess.run(_as_postgres([*initdb, "-D", str(workdir / "data")]), check=True, capture_output=True)
        cluster = Cluster(workdir, _free_port())
        cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                cluster.stop("immediate")
