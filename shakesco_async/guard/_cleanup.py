"""No lease outlives its caller: ledger work that must end even when the caller is cancelled.

A caller is cancelled when its client goes away or a timeout wraps the call. A ledger call
cut off halfway may hold a lease that nobody knows of: SQLite's would block the customer
until it lapses, and PostgreSQL's (an advisory lock) until the process ends. So a call
that takes leases runs to its end whatever happens to its caller, and if the caller is
gone by then, what the call took is given back. The client waits for these on close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["Cleanups"]

log = logging.getLogger("shakesco_async.guard")
T = TypeVar("T")


class Cleanups:
    """Ledger work that outlives a cancelled caller, tracked until ``drain``."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def _start(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def finish(self, work: Awaitable[Any]) -> None:
        """Await ``work`` (giving leases back, say); if the caller is cancelled, it goes on."""
        task = self._start(work)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_failure)
            raise

    async def taking(self, call: Awaitable[T], give_back: Callable[[T], Awaitable[Any] | None]) -> T:
        """Await a ledger call that may take leases; if the caller is cancelled meanwhile,
        the call still ends, and then ``give_back(its result)`` undoes what it took."""
        task = asyncio.ensure_future(call)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._start(_give_back_when_done(task, give_back)).add_done_callback(_log_failure)
            raise

    async def drain(self) -> None:
        """Wait until every piece of such work has ended."""
        # Not `while self._tasks`: an ended task stays in the set until its done-callback runs
        # on a later turn of the loop, and awaiting only ended tasks does not yield to the loop
        # (gather, from Python 3.12), so that loop would spin forever, the loop's thread with it.
        while running := [task for task in self._tasks if not task.done()]:
            await asyncio.wait(running)


async def _give_back_when_done(task: asyncio.Future[T], give_back: Callable[[T], Awaitable[Any] | None]) -> None:
    try:
        taken = await task
    except (Exception, asyncio.CancelledError):
        return  # a ledger call that failed took nothing
    undo = give_back(taken)
    if undo is not None:
        await undo


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning(
            "could not give back leases after a cancelled call (%s: %s); they end when they lapse"
            " (SQLite) or when this process's ledger connection closes (PostgreSQL)",
            type(exc).__name__,
            exc,
        )
