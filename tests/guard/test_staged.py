"""Staged writes: recorded in the application's own transaction, sent once it commits.

Every test runs on both ledgers, with the application's table beside the ledger: in the
SQLite ledger's file (aiosqlite), or in the PostgreSQL ledger's database (asyncpg).
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

import shakesco_async as sa
from shakesco_async import ShakescoClient
from shakesco_async.endpoints import ALL_ENDPOINTS
from shakesco_async.ledger import EntryState, Settlement
from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.support.ledgers import LedgerSpec, begin_immediate

Transaction = Callable[[Callable[[Any], Awaitable[None]]], Awaitable[None]]


class App:
    """The application's side: its own connection to the ledger's database, and an orders table."""

    def __init__(self, spec: LedgerSpec, conn: Any) -> None:
        self.spec, self.conn = spec, conn
        self.table = f"orders_{uuid.uuid4().hex[:8]}"

    async def setup(self) -> None:
        if self.spec.backend == "sqlite":
            await self.conn.execute(f"CREATE TABLE {self.table} (id TEXT PRIMARY KEY)")
            await self.conn.commit()
        else:
            await self.conn.execute(f"CREATE TABLE {self.table} (id text PRIMARY KEY)")

    @asynccontextmanager
    async def transaction(self, *, commit: bool = True) -> AsyncIterator[Any]:
        """A transaction of the application's, committed or rolled back at the end."""
        if self.spec.backend == "sqlite":
            await self.conn.execute("BEGIN IMMEDIATE")  # a deferred one may not upgrade to write
            try:
                yield self.conn
            except BaseException:
                await self.conn.rollback()
                raise
            await (self.conn.commit() if commit else self.conn.rollback())
            return
        tx = self.conn.transaction()
        await tx.start()
        try:
            yield self.conn
        except BaseException:
            await tx.rollback()
            raise
        await (tx.commit() if commit else tx.rollback())

    async def order(self, conn: Any, order_id: str) -> None:
        sql = f"INSERT INTO {self.table} (id) VALUES ({'?' if self.spec.backend == 'sqlite' else '$1'})"
        await conn.execute(sql, (order_id,) if self.spec.backend == "sqlite" else order_id)

    async def orders(self) -> list[str]:
        if self.spec.backend == "sqlite":
            async with self.conn.execute(f"SELECT id FROM {self.table} ORDER BY id") as cursor:
                return [row[0] for row in await cursor.fetchall()]
        return [row[0] for row in await self.conn.fetch(f"SELECT id FROM {self.table} ORDER BY id")]


@pytest.fixture
async def app(ledger_spec: LedgerSpec) -> AsyncIterator[App]:
    if ledger_spec.backend == "sqlite":
        conn: Any = await aiosqlite.connect(ledger_spec.location, isolation_level=None)
    else:
        import asyncpg

        conn = await asyncpg.connect(ledger_spec.location)
    made = App(ledger_spec, conn)
    try:
        yield made
    finally:
        await conn.close()


@pytest.fixture
async def client(make_client: ClientFactory, app: App) -> ShakescoClient:
    client = make_client()
    await client.set_event_details("purchase", 50, False)  # opens the ledger (its schema) too
    await app.setup()
    return client


async def test_a_committed_stage_is_sent_once_and_its_result_awaited(
    client: ShakescoClient, app: App, sandbox: Sandbox
) -> None:
    async with app.transaction() as conn:
        await app.order(conn, "1001")
        key = await client.staged(conn).claim_tokens("purchase", "ann", idempotency_key="order-1001")
    assert key == "order-1001"
    assert (await client.ledger.get(key)).state == EntryState.STAGED  # type: ignore[union-attr]
    assert sandbox.applied_writes("/claim-tokens") == []  # nothing leaves before the sender takes it
    client.start_sender(poll=0.05)
    receipt = await client.result_of(key, wait=30)
    assert isinstance(receipt, sa.Receipt) and receipt.tx_hash
    assert [w.idempotency_key for w in sandbox.applied_writes("/claim-tokens")] == ["order-1001"]
    assert await client.balance("ann") == 50
    assert await app.orders() == ["1001"]
    # A call with the same key replays the receipt; nothing is sent again.
    assert (await client.claim_tokens("purchase", "ann", idempotency_key=key)).replayed
    assert len(sandbox.applied_writes("/claim-tokens")) == 1


