"""``ShakescoClient``: the one base client. Endpoint groups supply the methods; this sends them."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import os
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp

from ._body import DEFAULT_MAX_RESPONSE_BYTES, decode_json
from ._config import (
    ApiKey,
    resolve_api_key,
    resolve_base_url,
    resolve_ledger,
    resolve_ledger_scope,
    resolve_timeout,
)
from ._errors import (
    APIError,
    ConfigurationError,
    DailyCapExceeded,
    MalformedResponse,
    RateLimited,
    ServerError,
    ShakescoError,
    TransportError,
    ValidationError,
    error_from_response,
)
from ._reconcile import Progress, ReconcileSummary, check_options, reconcile, run_periodically
from ._retry import backoff_delay
from ._sender import send_staged
from ._staged import StagedWrites, result_of
from ._timing import CLOCK
from ._transport import Transport
from ._validate import seconds as check_seconds
from ._validate import shown
from ._version import VERSION
from ._wire import WireValue
from .endpoints import Endpoint, EndpointMethods
from .guard import GuardSettings, WriteGuard
from .guard._wrapper import Resend, check_idempotency_key
from .ledger import Ledger, open_ledger

__all__ = ["ShakescoClient"]

log = logging.getLogger("shakesco_async")
R = TypeVar("R")
_RETRYABLE_STATUS = frozenset({502, 503, 504})


class ShakescoClient(EndpointMethods):
    """Async client for the Shakesco Tokens API.

    Every write goes through the write guard and its ledger; reads are retried with
    backoff. Use it as ``async with ShakescoClient() as client:`` or call ``aclose()``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        ledger: Ledger | str | os.PathLike[str] | object | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        session: aiohttp.ClientSession | None = None,
        guard: GuardSettings | None = None,
        ledger_scope: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.timeout = _check_limits(resolve_timeout(timeout), max_retries)
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ConfigurationError(f"max_response_bytes must be a positive int, got {max_response_bytes!r}")
        self._api_key: ApiKey = resolve_api_key(api_key)
        self.base_url = resolve_base_url(base_url)
        self.max_retries = max_retries
        self._settings = guard or GuardSettings()
        self._settings.check(self.timeout)
        self._transport = Transport(
            self.base_url,
            self._api_key,
            timeout=self.timeout,
            version=VERSION,
            session=session,
            max_body=max_response_bytes,
        )
        if isinstance(ledger, Ledger) and ledger_scope is not None:
            raise ConfigurationError("ledger_scope names a ledger the client opens; a Ledger has its own business=")
        target: Any = resolve_ledger(ledger)
        business = resolve_ledger_scope(ledger_scope, self._api_key)
        self._ledger = open_ledger(target, business=business, synchronous=self._settings.synchronous)
        self._owns_ledger = not isinstance(ledger, Ledger)
        self._life = _Life()
        self._guard = WriteGuard(
            reader=_GuardReads(self),
            send_once=self._exchange,
            ledger=self._ledger,
            settings=self._settings,
            timeout=self.timeout,
            max_retries=max_retries,
        )

    def __repr__(self) -> str:
        return f"ShakescoClient(base_url={str(self.base_url)!r}, ledger={self._ledger!r})"

    def with_options(self, *, timeout: float | None = None, max_retries: int | None = None) -> Self:
        """This client with another ``timeout`` or ``max_retries`` for the calls made
        through it, e.g. a web handler's short deadline in a worker's client.

        The copy shares everything else: connections, ledger, in-process customer locks,
        reconciler and shutdown (closing either closes both). Its writes record their own
        timeout, so the guard judges them by it wherever they are judged.
        """
        max_retries = self.max_retries if max_retries is None else max_retries
        seconds = _check_limits(self.timeout if timeout is None else timeout, max_retries)
        self._settings.check(seconds)
        other = copy.copy(self)
        other.timeout = seconds
        other.max_retries = max_retries
        other._transport = self._transport.with_timeout(other.timeout)
        other._guard = self._guard.sibling(
            reader=_GuardReads(other), send_once=other._exchange, timeout=other.timeout, max_retries=max_retries
        )
        return other

    @property
    def ledger(self) -> Ledger:
        """The ledger of guarded writes (opened on first use)."""
        return self._ledger

    @property
    def guard(self) -> WriteGuard:
        """The write guard every write goes through."""
        return self._guard

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Refuse new calls, stop the reconciler, wait for the calls under way (a write cut
        off mid-flight would be left in doubt), finish what cancelled calls left to give back,
        then close the HTTP session (unless the caller's) and the ledger (unless passed in)."""
        life = self._life
        life.closed = True
        for task in (life.reconciler, life.sender):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        life.reconciler = life.sender = None
        if life.under_way:  # none can start now, so once none is left, none will be
            if life.idle is None:
                life.idle = asyncio.Event()
            await life.idle.wait()
        await self._guard.drain()  # leases that cancelled calls took are given back first
        await self._transport.aclose()
        if self._owns_ledger:
            await self._ledger.close()

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(
        self,
        *,
        older_than: float = 30.0,
        limit: int | None = None,
        concurrency: int = 8,
        resend: Resend = "caller",
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> ReconcileSummary:
        """Settle what crashes and lost answers left open; see ``ReconcileSummary``.

        ``older_than`` (seconds) leaves entries that a live write may still be working on.
        """
        self._check_open()
        return await reconcile(
            self._guard,
            older_than=older_than,
            limit=limit,
            concurrency=concurrency,
            resend=resend,
            dry_run=dry_run,
            progress=progress,
        )

    def start_reconciler(
        self, interval: float = 60.0, *, older_than: float = 30.0, concurrency: int = 8, resend: Resend = "caller"
    ) -> asyncio.Task[None]:
        """Reconcile in the background every ``interval`` seconds until ``aclose()``."""
        check_options(older_than=older_than, concurrency=concurrency, resend=resend, interval=interval)
        self._check_open()
        life = self._life
        if life.reconciler is not None and not life.reconciler.done():
            raise RuntimeError("a reconciler is already running for this client")
        life.reconciler = asyncio.create_task(
            run_periodically(self._guard, interval, older_than=older_than, concurrency=concurrency, resend=resend),
            name="shakesco-reconciler",
        )
        return life.reconciler

    # -- staged writes -----------------------------------------------------------------------
    def staged(self, conn: object) -> StagedWrites:
        """The client's write methods, recorded through ``conn`` (the application's own database
        connection) inside its open transaction: each returns the write's idempotency key, and
        the write is owed once that transaction commits (``start_sender`` sends it). ``conn``:
        an ``sqlite3`` / ``aiosqlite`` connection to the SQLite ledger's own file, or an
        asyncpg connection / SQLAlchemy ``AsyncConnection`` / ``AsyncSession`` to the
        PostgreSQL ledger's database."""
        return StagedWrites(functools.partial(self._ledger.stage, conn), conn, self._check_open)

    @contextlib.asynccontextmanager
    async def transaction(self, conn: object) -> AsyncIterator[StagedWrites]:
        """A transaction of the application's on ``conn`` (as ``staged`` takes), yielding
        ``staged(conn)``: committed when the block ends, the business change and the writes
        staged in it together; rolled back, and the error raised, when it raises.

        With the SQLite ledger it begins ``BEGIN IMMEDIATE`` and takes turns on the file's
        one write lock with the ledger's own commits, so neither waits in SQLite's busy
        handler; an application's own ``asyncio.Lock`` around it is not needed. A guarded
        call made inside it cannot be recorded until it ends (``LedgerError`` after 10s):
        stage it instead."""
        self._check_open()
        async with self._ledger.transaction(conn) as record:
            yield StagedWrites(record, conn, self._check_open)

    def start_sender(self, poll: float = 1.0, *, concurrency: int = 8) -> asyncio.Task[None]:
        """Send staged writes in the background, in staging order per customer, until ``aclose()``:
        at once as their transactions commit (PostgreSQL's LISTEN/NOTIFY), else every ``poll``
        seconds. Also sends what a crash or a cancellation left unsent under a caller's key.
        Several processes may run one each."""
        check_options(older_than=0.0, concurrency=concurrency, resend="caller", interval=poll)
        self._check_open()
        life = self._life
        if life.sender is not None and not life.sender.done():
            raise RuntimeError("a sender is already running for this client")
        life.sender = asyncio.create_task(
            send_staged(self._guard, poll=poll, concurrency=concurrency), name="shakesco-sender"
        )
        return life.sender

    async def result_of(self, idempotency_key: str, *, wait: float | None = None) -> Any:
        """Wait for the write under ``idempotency_key`` (staged, or called) to be settled, and
        return its receipt (or link); or raise its error: the API's refusal, ``OutcomeUnknown``
        while it is in doubt or still pending after ``wait`` seconds, ``NotApplied`` if it
        was given up, ``LedgerError`` if no write has the key (its transaction rolled back)."""
        self._check_open()
        key = check_idempotency_key(idempotency_key)
        if wait is not None:
            wait = check_seconds("wait", wait)
        return await result_of(self._ledger, key, wait=wait)

    # -- the one code path ----------------------------------------------------------------
    def _check_open(self) -> None:
        life = self._life
        if life.closed:
            # Before the ledger: a closed client must not record intents, nor reopen its ledger
            raise TransportError("the client is closed", sent=False)
        loop = asyncio.get_running_loop()
        if life.loop is None:
            life.loop = loop
        elif loop is not life.loop:
            # Its HTTP session and ledger queue belong to that loop; here they would fail halfway.
            raise ConfigurationError(
                "this client is bound to the event loop it was first used in: make one client per"
                " event loop (per asyncio.run), and close it there"
            )

    async def _call(self, endpoint: Endpoint[R], /, *, idempotency_key: str | None = None, **params: Any) -> R:
        self._check_open()
        wire = endpoint.prepare(params)
        if not endpoint.is_write and idempotency_key is not None:
            raise ValidationError(f"{endpoint.name}() is a read and takes no idempotency_key")
        life = self._life
        life.under_way += 1
        try:
            if endpoint.is_write:
                return await self._guard.execute(endpoint, wire, idempotency_key)
            return await self._read(endpoint, wire)
        finally:
            life.under_way -= 1
            if not life.under_way and life.idle is not None:
                life.idle.set()

    async def _read(self, endpoint: Endpoint[R], wire: dict[str, WireValue]) -> R:
        """A GET, retried on transport errors, rate limits and 502/503/504."""
        attempt = 0
        while True:
            try:
                return await self._exchange(endpoint, wire, None)
            except (TransportError, APIError) as exc:
                attempt += 1
                retry_after = exc.retry_after if isinstance(exc, APIError) else None
                if attempt > self.max_retries or not _retryable_read_error(exc):
                    raise
                delay = backoff_delay(attempt, retry_after=retry_after)
                log.debug("GET %s failed (%s); retry %d in %.2fs", endpoint.path, exc, attempt, delay)
                await CLOCK.sleep(delay)

    async def _exchange(self, endpoint: Endpoint[R], wire: dict[str, WireValue], idempotency_key: str | None) -> R:
        """Exactly one HTTP exchange: the parsed result, or the typed error."""
        response = await self._transport.send(
            endpoint.method, endpoint.path, fields=wire, idempotency_key=idempotency_key
        )
        if not 200 <= response.status < 300:
            raise error_from_response(
                response.status, response.text, response.retry_after, request_id=response.request_id
            )
        data = decode_json(response.text, f"{endpoint.method} {endpoint.path} answered {response.status}")
        try:
            return endpoint.parse(data)
        except ShakescoError:
            raise
        except Exception as exc:  # a parser's surprise is the body's fault, never the caller's
            raise MalformedResponse(
                f"{endpoint.path}: cannot read the answer ({type(exc).__name__})", response.text
            ) from None


class _Life:
    """What a client and its ``with_options`` copies share of their lifetime."""

    __slots__ = ("closed", "idle", "loop", "reconciler", "sender", "under_way")

    def __init__(self) -> None:
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.under_way = 0  # calls made through the public methods, not yet returned
        self.idle: asyncio.Event | None = None
        self.reconciler: asyncio.Task[None] | None = None
        self.sender: asyncio.Task[None] | None = None


_MAX_RETRIES = 1000  # leases outlast every retry of a call: far more would make them endless


def _check_limits(timeout: object, max_retries: object) -> float:
    """The timeout as a float, once both are known good."""
    try:
        seconds = check_seconds("timeout", timeout, positive=True)
    except ValidationError as exc:  # a setting of the client's: its error is a configuration error
        raise ConfigurationError(str(exc)) from None
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= _MAX_RETRIES:
        raise ConfigurationError(f"max_retries must be an int from 0 to {_MAX_RETRIES}, got {shown(max_retries)}")
    return seconds


class _GuardReads(EndpointMethods):
    """The client's reads as the write guard makes them (snapshots, verification): part
    of a call already under way, so a client that is closing still lets them through."""

    def __init__(self, client: ShakescoClient) -> None:
        self._client = client

    async def _call(self, endpoint: Endpoint[R], /, *, idempotency_key: str | None = None, **params: Any) -> R:
        if endpoint.is_write:  # not an assert: `python -O` would drop it, and this one keeps money safe
            raise RuntimeError(f"the write guard only reads; {endpoint.path} would be sent unguarded")
        return await self._client._read(endpoint, endpoint.prepare(params))


def _retryable_read_error(exc: Exception) -> bool:
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, RateLimited):
        return not isinstance(exc, DailyCapExceeded)
    return isinstance(exc, ServerError) and exc.status in _RETRYABLE_STATUS
