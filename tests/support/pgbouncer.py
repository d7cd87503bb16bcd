"""A throwaway pgbouncer on loopback in front of the tests' PostgreSQL cluster."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.postgres import _as_postgres, _free_port, wait_for_port


@contextlib.contextmanager
def pgbouncer(dsn: str, *, mode: str) -> Iterator[str]:
    """Yield a DSN reaching ``dsn``'s database through pgbouncer in ``mode`` (session or transaction)."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        raise FileNotFoundError("pgbouncer not found: install it (apt-get install pgbouncer)")
    target = urlsplit(dsn)
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="shakesco-pgbouncer-"))
    (workdir / "users.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"[databases]\npostgres = host={target.hostname} port={target.port} dbname=postgres user=postgres\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n"
        f"auth_file = {workdir}/users.txt\npool_mode = {mode}\ndefault_pool_size = 10\n"
        f"unix_socket_dir =\nlogfile = {workdir}/pgbouncer.log\npidfile = {workdir}/pgbouncer.pid\n"
    )
    if os.geteuid() == 0:  # pgbouncer, too, refuses to run as root
        shutil.chown(workdir, "postgres", "postgres")
        for path in workdir.iterdir():
            shutil.chown(path, "postgres", "postgres")
    subprocess.run(_as_postgres([binary, "-d", str(workdir / "pgbouncer.ini")]), check=True, capture_output=True)
    try:
        wait_for_port(port, 10)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((workdir / "pgbouncer.pid").read_text()), 15)
        shutil.rmtree(workdir, ignore_errors=True)