async def test_a_rolled_back_stage_never_existed(client: ShakescoClient, app: App, sandbox: Sandbox) -> None:
    async with app.transaction(commit=False) as conn:
        await app.order(conn, "1002")
        key = await client.staged(conn).redeem_tokens("ann", 5)
    assert key.startswith("sdk_")
    client.start_sender(poll=0.05)
    await client.upgrade_to_shakesco("bob", 1)  # a write of its own, and a few sender passes
    await client.reconcile(older_than=0)
    assert await client.ledger.get(key) is None
    with pytest.raises(sa.LedgerError, match="no write has the idempotency key"):
        await client.result_of(key, wait=0)
    assert sandbox.applied_writes("/redeem-tokens") == []
    assert await app.orders() == []


async def test_bad_input_is_refused_before_anything_is_recorded(client: ShakescoClient, app: App) -> None:
    async with app.transaction() as conn:
        await app.order(conn, "1003")
        staged = client.staged(conn)
        with pytest.raises(sa.ValidationError):
            await staged.redeem_tokens("ann", -5, idempotency_key="bad")
        with pytest.raises(sa.ValidationError):
            await staged.claim_tokens("purchase", "", idempotency_key="bad")
    assert await client.ledger.get("bad") is None
    assert await app.orders() == ["1003"]  # the application's transaction went on and committed


async def test_a_key_staged_twice_is_one_write_and_other_parameters_are_refused(
    client: ShakescoClient, app: App, sandbox: Sandbox
) -> None:
    async with app.transaction() as conn:
        staged = client.staged(conn)
        await staged.upgrade_to_shakesco("ann", 10, idempotency_key="once")
        await staged.upgrade_to_shakesco("ann", 10, idempotency_key="once")
        with pytest.raises(sa.IdempotencyConflict):
            await staged.upgrade_to_shakesco("ann", 11, idempotency_key="once")
    client.start_sender(poll=0.05)
    await client.result_of("once", wait=30)
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == 1


async def test_a_customers_staged_writes_are_sent_in_staging_order(
    client: ShakescoClient, app: App, sandbox: Sandbox
) -> None:
    keys = []
    for n in range(6):
        async with app.transaction() as conn:
            await app.order(conn, f"o{n}")
            if n % 2 == 0:
                keys.append(await client.staged(conn).claim_tokens("purchase", "ann", idempotency_key=f"k{n}"))
            else:
                keys.append(await client.staged(conn).redeem_tokens("ann", 50, idempotency_key=f"k{n}"))
    client.start_sender(poll=0.05)
    for key in keys:
        await client.result_of(key, wait=30)  # a redeem before its claim would be refused
    applied = [w.idempotency_key for w in sandbox.applied if (w.idempotency_key or "").startswith("k")]
    assert applied == keys
    assert await client.balance("ann") == 0


async def test_the_outcome_of_a_refused_staged_write_is_its_error(
    client: ShakescoClient, app: App, sandbox: Sandbox
) -> None:
    async with app.transaction() as conn:
        key = await client.staged(conn).redeem_tokens("nobody", 5)
    client.start_sender(poll=0.05)
    with pytest.raises(sa.InsufficientBalance):
        await client.result_of(key, wait=30)
    assert (await client.ledger.get(key)).state == EntryState.FAILED  # type: ignore[union-attr]


async def test_a_pending_result_is_outcome_unknown_after_the_wait(client: ShakescoClient, app: App) -> None:
    async with app.transaction() as conn:
        key = await client.staged(conn).upgrade_to_shakesco("ann", 1)
    with pytest.raises(sa.OutcomeUnknown, match="still staged"):
        await client.result_of(key, wait=0.05)  # no sender runs


async def test_a_staged_write_is_sent_by_a_call_with_its_key_too(
    client: ShakescoClient, app: App, sandbox: Sandbox
) -> None:
    async with app.transaction() as conn:
        key = await client.staged(conn).upgrade_to_shakesco("ann", 3, idempotency_key="direct")
    receipt = await client.upgrade_to_shakesco("ann", 3, idempotency_key=key)
    assert receipt.tx_hash and not receipt.replayed
    assert (await client.result_of(key)).tx_hash == receipt.tx_hash
    assert len(sandbox.applied_writes("/upgrade-to-shakesco")) == 1


