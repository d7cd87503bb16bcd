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
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence

import asyncpg
import attrs

from .._errors import LedgerError
from ._batches import Batches
from ._postgres_errors import DB_ERRORS, ledger_error

__all__ = ["AdvisoryLeases"]

# The lease session is marked as this process's when it is taken (a setting of the
# server's session), and every lock and unlock runs only where the mark is still ours.
# Through a pooler in transaction mode (pgbouncer, RDS Proxy...) consecutive statements
# may run on different server sessions, and other clients' statements on ours: session
# locks taken there would be shared (they are reentrant per server session), and two
# processes would hold one customer. The mark makes that a refusal, before any lock.
_MARK = "current_setting('shakesco.lease_session', true) = $1"
# The lease session idles while the requests sent under its locks are in flight: a
# server or role with idle_session_timeout (PostgreSQL 14+) would end it then, and free
# their customers for another process to send again. It is switched off for this session.
_CLAIM = (
    "SELECT set_config('shakesco.lease_session', $1, false) AS mark, pg_backend_pid() AS pid,"
    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS held,"
    " CASE WHEN current_setting('server_version_num')::int >= 140000"
    " THEN set_config('idle_session_timeout', '0', false) END AS never_idle,"
    " pg_is_in_recovery() AS standby"
)
_LOCK = (
    "ARRAY(SELECT pg_try_advisory_lock(hashtextextended(n, 0))"
    f" FROM unnest(${{}}::text[]) WITH ORDINALITY AS l(n, i) WHERE {_MARK} ORDER BY i)"
)
_UNLOCK = f"ARRAY(SELECT pg_advisory_unlock(hashtextextended(n, 0)) FROM unnest(${{}}::text[]) AS u(n) WHERE {_MARK})"
# By what a batch holds (locks, unlocks). One name given back by one owner and asked for
# by another in the same batch comes out right either way: a session's locks on a name
# count, so locked first it stays held; unlocked first, another process may take it in
# between, and then the ask is refused and polls again.
_SQL = {
    (False, False): f"SELECT {_MARK} AS ours",  # a confirmation alone: the session is alive and ours
    (True, False): f"SELECT {_MARK} AS ours, {_LOCK.format(2)} AS locked",
    (False, True): f"SELECT {_MARK} AS ours, {_UNLOCK.format(2)} AS unlocked",
    (True, True): f"SELECT {_MARK} AS ours, {_LOCK.format(2)} AS locked, {_UNLOCK.format(3)} AS unlocked",
}
_UNLOCK_ALL = f"SELECT pg_advisory_unlock_all() WHERE {_MARK}"
_PROXIED = (
    "the PostgreSQL ledger connects through a proxy or pooler (the server's session is not"
    " the one the connection was opened with). In transaction mode (pgbouncer"
    " pool_mode=transaction, RDS Proxy...) other clients' statements share its server"
    " session, and its session locks cannot keep two processes off one customer; the SDK"
    " cannot tell the mode, so no write is sent. Connect directly, or, through a pooler in"
    " session mode, open the ledger with PostgresLedger(..., session_pooler=True)"
)
_HELD = (
    "the connection the PostgreSQL ledger took for its leases already holds advisory locks:"
    " another client's, on a server session a pooler in transaction mode shares (pgbouncer"
    " pool_mode=transaction, RDS Proxy...), or your own code's, left on a pooled connection."
    " Its leases could not keep two processes off one customer, so no write is sent"
)
_STANDBY = (
    "the PostgreSQL ledger's lease connection reached a standby (a read-only replica): locks"
    " there keep no process on the primary off a customer, so no write is sent. Point the"
    " ledger at the primary (a multi-host DSN: target_session_attrs=read-write)"
)
_POOLED = (
    "the PostgreSQL ledger's lease connection is shared with other clients' statements, as"
    " through a pooler in transaction mode (pgbouncer pool_mode=transaction, RDS Proxy...):"
    " its session locks cannot keep two processes off one customer, so no write is sent."
    " Connect the ledger to PostgreSQL directly, or through a pooler in session mode"
)


@attrs.frozen
class _Ask:
    """One caller's names to lock (all or none) or to unlock; or, with ``confirm``, a
    question: does the session that took this process's locks still hold them?"""

    lock: bool
    names: list[str]
    confirm: bool = False


