"""Names this process makes: the keys of writes called without one, and lease owners.

Both must be this process's alone, also in a child forked after they were first made (a
prefork server, ``gunicorn --preload``): two processes making one key could give two
writes one ledger entry, and two holding one owner's name could both hold a customer.
A child is told apart by its pid, not by an after-fork hook, which a server forking in C
(uWSGI by default) never runs.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Owners", "sdk_key"]

T = TypeVar("T")


class _PerProcess(Generic[T]):
    """A value of this process's own, made again (``make(pid)``) in a forked child."""

    __slots__ = ("_make", "_pid", "_value")

    def __init__(self, make: Callable[[int], T]) -> None:
        self._make = make
        self._pid = -1
        self._value: T | None = None

    def get(self) -> T:
        pid = os.getpid()
        if pid != self._pid:
            # Value first, then pid: a thread that sees this pid sees a value made for it.
            # Threads racing here each make one; either is the child's own.
            self._value = self._make(pid)
            self._pid = pid
        value = self._value
        assert value is not None
        return value


class _RandomHex:
    """The operating system's random bytes as hex, fetched 4 KiB at a time (a system call
    per key cost ~10 µs). Clients on event loops of several threads share it: a lock keeps
    each slice one caller's (a lock of its own: one the parent's threads held at a fork
    would stay held in the child)."""

    __slots__ = ("_at", "_hex", "_lock")

    def __init__(self) -> None:
        self._hex, self._at = "", 0
        self._lock = threading.Lock()

    def next20(self) -> str:
        with self._lock:
            if self._at + 20 > len(self._hex):
                self._hex, self._at = os.urandom(4096).hex(), 0
            self._at += 20
            return self._hex[self._at - 20 : self._at]


_RANDOM = _PerProcess(lambda pid: _RandomHex())


def sdk_key() -> str:
    """A key for a write whose caller chose none: ``sdk_`` and 32 hex digits.

    Time-ordered like a UUIDv7 (milliseconds first, then 80 random bits), so the
    ledger's key indexes grow at one end: a batch of new entries dirties a few pages,
    not one page per entry.
    """
    return f"sdk_{time.time_ns() // 1_000_000:012x}{_RANDOM.get().next20()}"


class Owners:
    """Lease owners' names: host, pid and a random tag of this process, then a count."""

    __slots__ = ("_ids", "_prefix")

    def __init__(self) -> None:
        self._prefix = _PerProcess(lambda pid: f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}:")
        self._ids = itertools.count(1)

    @property
    def prefix(self) -> str:
        return self._prefix.get()

    def new(self) -> str:
        return f"{self.prefix}{next(self._ids)}"
