"""Print pip constraints pinning each runtime dependency to the oldest version pyproject.toml allows.

Read from pyproject.toml itself, so the floors CI tests are the floors users are promised.
A floor must name a release that exists (pip refuses ``cattrs==23.2``: there is no 23.2.0).
Development tools (the ``dev`` extra's own entries) are left to resolve as usual.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
groups = [project["dependencies"], *(deps for name, deps in project["optional-dependencies"].items() if name != "dev")]
floors: dict[str, str] = {}
for requirement in (r for group in groups for r in group):
    found = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", requirement)
    if found is None:
        sys.exit(f"cannot read a floor from {requirement!r}: write runtime dependencies as 'name>=version'")
    floors[found[1].lower()] = found[2]
for name, version in sorted(floors.items()):
    print(f"{name}=={version}")
