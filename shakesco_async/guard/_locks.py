"""In-process mutual exclusion by name (customer refs, idempotency keys)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """One asyncio lock per name, created on demand and dropped when unused.

    ``hold`` takes several names in sorted order, so two callers that need an
    overlapping set (both sides of a transfer) cannot deadlock.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def _ref(self, name: str) -> asyncio.Lock:
        lock, users = self._locks.get(name, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[name] = (lock, users + 1)
        return lock

    def _unref(self, name: str) -> None:
        lock, users = self._locks[name]
        if users <= 1:
            del self._locks[name]
        else:
            self._locks[name] = (lock, users - 1)

    @asynccontextmanager
    async def hold(self, names: Iterable[str]) -> AsyncIterator[None]:
        ordered = sorted(set(names))
        locks = [self._ref(n) for n in ordered]
        held: list[asyncio.Lock] = []
        try:
            for lock in locks:
                await lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()
            for name in ordered:
                self._unref(name)

    def __len__(self) -> int:
        return len(self._locks)
