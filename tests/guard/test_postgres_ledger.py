"""PostgreSQL specifics: schema, isolation per business, the CLI on a DSN, moving from SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import shakesco_async as sa
from shakesco_async.endpoints.rewards import CLAIM_TOKENS
from shakesco_async.guard._outcome import canonical
from shakesco_async.ledger import EntryState, Intent, KeySource, open_ledger
from shakesco_async.ledger._advisory import AdvisoryLeases
from shakesco_async.ledger._postgres import (
    SCHEMA_VERSION,
    PostgresLedger,
    begin_sql,
    claim_sql,
    open_entries_sql,
    schema_sql,
)
from shakesco_async.sandbox import Sandbox
from tests.conftest import FAST_GUARD, postgres_spec
from tests.guard._crash import die_at
from tests.support.cli import run_cli as _cli
from tests.support.pgbouncer import pgbouncer
from tests.support.postgres import standby_of

ROOT = Path(__file__).resolve().parents[2]


async def test_dsn_and_pool_pick_postgres(postgres_dsn: str) -> None:
    assert isinstance(open_ledger(postgres_dsn, business="b"), PostgresLedger)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
    try:
        ledger = open_ledger(pool, business="b")
        assert isinstance(ledger, PostgresLedger)
        await ledger.open()
        assert await ledger.counts() == dict.fromkeys(EntryState, 0)
        await ledger.close()
        assert not pool._closed  # a caller's pool stays the caller's
    finally:
        await pool.close()


async def test_schema_is_versioned_and_the_sql_file_matches(postgres_dsn: str) -> None:
    spec = postgres_spec(postgres_dsn)
    ledger = PostgresLedger(postgres_dsn, business="b", schema=spec.schema)
    await ledger.open()
    await ledger.close()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert await conn.fetchval(f"SELECT version FROM {spec.schema}.schema_version") == SCHEMA_VERSION
        # The documented file applies by hand to a fresh schema, and the SDK accepts it as is.
        await conn.execute(schema_sql("by_hand"))
    finally:
        await conn.close()
    manual = PostgresLedger(postgres_dsn, business="b", schema="by_hand", migrate=False)
    assert await manual.counts() == dict.fromkeys(EntryState, 0)
    await manual.close()
    assert "shakesco.entries" in (ROOT / "shakesco_async/ledger/postgres_schema.sql").read_text()


async def test_a_version_2_schema_gains_the_indexes_of_open_entries(postgres_dsn: str) -> None:
    schema = postgres_spec(postgres_dsn).schema
    table = f"{schema}.entries"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(schema_sql(schema))
        # As an SDK of schema version 2 left it.
        await conn.execute(
            f"DROP INDEX {schema}.entries_open_by_age_6; DROP INDEX {schema}.entries_open_by_customer;"
            f" UPDATE {schema}.schema_version SET version = 2"
        )
        ledger = PostgresLedger(postgres_dsn, business="b", schema=schema)
        await ledger.open()
        await ledger.close()
        assert await conn.fetchval(f"SELECT version FROM {schema}.schema_version") == SCHEMA_VERSION == 6
        # The table is tiny, so the planner is told to avoid a scan: whether it then can use
        # an index depends on the query spelling out that partial index's condition.
        await conn.execute("SET enable_seqscan = off")
        claim = await conn.fetch("EXPLAIN " + claim_sql(table), "o", 60.0, "b", None, 0.0, 10)
        assert "entries_open_by_age_6" in "\n".join(row[0] for row in claim)
        await conn.execute("SET enable_seqscan = on")
        # A loyal customer's long history of final writes, and many open writes of others:
        # the check before a write finds the customer's open entries without reading either.
        columns = "business, key, operation, params, params_digest, customers, key_source, state, snapshot"
        await conn.execute(
            f"INSERT INTO {table} ({columns}) SELECT 'b', 'h' || g, '/claim-tokens', '{{}}', 'd', ARRAY['loyal'],"
            " 'caller', 'committed', '{}' FROM generate_series(1, 3000) g;"
            f" INSERT INTO {table} ({columns}) SELECT 'b', 'o' || g, '/claim-tokens', '{{}}', 'd', ARRAY['c' || g],"
            f" 'caller', 'in_doubt', '{{}}' FROM generate_series(1, 3000) g; ANALYZE {table}"
        )
        check = await conn.fetch("EXPLAIN " + open_entries_sql(table, "business = $3"), "k", ["loyal"], "b")
        assert "entries_open_by_customer" in "\n".join(row[0] for row in check)
        # The same check, made by the statement that records a new write.
        args = ("b", "k", "/claim-tokens", "{}", "d", ["loyal"], "caller", "recorded", 0, None, None)
        begin = await conn.fetch("EXPLAIN " + begin_sql(table), *args)
        assert "entries_open_by_customer" in "\n".join(row[0] for row in begin)
    finally:
        await conn.close()


async def test_keys_are_unique_per_business(postgres_dsn: str, sandbox: Sandbox) -> None:
    sandbox.add_business("sk_second")
    schema = postgres_spec(postgres_dsn).schema
    clients = [
        sa.ShakescoClient(
            key,
            base_url=sandbox.base_url,
            timeout=2.0,
            guard=FAST_GUARD,
            ledger=PostgresLedger(postgres_dsn, business=sa._config.ApiKey(key).fingerprint, schema=schema),
        )
        for key in (sandbox.api_key, "sk_second")
    ]
    try:
        first = await clients[0].upgrade_to_shakesco("same", 1, idempotency_key="shared-key")
        second = await clients[1].upgrade_to_shakesco("same", 2, idempotency_key="shared-key")
        assert not first.replayed and not second.replayed  # no conflict across businesses
        conn = await asyncpg.connect(postgres_dsn)
        try:
            stored = await conn.fetch(f"SELECT business FROM {schema}.entries")
        finally:
            await conn.close()
        assert len(stored) == 2
        assert all(sandbox.api_key not in r["business"] and "sk_second" not in r["business"] for r in stored)
    finally:
        for c in clients:
            await c.aclose()
            await c.ledger.close()


async def test_move_a_sqlite_ledger_then_use_the_cli_on_the_dsn(
    postgres_dsn: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "old.sqlite3"
    async with sa.ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=path, timeout=2.0, guard=FAST_GUARD
    ) as old:
        await old.upgrade_to_shakesco("m1", 5, idempotency_key="done-before")
        await die_at(old, "sending_applied", "left-open", "m2", KeySource.CALLER)
        # A repeatable claim recorded by a process that died before sending it.
        await old.set_event_details("visit", 1, False)
        wire = CLAIM_TOKENS.prepare({"event_name": "visit", "customer_ref": "m3"})
        intent = Intent("never-sent", CLAIM_TOKENS.path, canonical(wire), ("m3",), KeySource.CALLER)
        assert (await old.ledger.begin(intent, owner="dead-process", lease_ttl=0.05)).created
    schema = "shakesco"
    code, out, err = await _cli("ledger", "move-to-postgres", postgres_dsn, "--ledger", str(path), "--json", env={})
    assert code == 0, err
    assert json.loads(out) == {"read": 4, "inserted": 4}
    env = {"SHAKESCO_API_KEY": sandbox.api_key, "SHAKESCO_BASE_URL": sandbox.base_url, "SHAKESCO_LEDGER": postgres_dsn}
    code, out, _ = await _cli("ledger", "stats", "--json", env=env)
    assert json.loads(out)["sending"] == 1
    code, out, _ = await _cli("ledger", "show", "left-open", "--json", env=env)
    assert json.loads(out)["in_flight"] == 2.0 + 1.0  # its sender's timeout and margin moved with it
    code, out, _ = await _cli("reconcile", "--older-than", "0", "--json", env=env)
    assert code == 0 and json.loads(out)["counts"]["committed"] == 1
    assert json.loads(out)["counts"]["resent"] == 1  # "never-sent", now sent once
    # The same keys on the shared ledger replay instead of sending again.
    async with sa.ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=postgres_dsn, timeout=2.0, guard=FAST_GUARD
    ) as new:
        replay = await new.upgrade_to_shakesco("m1", 5, idempotency_key="done-before")
        assert replay.replayed
    assert len(sandbox.applied_writes(idempotency_key="done-before")) == 1
    assert len(sandbox.applied_writes(idempotency_key="left-open")) == 1

    # The old file is retired: a forgotten worker or reconcile on it cannot send again
    # what the shared ledger already settled.
    env_old = {**env, "SHAKESCO_LEDGER": str(path)}
    code, _, err = await _cli("reconcile", "--older-than", "0", env=env_old)
    assert code != 0 and "moved to PostgreSQL" in err
    assert len(sandbox.applied_writes(idempotency_key="never-sent")) == 1
    async with sa.ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=path, timeout=2.0, guard=FAST_GUARD
    ) as stale:
        with pytest.raises(sa.LedgerError, match="moved to PostgreSQL"):
            await stale.upgrade_to_shakesco("m2", 10, idempotency_key="left-open")
    assert len(sandbox.applied_writes(idempotency_key="left-open")) == 1
    code, _, err = await _cli("ledger", "move-to-postgres", postgres_dsn, "--ledger", str(path), env={})
    assert code != 0 and "already" in err
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


async def test_a_move_that_fails_leaves_the_sqlite_ledger_as_it_was(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    async with sa.ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=path, timeout=2.0, guard=FAST_GUARD
    ) as old:
        await old.upgrade_to_shakesco("f1", 5, idempotency_key="kept")
    dsn = "postgresql://nobody@127.0.0.1:1/none"
    code, _, err = await _cli("ledger", "move-to-postgres", dsn, "--ledger", str(path), env={})
    assert code != 0 and "PostgreSQL" in err
    async with sa.ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=path, timeout=2.0, guard=FAST_GUARD
    ) as again:
        assert (await again.upgrade_to_shakesco("f1", 5, idempotency_key="kept")).replayed


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("postgresql://nobody:s3cret@127.0.0.1:1/none", "cannot open the PostgreSQL ledger: Connection"),
        ("postgresql://nobody:s3cret@127.0.0.1:5432x/none", "the DSN is not valid"),  # a typo in the port
    ],
)
async def test_unreachable_postgres_is_a_ledger_error_and_sends_nothing(dsn: str, says: str, sandbox: Sandbox) -> None:
    async with sa.ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=dsn, timeout=2.0, guard=FAST_GUARD
    ) as client:
        with pytest.raises(sa.LedgerError, match=says) as raised:
            await client.upgrade_to_shakesco("x", 1)
    assert sandbox.applied == []
    assert "s3cret" not in str(raised.value) and "nobody" not in repr(client.ledger)


@pytest.fixture
def bouncer(postgres_dsn: str) -> Callable[[str], contextlib.AbstractContextManager[str]]:
    """pgbouncer in front of the cluster; in CI its absence is a failure."""
    if shutil.which("pgbouncer") is None and not os.path.exists("/usr/sbin/pgbouncer"):
        if os.environ.get("CI"):
            raise FileNotFoundError("pgbouncer is not installed")
        pytest.skip("pgbouncer is not installed here")
    return lambda mode: pgbouncer(postgres_dsn, mode=mode)


async def _lease_both(dsn: str, **options: Any) -> list[object]:
    """Two processes' ledgers ask for one customer's lease in turn: what each got."""
    ledgers = [PostgresLedger(dsn, business="b", **options) for _ in range(2)]
    got: list[object] = []
    try:
        for n, ledger in enumerate(ledgers):
            try:
                got.append(await ledger.acquire(["customer:x"], owner=f"owner-{n}", lease_ttl=30))
            except sa.LedgerError as exc:
                got.append(exc)
    finally:
        for ledger in ledgers:
            await ledger.close()
    return got


async def test_a_pooler_in_transaction_mode_is_refused_before_any_lease(
    postgres_dsn: str, bouncer: Callable[[str], contextlib.AbstractContextManager[str]]
) -> None:
    # Through it, both processes' locks land on one server session, where session locks
    # are reentrant: each would hold the customer (measured: both got the lease).
    async with PostgresLedger(postgres_dsn, business="b") as ledger:  # the schema, made directly
        await ledger.counts()
    with bouncer("transaction") as dsn:
        refused = await _lease_both(dsn)
        declared = await _lease_both(dsn, session_pooler=True)  # wrongly declared session mode
    assert all(isinstance(r, sa.LedgerError) and "proxy or pooler" in str(r) for r in refused)
    assert declared[0] is None  # the first takes the lease on the one server session...
    assert isinstance(declared[1], sa.LedgerError) and "already holds advisory locks" in str(declared[1])


async def test_a_pooler_in_session_mode_works_once_declared(
    postgres_dsn: str, bouncer: Callable[[str], contextlib.AbstractContextManager[str]]
) -> None:
    async with PostgresLedger(postgres_dsn, business="b") as ledger:
        await ledger.counts()
    with bouncer("session") as dsn:
        undeclared = await _lease_both(dsn)
        declared = await _lease_both(dsn, session_pooler=True)
    assert all(isinstance(r, sa.LedgerError) and "session_pooler=True" in str(r) for r in undeclared)
    assert declared[0] is None and isinstance(declared[1], float)  # the second waits for the first


async def test_a_write_through_a_transaction_pooler_sends_nothing(
    postgres_dsn: str, sandbox: Sandbox, bouncer: Callable[[str], contextlib.AbstractContextManager[str]]
) -> None:
    with bouncer("transaction") as dsn:
        async with sa.ShakescoClient(
            sandbox.api_key, base_url=sandbox.base_url, ledger=dsn, timeout=2.0, guard=FAST_GUARD
        ) as client:
            with pytest.raises(sa.LedgerError, match="proxy or pooler"):
                await client.upgrade_to_shakesco("ann", 1, idempotency_key="pooled")
    assert sandbox.applied_writes() == []


async def _advisory_locks(dsn: str, pid: int) -> int:
    """The advisory locks server process ``pid`` holds (other tests' sessions, on the same
    server at the same time, hold their own)."""
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid)
    finally:
        await conn.close()
    return count


async def test_a_lease_session_whose_mark_changed_takes_no_lock(postgres_dsn: str) -> None:
    # What another client's statement on a shared server session looks like from here.
    ledger = PostgresLedger(postgres_dsn, business="b")
    try:
        assert await ledger.acquire(["customer:a"], owner="o1", lease_ttl=30) is None
        session = ledger._leases.session
        assert session is not None
        pid = session.get_server_pid()
        assert await _advisory_locks(postgres_dsn, pid) == 1
        await session.execute("SELECT set_config('shakesco.lease_session', 'another client', false)")
        with pytest.raises(sa.LedgerError, match="shared with other clients"):
            await ledger.acquire(["customer:b"], owner="o2", lease_ttl=30)
        with pytest.raises(sa.LedgerError, match="shared with other clients"):  # and from then on
            await ledger.acquire(["customer:c"], owner="o3", lease_ttl=30)
        # b was never locked; the session (and a's lock) ended with the refusal
        assert await _advisory_locks(postgres_dsn, pid) == 0
    finally:
        await ledger.close()


async def test_the_lease_session_is_not_ended_for_idling(postgres_dsn: str) -> None:
    """A server (or role) with ``idle_session_timeout`` would end the lease session while a
    write's request is in flight, and free its customer for another process to send again."""
    idle = f"{postgres_dsn}?idle_session_timeout=200"  # asyncpg sends unknown DSN params as settings
    schema = postgres_spec(postgres_dsn).schema
    holder = PostgresLedger(idle, business="b", schema=schema)
    other = PostgresLedger(postgres_dsn, business="b", schema=schema)
    try:
        assert await holder.acquire(["customer:a"], owner="o1", lease_ttl=30) is None
        await asyncio.sleep(0.8)  # a request in flight: the lease session idles
        assert await other.acquire(["customer:a"], owner="o2", lease_ttl=30) is not None  # still held
        assert holder._leases.alive
    finally:
        await holder.close()
        await other.close()