class AdvisoryLeases:
    """Leases as advisory locks on one session. ``lock_key`` maps a lease name to the
    text the lock is hashed from (the business is part of it)."""

    def __init__(
        self,
        pool: Callable[[], Awaitable[asyncpg.Pool]],
        lock_key: Callable[[str], str],
        *,
        session_pooler: bool = False,
    ) -> None:
        self._pool = pool
        self._lock_key = lock_key
        self._session_pooler = session_pooler
        self.session: asyncpg.Connection | None = None
        self.holders: dict[str, str] = {}
        self._mark = ""  # the lease session's own claim on it, drawn as the session is taken
        self._refused: str | None = None  # why, once a pooler was seen: every lease is refused from then on
        self._batches: Batches[_Ask, bool] = Batches(self._run)

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
        done = self._batches.submit(_Ask(True, new))
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

    async def confirm(self, names: Sequence[str], owner: str) -> bool:
        """Whether ``owner`` still holds ``names``, asked of the server: a session it has
        ended (a terminated backend, a restart) may not have been noticed here yet, and its
        locks are gone. Never raises for a lost session; that is a False."""
        if not names:
            return True
        if not self.held(names, owner):
            return False
        return await asyncio.shield(self._batches.submit(_Ask(True, [], confirm=True)))

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
        return self._batches.submit(_Ask(False, list(names)))

    def _forget(self, names: Sequence[str], owner: str) -> None:
        for name in names:
            if self.holders.get(name) == owner:
                del self.holders[name]

    async def _run(self, asks: Sequence[_Ask]) -> list[bool | BaseException]:
        """One statement for a batch: whether each lock ask got all its names (an unlock is
        always done: were the session to fail, its locks would end with it)."""
        before = self.session if self.alive else None
        try:
            locked = await self._statement(asks)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            return [False if ask.confirm else ledger_error(exc) if ask.lock else True for ask in asks]
        # Confirmed only when the statement ran on the session that was there before it.
        confirmed = before is not None and self.session is before and self.alive
        outcomes: list[bool | BaseException] = []
        refused: list[str] = []
        for ask in asks:
            if ask.confirm:
                outcomes.append(confirmed)
                continue
            if not ask.lock:
                outcomes.append(True)
                continue
            got = [next(locked) for _ in ask.names]
            if not all(got):  # all or nothing: what this ask did take goes back
                refused.extend(name for name, ok in zip(ask.names, got, strict=True) if ok)
            outcomes.append(all(got))
        if refused:
            self._batches.submit(_Ask(False, refused))
        return outcomes

    async def _statement(self, asks: Sequence[_Ask]) -> Iterator[bool]:
        """Run the batch's statement; what each lock gave, in order."""
        locks = [name for ask in asks if ask.lock for name in ask.names]
        unlocks = [name for ask in asks if not ask.lock for name in ask.names]
        if not self.alive:
            # These unlocks were for the session that is gone; sent to a new one, they
            # would give up the same names taken there for other owners. A confirmation
            # has its answer: no.
            unlocks = []
            if not locks:
                return iter(())
            await self._replace_session(locks)
        session = self.session
        assert session is not None
        args = [[self._lock_key(name) for name in names] for names in (locks, unlocks) if names]
        try:
            row = await session.fetchrow(_SQL[bool(locks), bool(unlocks)], self._mark, *args)
            assert row is not None
            if not row["ours"]:  # nothing was locked or unlocked: the mark filters every name
                self._refused = _POOLED
                raise LedgerError(_POOLED)
        except BaseException:
            # Which locks the session holds now is unknown: end it, and with it all of them.
            with contextlib.suppress(*DB_ERRORS):  # one whose connection is gone is detached
                session.terminate()
            raise
        return iter(row["locked"] if locks else ())

    async def _replace_session(self, locks: Sequence[str]) -> None:
        """Open the lease session, or a new one for a session that ended, and mark it ours."""
        if self._refused is not None:
            raise LedgerError(self._refused)
        if self.session is not None:
            asking = set(locks)
            if any(name not in asking for name in self.holders):
                # Their owners think they hold leases the server no longer keeps: nothing new
                # starts until they have given them back.
                raise LedgerError("the lease connection to PostgreSQL was lost; nothing was sent")
            lost, self.session = self.session, None
            with contextlib.suppress(*DB_ERRORS):
                await (await self._pool()).release(lost)  # one that ended went back by itself
        pool = await self._pool()
        session = await pool.acquire()
        # Drawn per session, not per ledger object: the children of a process that forked
        # after making the ledger would otherwise mark theirs alike.
        self._mark = uuid.uuid4().hex
        try:
            claim = await session.fetchrow(_CLAIM, self._mark)
        except BaseException:
            with contextlib.suppress(*DB_ERRORS):
                session.terminate()
            raise
        assert claim is not None
        if claim["standby"]:
            # Not for good: the next session may reach the primary (after a failover, say).
            with contextlib.suppress(*DB_ERRORS):
                session.terminate()  # not handed out again for records a standby refuses
                await pool.release(session)
            raise LedgerError(_STANDBY)
        if claim["pid"] != session.get_server_pid() and not self._session_pooler:
            # The server announced one backend when the connection opened, and this
            # statement ran on another: a proxy stands between (it hands out its own key).
            self._refused = _PROXIED
        elif claim["held"]:
            # A server session that holds advisory locks already is not ours to lease on:
            # they are another client's (a pooler shares sessions), or the caller's own.
            self._refused = _HELD
        if self._refused is not None:
            with contextlib.suppress(*DB_ERRORS):
                await pool.release(session)  # nothing of ours is on it
            raise LedgerError(self._refused)
        self.session = session

    async def close(self) -> None:
        """Give back every lock, and the session to the pool."""
        await self._batches.drain()
        alive, session = self.alive, self.session
        self.session = None
        self.holders.clear()
        if session is None:
            return
        pool = await self._pool()
        if not alive:
            with contextlib.suppress(*DB_ERRORS):
                await pool.release(session)  # one that ended went back to the pool by itself
            return
        try:
            await session.execute(_UNLOCK_ALL, self._mark)  # not another client's, were it shared
        finally:
            await pool.release(session)
