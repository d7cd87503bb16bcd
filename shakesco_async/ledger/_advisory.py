"""The PostgreSQL ledger's leases: session-level advisory locks, taken and given back in batches.

One connection per process (the lease session) holds every lease of that process, so a
dead process never blocks a customer: its locks end with its connection. Each lock and
unlock used to be a round trip of its own on that one connection, one caller at a time,
and at any concurrency the session set the pace of every write. Now whatever callers
ask while a statement is under way goes out together in the next one.

Within the process, ``holders`` says which owner holds (or is about to hold) each name, so
two owners of this process never share a lock: advisory locks are reentrant per session,
and the server alone could not tell them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from .._errors import LedgerError

__all__ = ["AdvisoryLeases"]

_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
_LOCK = (
    "ARRAY(SELECT pg_try_advisory_lock(hashtextextended(n, 0))"
    " FROM unnest(${}::text[]) WITH ORDINALITY AS l(n, i) ORDER BY i)"
)
_UNLOCK = "ARRAY(SELECT pg_advisory_unlock(hashtextextended(n, 0)) FROM unnest(${}::text[]) AS u(n))"
# By what the batch holds (locks, unlocks); a lock and an unlock of one name in one batch
# leave it held, in either order, since the session's locks count.
_SQL = {
    (True, False): f"SELECT {_LOCK.format(1)} AS locked",
    (False, True): f"SELECT {_UNLOCK.format(1)} AS unlocked",
    (True, True): f"SELECT {_LOCK.format(1)} AS locked, {_UNLOCK.format(2)} AS unlocked",
}


class _Batch:
    """What callers asked for while the statement before was under way."""

    __slots__ = ("locks", "unlocks", "waiting")

    def __init__(self) -> None:
        self.locks: list[str] = []
        self.unlocks: list[str] = []
        # (future, where its names start in ``locks``, how many): unlocks wait with start -1
        self.waiting: list[tuple[asyncio.Future[bool], int, int]] = []


class AdvisoryLeases:
    """Leases as advisory locks on one session. ``lock_key`` maps a lease name to the
    text the lock is hashed from (the business is part of it)."""

    def __init__(self, pool: Callable[[], Awaitable[asyncpg.Pool]], lock_key: Callable[[str], str]) -> None:
        self._pool = pool
        self._lock_key = lock_key
        self.session: asyncpg.Connection | None = None
        self.holders: dict[str, str] = {}
        self._next = _Batch()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        """Whether the lease session is open (its locks exist)."""
        if self.session is None:
            return False
        try:
            return not self.session.is_closed()
        except asyncpg.InterfaceError:  # a pooled connection that ended is detached from its proxy
            return False

    def held(self, names: Sequence[str], owner: str) -> bool:
        """Whether ``owner`` holds every one of ``names`` on a live session."""
        return not names or (self.alive and all(self.holders.get(name) == owner for name in names))

    async def acquire(self, names: Sequence[str], owner: str) -> bool:
        """Take every one of ``names`` for ``owner``, or none (False: another owner holds one).

        Raises ``LedgerError``, holding none, when the session fails.
        """
        if any(self.holders.get(name, owner) != owner for name in names):
            return False
        new = [name for name in dict.fromkeys(names) if name not in self.holders]
        if not new:
            return True
        for name in new:  # reserved: no other owner of this process asks for them meanwhile
            self.holders[name] = owner
        batch = self._next
        start = len(batch.locks)
        batch.locks.extend(new)
        done = self._wait(batch, start, len(new))
        try:
            taken = await asyncio.shield(done)
        except asyncio.CancelledError:
            # The statement goes on: what it takes for a caller who is gone is given back.
            done.add_done_callback(lambda _: self._give_back_if_taken(done, new, owner))
            raise
        except BaseException:
            self._forget(new, owner)
            raise
        if not taken:
            self._forget(new, owner)
        return taken

    async def release(self, names: Sequence[str], owner: str) -> None:
        """Give back the names ``owner`` holds. A failed session ends its locks, so this never fails."""
        mine = [name for name in names if self.holders.get(name) == owner]
        if mine:
            await asyncio.shield(self._drop(mine, owner))

    def _give_back_if_taken(self, done: asyncio.Future[bool], names: Sequence[str], owner: str) -> None:
        if not done.cancelled() and done.exception() is None and done.result():
            self._drop(names, owner)
        else:
            self._forget(names, owner)

    def _drop(self, names: Sequence[str], owner: str) -> asyncio.Future[bool]:
        self._forget(names, owner)
        if not self.alive:
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            done.set_result(True)  # the session ended, and its locks with it
            return done
        self._next.unlocks.extend(names)
        return self._wait(self._next, -1, 0)

    def _forget(self, names: Sequence[str], owner: str) -> None:
        for name in names:
            if self.holders.get(name) == owner:
                del self.holders[name]

    def _wait(self, batch: _Batch, start: int, count: int) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        batch.waiting.append((done, start, count))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_all())
        return done

    async def _flush_all(self) -> None:
        try:
            while self._next.waiting:
                batch, self._next = self._next, _Batch()
                await self._flush(batch)
        finally:
            self._flusher = None

    async def _flush(self, batch: _Batch) -> None:
        try:
            locked = await self._run(batch)
        except BaseException as exc:
            for done, start, _ in batch.waiting:
                if start < 0:  # done either way: the failed session is ended, and its locks with it
                    done.set_result(True)
                else:
                    done.set_exception(_failed(exc))
            if not isinstance(exc, Exception):
                raise
            return
        refused: list[str] = []
        for done, start, count in batch.waiting:
            got = locked[start : start + count]
            if start >= 0 and not all(got):  # all or nothing: what this caller did take goes back
                refused.extend(name for name, ok in zip(batch.locks[start : start + count], got, strict=True) if ok)
            done.set_result(start < 0 or all(got))
        if refused:
            self._next.unlocks.extend(refused)
            self._wait(self._next, -1, 0)

    async def _run(self, batch: _Batch) -> list[bool]:
        """Run the batch's statement; what each lock gave, in order."""
        session = await self._session(batch)
        if session is None or not (batch.locks or batch.unlocks):
            return []  # nothing left to do: the session that held the unlocked names is gone
        args = [[self._lock_key(name) for name in names] for names in (batch.locks, batch.unlocks) if names]
        try:
            row = await session.fetchrow(_SQL[bool(batch.locks), bool(batch.unlocks)], *args)
        except BaseException:
            # Which locks the session holds now is unknown: end it, and with it all of them.
            session.terminate()
            raise
        assert row is not None
        return list(row["locked"]) if batch.locks else []

    async def _session(self, batch: _Batch) -> asyncpg.Connection | None:
        """The lease session, opened for a batch that takes locks; None when it is gone
        and nothing needs a new one."""
        if self.alive:
            return self.session
        # The batch's unlocks were for the session that is gone; sent to a new one, they
        # would give up the same names taken there for other owners.
        batch.unlocks.clear()
        if not batch.locks:
            return None
        if self.session is not None:
            asking = set(batch.locks)
            if any(name not in asking for name in self.holders):
                # Their owners think they hold leases the server no longer keeps: nothing new
                # starts until they have given them back (their next step raises LeaseLost).
                raise LedgerError("the lease connection to PostgreSQL was lost; nothing was sent")
            lost, self.session = self.session, None
            with contextlib.suppress(*_DB_ERRORS):
                await (await self._pool()).release(lost)
        self.session = await (await self._pool()).acquire()
        return self.session

    async def close(self) -> None:
        """Give back every lock, and the session to the pool."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        alive, session = self.alive, self.session
        self.session = None
        self.holders.clear()
        if session is None:
            return
        pool = await self._pool()
        if not alive:
            with contextlib.suppress(*_DB_ERRORS):
                await pool.release(session)  # one that ended went back to the pool by itself
            return
        try:
            await session.execute("SELECT pg_advisory_unlock_all()")
        finally:
            await pool.release(session)


def _failed(exc: BaseException) -> LedgerError:
    """One error per waiting caller (each raises its own), with the session's as cause."""
    text = str(exc) if isinstance(exc, LedgerError) else f"PostgreSQL ledger: {type(exc).__name__}: {exc}"
    failure = LedgerError(text)
    failure.__cause__ = exc
    return failure