async def test_a_lease_session_on_a_standby_is_refused(postgres_dsn: str) -> None:
    """A multi-host DSN (primary and standby, ``target_session_attrs=any``) can put the lease
    connection on the standby while the records go to the primary: locks there keep no
    other process off a customer."""
    if os.environ.get("SHAKESCO_TEST_POSTGRES_DSN"):
        pytest.skip("needs a cluster of the tests' own to stream from")
    with standby_of(postgres_dsn) as standby_dsn:
        pool = await asyncpg.create_pool(standby_dsn, min_size=1, max_size=2)

        async def on_the_standby() -> asyncpg.Pool:
            return pool

        leases = AdvisoryLeases(on_the_standby, lambda name: f"b:{name}")
        try:
            with pytest.raises(sa.LedgerError, match="standby"):
                await leases.acquire(["customer:a"], "o1")
            assert leases.session is None and leases.holders == {}
        finally:
            await leases.close()
            await pool.close()


@pytest.mark.parametrize("claimer", ["ended", "alive"])
async def test_a_pass_takes_over_what_a_reconciler_whose_connection_ended_claimed(
    postgres_dsn: str, sandbox: Sandbox, claimer: str
) -> None:
    # A reconciler killed mid-pass leaves its pages claimed for five minutes; its claims
    # name the server process of its connection, and the next pass takes them at once
    # once that process has ended (as it does when the client's process dies).
    spec = postgres_spec(postgres_dsn)
    ledger = spec.make(sandbox.api_key)
    async with sa.ShakescoClient(
        sandbox.api_key, base_url=sandbox.base_url, ledger=ledger, timeout=2.0, guard=FAST_GUARD
    ) as client:
        for n in range(3):
            await die_at(client, "sending_applied", f"k{n}", f"c{n}", KeySource.CALLER)
        killed = spec.make(sandbox.api_key)  # another process's ledger
        admin = await asyncpg.connect(postgres_dsn)
        try:
            assert len(await killed.claim_open(owner="reconcile:x:0", older_than=0, limit=None, ttl=300)) == 3
            if claimer == "ended":
                pids = {r[0] for r in await admin.fetch(f"SELECT claimed_holder FROM {spec.schema}.entries")}
                assert len(pids) == 1
                [pid] = pids
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                for _ in range(200):
                    if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                        break
                    await asyncio.sleep(0.01)
            summary = await client.reconcile(older_than=0)
            assert summary.examined == (3 if claimer == "ended" else 0)  # a live one's claims are its own
            assert summary.counts.get("committed", 0) == summary.examined
        finally:
            await admin.close()
            with contextlib.suppress(sa.LedgerError):
                await killed.close()
    await ledger.close()