async def test_a_connection_the_ledger_cannot_share_is_refused(
    client: ShakescoClient, app: App, tmp_path: Path, ledger_spec: LedgerSpec
) -> None:
    other = sqlite3.connect(tmp_path / "elsewhere.sqlite3")
    try:
        with pytest.raises(sa.ConfigurationError):
            await client.staged(other).upgrade_to_shakesco("ann", 1)
    finally:
        other.close()
    with pytest.raises(sa.ConfigurationError):
        await client.staged(object()).upgrade_to_shakesco("ann", 1)
    if ledger_spec.backend == "postgres":  # outside a transaction it would commit on its own
        with pytest.raises(sa.ConfigurationError, match="inside the application's transaction"):
            await client.staged(app.conn).upgrade_to_shakesco("ann", 1)


def test_every_write_of_the_client_can_be_staged_with_the_same_parameters() -> None:
    writes = {e.name for e in ALL_ENDPOINTS if e.is_write}
    staged = {name for name in dir(sa.StagedWrites) if not name.startswith("_")}
    assert staged == writes
    for name in writes:
        client_params = inspect.signature(getattr(ShakescoClient, name)).parameters
        assert inspect.signature(getattr(sa.StagedWrites, name)).parameters == client_params


async def test_other_connections_the_application_may_hold(
    client: ShakescoClient, app: App, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    """sqlite3 (SQLite ledger); SQLAlchemy's AsyncConnection and AsyncSession (PostgreSQL)."""
    keys = []
    if ledger_spec.backend == "sqlite":
        # A sqlite3 connection blocks the event loop while it waits for the file's write lock,
        # and the ledger may need the loop to give it up: take the lock without waiting.
        db = sqlite3.connect(ledger_spec.location, isolation_level=None, timeout=0)
        try:
            await begin_immediate(db)
            db.execute(f"INSERT INTO {app.table} (id) VALUES ('s1')")
            keys.append(await client.staged(db).claim_tokens("purchase", "ann"))
            db.execute("COMMIT")
            await begin_immediate(db)
            db.execute(f"INSERT INTO {app.table} (id) VALUES ('s2')")
            await client.staged(db).claim_tokens("purchase", "ann", idempotency_key="rolled-back")
            db.execute("ROLLBACK")  # the handler failed
        finally:
            db.close()
        expected = ["s1"]
    else:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        engine = create_async_engine(ledger_spec.location.replace("postgresql://", "postgresql+asyncpg://"))
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"INSERT INTO {app.table} (id) VALUES ('s1')"))
                keys.append(await client.staged(conn).claim_tokens("purchase", "ann"))
            async with AsyncSession(engine) as session, session.begin():
                await session.execute(text(f"INSERT INTO {app.table} (id) VALUES ('s2')"))
                keys.append(await client.staged(session).claim_tokens("purchase", "ann"))
            async with engine.connect() as conn:
                await conn.begin()
                await conn.execute(text(f"INSERT INTO {app.table} (id) VALUES ('s3')"))
                await client.staged(conn).claim_tokens("purchase", "ann", idempotency_key="rolled-back")
                await conn.rollback()  # the handler failed
        finally:
            await engine.dispose()
        expected = ["s1", "s2"]
    client.start_sender(poll=0.05)
    for key in keys:
        await client.result_of(key, wait=30)
    assert await client.ledger.get("rolled-back") is None
    assert [w.idempotency_key for w in sandbox.applied_writes("/claim-tokens")] == keys
    assert await app.orders() == expected


async def test_the_sender_is_told_of_a_commit_and_needs_no_poll(
    client: ShakescoClient, app: App, ledger_spec: LedgerSpec
) -> None:
    """PostgreSQL: the staging transaction's NOTIFY wakes the sender; it would poll only hourly."""
    if ledger_spec.backend != "postgres":
        pytest.skip("SQLite has no notifications: its sender polls")
    client.start_sender(poll=3600)
    await client.upgrade_to_shakesco("warm", 1)  # the sender's first pass is over, and it listens
    for n in range(3):
        async with app.transaction() as conn:
            key = await client.staged(conn).claim_tokens("purchase", "ann", idempotency_key=f"n{n}")
        assert (await client.result_of(key, wait=30)).tx_hash


