"""In-process mutual exclusion by name (customer refs, idempotency keys)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

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

    def hold(self, names: Iterable[str]) -> AbstractAsyncContextManager[None]:
        """Hold every lock in ``names`` for the ``async with`` block."""
        return _Held(self, sorted(set(names)))

    def __len__(self) -> int:
        return len(self._locks)


class _Held(AbstractAsyncContextManager[None]):
    # A class, not @asynccontextmanager: every guarded write enters one, and a generator
    # based manager costs several times as much.
    __slots__ = ("_held", "_locks", "_names")

    def __init__(self, locks: KeyedLocks, names: list[str]) -> None:
        self._locks = locks
        self._names = names
        self._held: list[asyncio.Lock] = []

    async def __aenter__(self) -> None:
        wanted = [self._locks._ref(n) for n in self._names]
        try:
            for lock in wanted:
                await lock.acquire()
                self._held.append(lock)
        except BaseException:
            self._release()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        for lock in reversed(self._held):
            lock.release()
        self._held.clear()
        for name in self._names:
            self._locks._unref(name)
