"""The least any write guard must do, as a baseline: the physical floor of guard overhead.

Before each raw POST a coroutine records its intent in SQLite and waits until that row
is durable (``synchronous=FULL``); after the answer it records the outcome, carried to
disk by the next commit. Intents from many coroutines share one commit (group commit).
Nothing else: no leases, no state checks, no verification, no models. No real guard
can do less and still keep a durable record before each send, so ``floor / raw`` bounds
what ``guarded / raw`` can reach on this machine, and ``guarded / floor`` says how close
the guard comes to that bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
from pathlib import Path

__all__ = ["IntentLog"]


class IntentLog:
    """Group-committed intent rows in one SQLite table: the floor's whole ledger."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS intents (key TEXT PRIMARY KEY, params TEXT, tx_hash TEXT)")
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
        self._outcomes.append((tx_hash, key))

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._intents:
            intents, self._intents = self._intents, []
            outcomes, self._outcomes = self._outcomes, []
            waiting, self._waiting = self._waiting, []
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE intents SET tx_hash = ? WHERE key = ?", outcomes)
            db.executemany("INSERT INTO intents (key, params) VALUES (?, ?)", intents)
            if len(intents) == 1:  # nothing else to do meanwhile: the hop would cost more than it frees
                db.execute("COMMIT")
            else:
                await loop.run_in_executor(self._thread, db.execute, "COMMIT")
            for future in waiting:
                future.set_result(None)

    async def aclose(self) -> None:
        if self._flusher is not None:
            await self._flusher
        self._db.executemany("UPDATE intents SET tx_hash = ? WHERE key = ?", self._outcomes)
        self._thread.shutdown()
        self._db.close()