async def test_a_sender_cancelled_as_a_notification_arrives_stops(
    client: ShakescoClient, ledger_spec: LedgerSpec
) -> None:
    """The cancellation must not be lost to the wake-up (``aclose()`` would wait for ever)."""
    if ledger_spec.backend != "postgres":
        pytest.skip("SQLite's sender polls")
    ledger: Any = client.ledger
    await asyncio.wait_for(ledger.staged_arrived(30), 10)  # it listens now, and has looked once
    waiting = asyncio.create_task(ledger.staged_arrived(30))
    await asyncio.sleep(0.05)
    ledger._staged.set()  # the notification and the cancellation in the same turn of the loop
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_staging_that_fails_halfway_says_to_roll_back_and_a_rollback_leaves_nothing(
    client: ShakescoClient, app: App, ledger_spec: LedgerSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shakesco_async.ledger import _sqlite, _staging

    if ledger_spec.backend == "sqlite":  # one step on the connection's thread: it fails after the inserts

        def broken_step(raw: Any, statements: _staging.Statements, values: Any) -> Any:
            for sql in statements.insert:
                raw.execute(sql, _staging._used(sql, values))
            raise OSError("disk I/O error")

        monkeypatch.setattr(_sqlite, "stage_sqlite", broken_step)
    else:
        run = _staging._RUNNERS["asyncpg"]

        async def broken_read_back(conn: Any, sql: str, values: Any, *, fetch: bool) -> Any:
            if sql.startswith("SELECT operation"):  # after the insert: the connection fails
                raise OSError("connection lost")
            return await run(conn, sql, values, fetch=fetch)

        monkeypatch.setitem(_staging._RUNNERS, "asyncpg", broken_read_back)
    async with app.transaction(commit=False) as conn:  # the caller rolls back, as told
        with pytest.raises(sa.LedgerError, match="roll the transaction back"):
            await client.staged(conn).upgrade_to_shakesco("ann", 1, idempotency_key="half")
    assert await client.ledger.get("half") is None


async def test_a_customers_later_write_waits_while_an_earlier_one_is_left_owed(
    client: ShakescoClient, app: App, sandbox: Sandbox
) -> None:
    """The first write's read fails (it stays owed): the second, on the same customer, is not
    sent before it, though the sender has both at once."""
    keys = []
    async with app.transaction() as conn:
        for n in range(2):
            keys.append(await client.staged(conn).claim_tokens("purchase", "ann", idempotency_key=f"w{n}"))
    refused = sandbox.faults.add("error", endpoint="/total-earned", on="read", count=1, status=400, message="no")
    client.start_sender(poll=0.05, concurrency=4)
    for key in keys:
        await client.result_of(key, wait=30)
    assert refused.fired == 1
    assert [w.idempotency_key for w in sandbox.applied_writes("/claim-tokens")] == keys


async def test_a_staged_write_goes_out_after_one_commit_with_its_snapshot(
    client: ShakescoClient, app: App, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    """The sender sends a staged write as a call sends a new one: where the ledger can fence
    a snapshot, the commit that leases its customer also marks it sending, with the state read
    before it; the request leaves once, and its verification has that state to judge by."""
    async with app.transaction() as conn:
        key = await client.staged(conn).claim_tokens("purchase", "ann", idempotency_key="one-commit")
    marks: list[str] = []
    ledger: Any = client.ledger
    mark_sending = ledger.mark_sending

    async def counted(key: str, **kwargs: Any) -> None:
        marks.append(key)
        await mark_sending(key, **kwargs)

    ledger.mark_sending = counted
    client.start_sender(poll=0.05)
    await client.result_of(key, wait=30)
    entry = await client.ledger.get(key)
    assert entry is not None and entry.attempts == 1 and entry.snapshot == {"total_earned": "0.0"}
    assert marks == ([] if client.ledger.fences_snapshots else [key])
    assert len(sandbox.applied_writes("/claim-tokens")) == 1


async def test_a_stopped_sender_gives_back_what_it_claimed(
    make_client: ClientFactory, client: ShakescoClient, app: App, sandbox: Sandbox
) -> None:
    """Claimed but not yet sent when the client closes: another process takes them at once,
    not once the claims lapse."""
    release = asyncio.Event()
    sandbox.faults.add("commit_late", endpoint="/claim-tokens", delay=30, release=release)
    keys = []
    async with app.transaction() as conn:
        for n in range(4):
            keys.append(await client.staged(conn).claim_tokens("purchase", f"c{n}", idempotency_key=f"s{n}"))
    client.start_sender(poll=0.05, concurrency=1)
    for _ in range(3000):
        if sandbox.faults.rules[0].held:  # the first is on its way; the next claimed behind it
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    release.set()
    await client.aclose()
    other = make_client()
    taken = await other.ledger.claim_open(owner="other", older_than=0, limit=10, ttl=60, states=[EntryState.STAGED])
    sent = {w.idempotency_key for w in sandbox.applied_writes("/claim-tokens")}
    assert {e.key for e in taken} == set(keys) - sent
    assert len(taken) >= 2  # at least the one claimed behind the first, and the one never claimed


async def test_result_of_learns_a_settle_in_this_process_without_reading_again(
    client: ShakescoClient, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app.transaction() as conn:
        key = await client.staged(conn).upgrade_to_shakesco("ann", 1, idempotency_key="woken")
    ledger: Any = client.ledger
    get, read_once = ledger.get, asyncio.Event()
    staged = await get(key)

    async def stale_get(k: str) -> Any:  # reading again would find it still staged
        read_once.set()
        return staged

    monkeypatch.setattr(ledger, "get", stale_get)
    waiting = asyncio.create_task(client.result_of(key, wait=30))
    await read_once.wait()
    receipt = {"kind": "receipt", "tx_hash": "0xfeed"}
    assert await ledger.settle(key, Settlement(EntryState.COMMITTED, result=receipt))
    assert (await asyncio.wait_for(waiting, 10)).tx_hash == "0xfeed"


async def test_client_transaction_commits_the_change_with_its_staged_writes(
    client: ShakescoClient, app: App, sandbox: Sandbox
) -> None:
    async with client.transaction(app.conn) as staged:
        await app.order(app.conn, "t1")
        key = await staged.claim_tokens("purchase", "ann", idempotency_key="t1")
    assert await app.orders() == ["t1"]
    assert (await client.ledger.get(key)).state == EntryState.STAGED  # type: ignore[union-attr]
    client.start_sender(poll=0.05)
    assert (await client.result_of(key, wait=30)).tx_hash
    assert [w.idempotency_key for w in sandbox.applied_writes("/claim-tokens")] == ["t1"]


async def test_client_transaction_rolls_back_the_change_and_its_writes_when_it_raises(
    client: ShakescoClient, app: App
) -> None:
    async def order_that_fails() -> None:
        async with client.transaction(app.conn) as staged:
            await app.order(app.conn, "t2")
            await staged.claim_tokens("purchase", "ann", idempotency_key="t2")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await order_that_fails()
    assert await app.orders() == []
    assert await client.ledger.get("t2") is None
    async with client.transaction(app.conn) as staged:  # the connection is usable again
        await staged.claim_tokens("purchase", "ann", idempotency_key="t2")
    assert await client.ledger.get("t2") is not None


async def test_client_transaction_with_a_key_staged_before_for_another_write_commits_nothing(
    client: ShakescoClient, app: App
) -> None:
    async with client.transaction(app.conn) as staged:
        await staged.claim_tokens("purchase", "ann", idempotency_key="taken")

    async def order_for_another_write() -> None:
        async with client.transaction(app.conn) as staged:
            await app.order(app.conn, "t3")
            await staged.claim_tokens("purchase", "bob", idempotency_key="taken")

    with pytest.raises(sa.IdempotencyConflict):
        await order_for_another_write()
    assert await app.orders() == []
    entry = await client.ledger.get("taken")
    assert entry is not None and entry.params["customer_ref"] == "ann"


async def test_client_transaction_refuses_a_connection_it_cannot_stage_through(client: ShakescoClient) -> None:
    with pytest.raises(sa.ConfigurationError):
        async with client.transaction(object()):
            pytest.fail("the block must not run")


async def test_the_ledger_takes_turns_with_the_applications_transactions(
    client: ShakescoClient, app: App, ledger_spec: LedgerSpec, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a ledger write waits for the open transaction and goes right after it (no
    "database is locked"); one that the transaction waits for fails instead of hanging."""
    if ledger_spec.backend != "sqlite":
        pytest.skip("PostgreSQL has no one write lock to take turns on")
    from shakesco_async.ledger import _sqlite

    async with client.transaction(app.conn) as staged:
        await staged.upgrade_to_shakesco("ann", 1, idempotency_key="turns")
        beside = asyncio.create_task(client.upgrade_to_shakesco("bob", 1, idempotency_key="beside"))
        await asyncio.sleep(0.2)
        assert not beside.done()  # its intent cannot be recorded while the transaction is open
        assert sandbox.applied_writes("/upgrade-to-shakesco") == []
    assert (await asyncio.wait_for(beside, 10)).tx_hash

    monkeypatch.setattr(_sqlite, "WRITE_LOCK_WAIT", 0.2)
    with pytest.raises(sa.LedgerError):
        async with client.transaction(app.conn):
            await client.upgrade_to_shakesco("cy", 1, idempotency_key="inside")  # waits on its own block
    assert [w.idempotency_key for w in sandbox.applied_writes("/upgrade-to-shakesco")] == ["beside"]
    assert await client.ledger.get("inside") is None


async def test_client_transaction_through_a_sqlite3_connection(
    make_client: ClientFactory, ledger_spec: LedgerSpec, sandbox: Sandbox
) -> None:
    if ledger_spec.backend != "sqlite":
        pytest.skip("sqlite3 connections are for the SQLite ledger")
    client = make_client()
    db = sqlite3.connect(ledger_spec.location, isolation_level=None, timeout=0)
    try:
        async with client.transaction(db) as staged:
            db.execute("CREATE TABLE IF NOT EXISTS orders_sync (id TEXT PRIMARY KEY)")
            db.execute("INSERT INTO orders_sync (id) VALUES ('s1')")
            key = await staged.upgrade_to_shakesco("ann", 2, idempotency_key="sync-1")
        assert db.execute("SELECT id FROM orders_sync").fetchall() == [("s1",)]
        assert (await client.ledger.get(key)).state == EntryState.STAGED  # type: ignore[union-attr]
    finally:
        db.close()


async def test_client_transaction_through_sqlalchemy(
    client: ShakescoClient, app: App, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    """An AsyncConnection and an AsyncSession, each begun and committed (or rolled back) by
    ``client.transaction``."""
    if ledger_spec.backend != "postgres":
        pytest.skip("SQLAlchemy connections are for the PostgreSQL ledger")
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(ledger_spec.location.replace("postgresql://", "postgresql+asyncpg://"))

    async def failing(conn: Any) -> None:
        async with client.transaction(conn) as staged:
            await conn.execute(text(f"INSERT INTO {app.table} (id) VALUES ('q3')"))
            await staged.claim_tokens("purchase", "ann", idempotency_key="q-rolled-back")
            raise RuntimeError("the handler failed")

    try:
        async with engine.connect() as conn:
            async with client.transaction(conn) as staged:
                await conn.execute(text(f"INSERT INTO {app.table} (id) VALUES ('q1')"))
                first = await staged.claim_tokens("purchase", "ann", idempotency_key="q1")
            with pytest.raises(RuntimeError):
                await failing(conn)
        async with AsyncSession(engine) as session, client.transaction(session) as staged:
            await session.execute(text(f"INSERT INTO {app.table} (id) VALUES ('q2')"))
            second = await staged.claim_tokens("purchase", "ann", idempotency_key="q2")
    finally:
        await engine.dispose()
    assert await app.orders() == ["q1", "q2"]
    assert await client.ledger.get("q-rolled-back") is None
    client.start_sender(poll=0.05)
    for key in (first, second):
        await client.result_of(key, wait=30)
    assert [w.idempotency_key for w in sandbox.applied_writes("/claim-tokens")] == ["q1", "q2"]


async def test_client_transaction_that_cannot_begin_or_commit_is_a_ledger_error(
    client: ShakescoClient, app: App, ledger_spec: LedgerSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: another process holds the file's write lock past the wait; PostgreSQL: a
    deferred constraint fails the commit. Either way ``LedgerError``, and nothing owed."""
    if ledger_spec.backend == "sqlite":
        from shakesco_async.ledger import _sqlite

        monkeypatch.setattr(_sqlite, "WRITE_LOCK_WAIT", 0.2)
        other = sqlite3.connect(ledger_spec.location, isolation_level=None, timeout=0)
        await begin_immediate(other)  # as another process would
        try:
            with pytest.raises(sa.LedgerError, match="could not begin"):
                async with client.transaction(app.conn):
                    pytest.fail("the block must not run")
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    await app.conn.execute("CREATE TABLE once_each (id text, CONSTRAINT one UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)")

    async def twice() -> None:
        async with client.transaction(app.conn) as staged:
            await app.conn.execute("INSERT INTO once_each (id) VALUES ('x'), ('x')")  # checked at commit
            await staged.claim_tokens("purchase", "ann", idempotency_key="never")

    with pytest.raises(sa.LedgerError, match="failed to commit"):
        await twice()
    assert await client.ledger.get("never") is None
