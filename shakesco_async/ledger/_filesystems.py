"""Which filesystem a ledger file lives on, and whether SQLite can be trusted there.

SQLite in WAL mode keeps its lock state in memory shared by the processes of one host:
on a filesystem that other hosts mount too (a Kubernetes ReadWriteMany volume on NFS or
EFS, an SMB share), each host sees only its own, so two hosts could both take one
customer, each miss the other's records, and corrupt the file.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SHARED_FILESYSTEMS", "filesystem_of"]

SHARED_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "orangefs",
        "ocfs2",
        "gfs2",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.cephfs",
        "fuse.gcsfuse",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.juicefs",
    }
)
"""Filesystems other hosts may mount too. (A VM's share with its host, 9p or virtiofs,
is one host's: not listed.)"""

MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as octal escapes.
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def filesystem_of(path: Path) -> str | None:
    """The type of the filesystem ``path`` (an existing directory or file) is on, as the
    kernel names it ("ext4", "nfs4"), or None where that cannot be known (not Linux)."""
    try:
        lines = MOUNTINFO.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split(" ")
        try:
            mount_point = _unescape(fields[4])
            fstype = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        # The longest mount point holding the path wins; of equal ones, the last (mounted over).
        if inside and (best is None or len(mount_point) >= best[0]):
            best = (len(mount_point), fstype)
    return None if best is None else best[1]
