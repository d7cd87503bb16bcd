"""The least a write guard must do, as baselines: the floors of guard overhead.

Before each raw POST a coroutine records its intent and waits until the record is
durable; after the answer it records the outcome, carried to disk by the next durable
write. Intents from many coroutines share one fsync (group commit). Nothing else: no
leases, no state checks, no verification, no models.

Two stores: ``SQLiteFloor``, one row in one SQLite table (``synchronous=FULL``, WAL),
the least a guard whose ledger is SQLite must do; and ``JournalFloor``, one line
appended to a file and ``fdatasync``-ed, the least any durable record costs. So
``floor / raw`` bounds what ``guarded / raw`` can reach on this machine, and
``guarded / floor`` says how close the guard comes to that bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import sqlite3
from pathlib import Path

__all__ = ["Floor", "JournalFloor", "SQLiteFloor"]


class Floor:
    """Group commit of intent records, each caller released once its record is durable."""

    def __init__(self) -> None:
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._intents: list[tuple[str, str]] = []
        self._outcomes: list[tuple[str, str]] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, key: str, params: dict[str, str]) -> None:
        """Return once the intent is durable."""
        done = asyncio.get_running_loop().create_future()
        self._intents.append((key, json.dumps(params)))
        self._waiting.append(done)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    def settle(self, key: str, tx_hash: str) -> None:
        """Queue the outcome; it needs no fsync of its own."""
        self._outcomes.append((key, tx_hash))

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._intents:
            intents, self._intents = self._intents, []
            outcomes, self._outcomes = self._outcomes, []
            waiting, self._waiting = self._waiting, []
            self._stage(intents, outcomes)
            if len(intents) == 1:  # nothing else to do meanwhile: the hop would cost more than it frees
                self._make_durable()
            else:
                await loop.run_in_executor(self._thread, self._make_durable)
            for future in waiting:
                future.set_result(None)

    def _stage(self, intents: list[tuple[str, str]], outcomes: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    def _make_durable(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        if self._flusher is not None:
            await self._flusher
        if self._outcomes:
            self._stage([], self._outcomes)
            self._make_durable()
        self._thread.shutdown()


class SQLiteFloor(Floor):
    """Intent rows in one SQLite table with a primary key."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS intents (key TEXT PRIMARY KEY, params TEXT, tx_hash TEXT)")

    def _stage(self, intents: list[tuple[str, str]], outcomes: list[tuple[str, str]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("UPDATE intents SET tx_hash = ? WHERE key = ?", [(tx, key) for key, tx in outcomes])
        self._db.executemany("INSERT INTO intents (key, params) VALUES (?, ?)", intents)

    def _make_durable(self) -> None:
        self._db.execute("COMMIT")

    async def aclose(self) -> None:
        await super().aclose()
        self._db.close()


class JournalFloor(Floor):
    """Intent lines appended to one file: no index, no pages, only the fsync."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _stage(self, intents: list[tuple[str, str]], outcomes: list[tuple[str, str]]) -> None:
        lines = [f"I {key} {params}\n" for key, params in intents] + [f"O {key} {tx}\n" for key, tx in outcomes]
        os.write(self._fd, "".join(lines).encode())

    def _make_durable(self) -> None:
        os.fdatasync(self._fd)

    async def aclose(self) -> None:
        await super().aclose()
        os.close(self._fd)
