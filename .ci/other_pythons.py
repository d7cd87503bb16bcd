"""Print the path of one CPython interpreter for each 3.x minor version from 3.11 on that this
machine has, other than the one running this script (the newest patch release of each).

Looks on PATH (python3.N) and among pyenv's versions; prints nothing when there are none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

candidates = {shutil.which(f"python3.{minor}") for minor in range(11, 20)}
pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
candidates.update(str(p) for p in pyenv_root.glob("versions/3.*/bin/python3"))
best: dict[tuple[int, int], tuple[tuple[int, ...], str]] = {}
for path in sorted(filter(None, candidates)):
    try:  # a pyenv shim for a version not selected fails here, and is skipped
        out = subprocess.run(
            [path, "-c", "import sys; print(*sys.version_info[:3], sys.implementation.name)"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        continue
    version = tuple(int(part) for part in out[:3])
    if out[3] != "cpython" or version < (3, 11) or version[:2] == sys.version_info[:2]:
        continue
    minor = (version[0], version[1])
    if minor not in best or version > best[minor][0]:
        best[minor] = (version, path)
for _, path in sorted(best.values()):
    print(path)
