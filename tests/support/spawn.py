"""Child processes of the tests: a module of this repository run with this Python."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def spawn_module(module: str, *args: str) -> asyncio.subprocess.Process:
    """``python -m module args...`` from the repository's root, its output piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
