"""The sender: delivers owed writes (staged ones, and unsent ones under a caller's key) as a
stream, ``concurrency`` at a time, each the way a call sends a new write.

Invariants kept here:

- A customer's owed writes go in the order they were recorded. In this process each
  write waits for the earlier ones it shares a customer with, and is skipped (left owed,
  for a later claim) when one of them was left unsent; across processes the ledger's
  ``begin(adopt=True)`` refuses a write while an older one on its customers is unsent.
- Every entry claimed is given back when the sender stops, whatever it was doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence

from ._reconcile import reconcile_one
from ._timing import CLAIM_TTL, CLOCK
from .guard import WriteGuard
from .guard._outcome import ReconcileOutcome
from .guard._wrapper import Settled
from .ledger import KeySource, LedgerEntry
from .ledger._entry import UNSENT

__all__ = ["send_staged"]

log = logging.getLogger("shakesco_async.sender")
_LEFT_OWED = frozenset({ReconcileOutcome.BUSY, ReconcileOutcome.NOT_APPLIED})
"""Outcomes that leave a write unsent and owed: a customer's later writes wait for it."""


async def send_staged(guard: WriteGuard, *, poll: float, concurrency: int) -> None:
    """Send owed writes until cancelled: claimed as they commit (PostgreSQL: LISTEN/NOTIFY),
    else every ``poll`` seconds. Errors are logged, and the sender goes on."""
    sender = _Sender(guard, concurrency)
    try:
        await sender.run(poll)
    finally:
        await sender.stop()


class _Page:
    """One claim's entries, given back once the last of them is done."""

    __slots__ = ("keys", "owner", "pending")

    def __init__(self, owner: str, keys: list[str]) -> None:
        self.owner = owner
        self.keys = keys
        self.pending = len(keys)


class _Sender:
    def __init__(self, guard: WriteGuard, concurrency: int) -> None:
        self._guard = guard
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pages: dict[str, _Page] = {}  # by claim owner, until its entries are done
        self._last: dict[str, asyncio.Future[bool]] = {}  # customer -> its latest write here
        self._id = uuid.uuid4().hex
        self._claimed = 0

    async def run(self, poll: float) -> None:
        page, entries = await self._next(poll, wait=False)
        while True:
            # The next page is claimed while this one's writes wait for their slots.
            ahead = asyncio.ensure_future(self._next(poll, wait=len(entries) < self._concurrency))
            try:
                for entry in entries:
                    await self._slots.acquire()  # in claim order: a customer's writes start in order
                    self._start(entry, page)
                page, entries = await ahead
            finally:
                ahead.cancel()

    async def _next(self, poll: float, *, wait: bool) -> tuple[_Page, list[LedgerEntry]]:
        """The next page of owed writes; ``wait``: first for one to be staged (the last page
        was not full)."""
        if wait:
            await self._guard.ledger.staged_arrived(poll)
        try:
            return await self._claim()
        except Exception:
            log.exception("sending staged writes: claiming failed; trying again in %.1fs", poll)
            await CLOCK.sleep(poll)
            return _Page("", []), []

    async def _claim(self) -> tuple[_Page, list[LedgerEntry]]:
        owner = f"sender:{self._id}:{self._claimed}"
        self._claimed += 1
        entries = await self._guard.cleanups.taking(
            self._guard.ledger.claim_open(
                owner=owner, older_than=0.0, limit=self._concurrency, ttl=CLAIM_TTL, states=UNSENT
            ),
            lambda taken: self._guard.ledger.unclaim(owner, [e.key for e in taken]),
        )
        page = _Page(owner, [e.key for e in entries])
        if entries:
            self._pages[owner] = page
        return page, entries

    def _start(self, entry: LedgerEntry, page: _Page) -> None:
        # Chained behind the latest write here on each of its customers.
        before = [self._last[c] for c in entry.customers if c in self._last]
        sent: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        for customer in entry.customers:
            self._last[customer] = sent
        task = asyncio.create_task(self._one(entry, page, before, sent))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(
        self, entry: LedgerEntry, page: _Page, before: Sequence[asyncio.Future[bool]], sent: asyncio.Future[bool]
    ) -> None:
        done = False
        try:
            # Earlier writes on these customers first; one left owed keeps this one owed too.
            if all([await earlier for earlier in before]):
                outcome, detail = await self._send(entry)
                done = outcome not in _LEFT_OWED
                if outcome == ReconcileOutcome.IN_DOUBT:
                    log.warning("staged write %s is in doubt: %s", entry.key, detail)
        except Exception:
            log.exception("sending staged write %s failed; it stays owed", entry.key)
        finally:
            sent.set_result(done)
            for customer in entry.customers:
                if self._last.get(customer) is sent:
                    del self._last[customer]
            self._slots.release()
            self._done(page)

    def _done(self, page: _Page) -> None:
        """Count one of ``page``'s writes done; the last gives back the page's claims, so the
        next claim (here or in another process) takes again what it left owed at once."""
        page.pending -= 1
        if page.pending == 0:
            self._pages.pop(page.owner, None)
            task = asyncio.ensure_future(self._guard.ledger.unclaim(page.owner, page.keys))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(_unclaimed)

    async def _send(self, entry: LedgerEntry) -> Settled:
        if entry.key_source == KeySource.CALLER:
            return await self._guard.send_owed(entry)
        # An SDK-made key left unsent (a cancelled call): reconcile's rule gives it up.
        return await reconcile_one(self._guard, entry)

    async def stop(self) -> None:
        """Cancel what is under way (each write ends at a recovery point), then give back
        every claim still held."""
        for task in self._tasks:
            task.cancel()
        # The cancelled writes' pages give their claims back as they end (tasks of their
        # own). Not `while self._tasks`: an ended task leaves the set on a later turn of the
        # loop, and waiting on ended tasks only would not yield to it.
        while running := [task for task in self._tasks if not task.done()]:
            await asyncio.wait(running)
        pages, self._pages = self._pages, {}  # pages with writes never started: all of it
        with contextlib.suppress(Exception):
            await self._guard.cleanups.finish(
                asyncio.gather(*(self._guard.ledger.unclaim(p.owner, p.keys) for p in pages.values()))
            )


def _unclaimed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("could not give back the sender's claims (%s); they lapse on their own", exc)
