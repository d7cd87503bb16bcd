"""Run the ``shakesco-async`` command in a child process, with a clean SHAKESCO_* environment."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``python -m shakesco_async ARGS``."""
    proc = await start_cli(*args, env=env)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def start_cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """``python -m shakesco_async ARGS``, started, its output piped."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SHAKESCO_")} | (env or {})
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shakesco_async",
        *args,
        cwd=ROOT,
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
