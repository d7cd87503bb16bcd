"""Group commit for a networked ledger: what many callers ask while a statement is under
way goes out together in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batches"]

T = TypeVar("T")
R = TypeVar("R")


class Batches(Generic[T, R]):
    """Runs queued items a batch at a time, one batch in flight.

    ``run(items)`` returns one outcome per item, in order: a result, or an exception to
    raise to that item's caller. If ``run`` itself raises, every caller of the batch gets
    that error.
    """

    def __init__(self, run: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]) -> None:
        self._run = run
        self._items: list[T] = []
        self._waiting: list[asyncio.Future[R]] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; the future ends with its outcome. The work goes on if the caller
        stops waiting."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._waiting.append(done)
        # Asked of the task, not of a flag the task clears: under an eager task factory the
        # flusher can run to its end before ensure_future returns.
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_all())
        return done

    async def drain(self) -> None:
        """Wait until everything queued so far has run."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_all(self) -> None:
        while self._items:
            items, waiting = self._items, self._waiting
            self._items, self._waiting = [], []
            await self._flush(items, waiting)

    async def _flush(self, items: list[T], waiting: list[asyncio.Future[R]]) -> None:
        try:
            outcomes = await self._run(items)
            if len(outcomes) != len(waiting):  # a broken batch fails its callers, never hangs them
                raise RuntimeError(f"a batch of {len(waiting)} gave {len(outcomes)} outcomes")
        except Exception as exc:
            for done in waiting:
                done.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing, say): so are its callers
            for done in waiting:
                done.cancel()
            raise
        for done, outcome in zip(waiting, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)
