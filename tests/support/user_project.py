"""Run pytest in a project of a user's: its own pytest.ini, its own test file, a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_users_pytest(directory: Path, mode: str, test_file: str) -> subprocess.CompletedProcess[str]:
    """pytest on ``test_file`` (its text) in ``directory``, pytest-asyncio in ``mode``
    ("strict", its default, or "auto"), as the SDK's users run their suites."""
    (directory / "pytest.ini").write_text(
        f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n"
    )
    (directory / "test_users.py").write_text(test_file)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_users.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
