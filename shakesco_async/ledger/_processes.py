"""Whether the process that took a SQLite lease has exited (Linux, this host only).

A lease outlives a crashed process for its whole lifetime (minutes with the defaults),
and with it the customers whose writes were in flight. A process of this boot, pid
namespace and time namespace that has exited can be seen to have: its pid is gone, or
now names a process started at another moment. Its lease then ends at once, as a
PostgreSQL lock ends with its connection; a write it was sending is still judged only
once its request cannot be on its way (the guard's ``_landed``).

Anything less certain counts as alive: another boot, pid namespace or time namespace, a
/proc this process cannot read, a system without /proc.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._clock import BOOT

__all__ = ["exited", "holder_exited", "holder_for", "identity_of", "this_process"]

_PROC = Path("/proc")


def _namespaces() -> str:
    """This boot, this process's pid namespace, and its time namespace where there are
    such: a start time read from /proc counts from the reader's boot time, which a time
    namespace moves. "" when they cannot be told."""
    ns = _PROC / "self" / "ns"
    if not BOOT:
        return ""
    try:
        # /proc must be this namespace's: /proc/self then names our own pid.
        if os.readlink(_PROC / "self") != str(os.getpid()):
            return ""
        pid = os.readlink(ns / "pid")
    except OSError:
        return ""
    try:
        return f"{BOOT}:{pid}{os.readlink(ns / 'time')}"
    except FileNotFoundError:  # a kernel before 5.6 has no time namespaces
        return f"{BOOT}:{pid}"
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, str]:
    """Process ``pid``'s state and start (clock ticks since boot); ``OSError`` if /proc has none."""
    stat = (_PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    fields = stat[stat.rindex(")") + 2 :].split()  # the name, in parentheses, may hold anything
    return fields[0], fields[19]


_EXITED = ("Z", "X")  # exited, not yet reaped: its sockets are closed


def identity_of(pid: int) -> str:
    """``pid``'s identity on this host: boot and namespaces, pid and start; "" if it cannot be told."""
    namespace = _namespaces()
    if not namespace:
        return ""
    try:
        state, started = _stat(pid)
    except (OSError, ValueError, IndexError):
        return ""
    return "" if state in _EXITED else f"{namespace}/{pid}/{started}"


_this: tuple[int, str] = (-1, "")


def this_process() -> str:
    """This process's identity (again after a fork: the child is another process)."""
    global _this
    pid = os.getpid()
    if _this[0] != pid:
        _this = (pid, identity_of(pid))
    return _this[1]


def holder_for(owner: str) -> str | None:
    """What a row taken by ``owner`` records of this process (None where nothing can be told)."""
    me = this_process()
    return f"{me}|{owner}" if me else None


def holder_exited(holder: str, owner: str) -> bool:
    """Whether the process ``holder`` (from ``holder_for``) names has exited. Only a holder
    written for this ``owner`` counts: an SDK of ledger schema 5 takes a lease over without
    writing one, and the row would still name the last holder's process."""
    identity, _, written_for = holder.partition("|")
    return written_for == owner and exited(identity)


def exited(identity: str) -> bool:
    """True only when ``identity`` names a process of this boot, pid namespace and time
    namespace that has exited."""
    try:
        namespace, pid_text, started = identity.rsplit("/", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    ours = this_process()
    if pid <= 0 or not namespace or identity == ours or not ours.startswith(namespace + "/"):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    try:
        state, now = _stat(pid)
    except (OSError, ValueError, IndexError):
        return False  # it exists but /proc hides it (hidepid), or it exited this instant
    return state in _EXITED or now != started  # a zombie, or its pid now another process's
