"""Keys the SDK makes for writes whose caller chose none."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from shakesco_async.guard._names import sdk_key
from shakesco_async.guard._wrapper import check_idempotency_key


def test_sdk_keys_are_unique_valid_and_grow_with_time() -> None:
    keys = [sdk_key() for _ in range(20_000)]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"sdk_[0-9a-f]{32}", k) and check_idempotency_key(k) == k for k in keys)
    time.sleep(0.002)
    later = sdk_key()
    assert later > max(keys)  # milliseconds first: new entries go to one end of the key index


_FORKED = """
import ctypes, os, sys
from shakesco_async.guard._names import Owners, sdk_key
sdk_key()  # the buffer is filled
owners = Owners()
parent_owner = owners.new()
read, write = os.pipe()
# os.fork runs Python's after-fork hooks; a server that forks in C (uWSGI by default) does not
pid = os.fork() if sys.argv[1] == "os" else ctypes.CDLL(None, use_errno=True).fork()
if pid == 0:
    os.write(write, " ".join([*(sdk_key()[16:] for _ in range(3)), owners.new()]).encode())
    os._exit(0)
os.waitpid(pid, 0)
*keys, child_owner = os.read(read, 1000).decode().split()
mine = [sdk_key()[16:] for _ in range(3)]
print(len("".join(keys)), not set(keys) & set(mine), child_owner.rsplit(":", 1)[0] != parent_owner.rsplit(":", 1)[0])
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("fork", ["os", "libc"])
def test_a_forked_child_makes_keys_of_its_own(fork: str) -> None:
    """The random part comes from a buffer: a child forked with the parent's must not make
    the parent's next keys (two processes sharing a ledger would collide), nor lease under
    the parent's owner names, also when the fork skipped Python's after-fork hooks. Forked
    from a process of its own: this one has threads."""
    argv = [sys.executable, "-c", _FORKED, fork]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["60", "True", "True"]
