"""A made-up /proc/self/mountinfo, for tests of what the SQLite ledger refuses to share."""

from __future__ import annotations

from pathlib import Path


def mountinfo(tmp_path: Path, *mounts: tuple[str, str]) -> Path:
    """A /proc/self/mountinfo listing ``(mount point, filesystem type)`` in mount order."""
    lines = [
        f"{i} 1 0:{i} / {point.replace(' ', chr(92) + '040')} rw,relatime shared:{i} - {kind} src rw"
        for i, (point, kind) in enumerate([("/", "ext4"), *mounts], start=20)
    ]
    info = tmp_path / "mountinfo"
    info.write_text("\n".join(lines) + "\n")
    return info
