"""The PostgreSQL ledger when the database itself fails: a restart, terminated backends, a
stopped server, statements that time out, a connection whose close arrives late.

Every call ends as a receipt, ``OutcomeUnknown`` or another ``ShakescoError`` (before a send:
``LedgerError``, nothing sent); a write the API applied is never reported otherwise; no
write is applied twice; once the database is back, writes go through again by themselves,
and reconcile settles what the fault left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

import shakesco_async as sa
from shakesco_async.endpoints.transfers import TRANSFER_TOKENS
from shakesco_async.guard._outcome import canonical
from shakesco_async.guard._verify import snapshot_of
from shakesco_async.ledger import EntryState, Intent, KeySource
from shakesco_async.ledger._postgres import PostgresLedger
from shakesco_async.sandbox import Sandbox
from tests.guard._crash import long_ago
from tests.support.postgres import Cluster, own_cluster
from tests.support.relay import LateCloseRelay

pytestmark = [
    pytest.mark.slow,
    # asyncpg's pool drops a connection the server ended without closing its socket (seen
    # with a bare pool across a restart); the garbage collector closes it, with a warning.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
GUARD = sa.GuardSettings(verify_delay=0.0, lease_ttl=5.0, lease_wait=3.0)
CUSTOMERS = [f"c{n}" for n in range(6)]


@pytest.fixture(autouse=True)
def _collect_leaked_sockets() -> Iterator[None]:
    yield
    gc.collect()  # here, where their warnings are filtered, not in a later test


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    try:
        with own_cluster() as made:
            yield made
    except (OSError, FileNotFoundError) as exc:
        import os

        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not available here: {exc}")


def _client(sandbox: Sandbox, dsn: str, schema: str) -> sa.ShakescoClient:
    ledger = PostgresLedger(dsn, business="b", schema=schema)
    return sa.ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger=ledger, timeout=1.0, guard=GUARD)


async def _terminate(dsn: str, ports: set[int] | None = None) -> int:
    """End every client backend but this one's (or those whose client port is in ``ports``)."""
    admin = await asyncpg.connect(dsn)
    try:
        rows = await admin.fetch(
            "SELECT pid, client_port FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        )
        ended = 0
        for row in rows:
            if ports is None or row["client_port"] in ports:
                ended += bool(await admin.fetchval("SELECT pg_terminate_backend($1)", row["pid"]))
        return ended
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def _writers(client: sa.ShakescoClient, seconds: float) -> AsyncIterator[dict[str, Any]]:
    """Writers on the same few customers for ``seconds``: what each call ended in."""
    report: dict[str, Any] = {"receipts": [], "unknown": [], "errors": [], "escaped": []}
    stop = time.monotonic() + seconds

    async def writer(n: int) -> None:
        rng = random.Random(n)
        while time.monotonic() < stop:
            a, b = rng.sample(CUSTOMERS, 2)
            key = f"w{n}-{uuid.uuid4().hex[:8]}"
            call: Awaitable[Any] = (
                client.transfer_tokens(a, b, "0.01", idempotency_key=key)
                if rng.random() < 0.5
                else client.upgrade_to_shakesco(f"{a}-{key}", 1, idempotency_key=key)
            )
            try:
                report["receipts"].append(await call)
            except sa.OutcomeUnknown as exc:
                report["unknown"].append(exc)
            except sa.ShakescoError as exc:
                report["errors"].append(exc)
                await asyncio.sleep(0.02)  # as a caller would: not a hot loop
            except Exception as exc:  # the contract is broken if anything lands here
                report["escaped"].append(exc)

    tasks = [asyncio.ensure_future(writer(n)) for n in range(4)]
    try:
        yield report
    finally:
        await asyncio.gather(*tasks)


async def _funded(client: sa.ShakescoClient) -> None:
    for customer in CUSTOMERS:
        await client.upgrade_to_shakesco(customer, 1000, idempotency_key=f"fund-{customer}")


async def _settled(client: sa.ShakescoClient, sandbox: Sandbox, report: dict[str, Any]) -> None:
    """Nothing escaped, nothing applied twice, and reconcile settles every open entry."""
    assert report["escaped"] == [], report["escaped"][:3]
    applied = [w.idempotency_key for w in sandbox.applied_writes()]
    assert len(applied) == len(set(applied)), "a write was applied twice"
    deadline = time.monotonic() + 30
    while True:
        try:
            summary = await client.reconcile(older_than=0)
            counts = {s: n for s, n in (await client.ledger.counts()).items() if n}
        except sa.LedgerError:  # the fault's tail (a session yet to reload its settings)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        if not ({EntryState.SENDING, EntryState.IN_DOUBT} & set(counts)):
            break
        assert time.monotonic() < deadline, (counts, summary)
        await asyncio.sleep(0.5)
    applied = [w.idempotency_key for w in sandbox.applied_writes()]
    assert len(applied) == len(set(applied)), "a write was applied twice"
    for receipt in report["receipts"]:  # every receipt is of a write the API applied
        assert receipt.idempotency_key in applied


async def _back_by_itself(client: sa.ShakescoClient, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await client.upgrade_to_shakesco("after", 1, idempotency_key=f"after-{uuid.uuid4().hex[:8]}")
            return
        except sa.LedgerError:
            assert time.monotonic() < deadline, "the ledger did not come back by itself"
            await asyncio.sleep(0.1)


async def test_a_connection_whose_close_arrives_late_never_replaces_the_apis_answer(
    cluster: Cluster, sandbox: Sandbox
) -> None:
    """Terminated while a POST is in flight, the pooled connections have read the server's
    "terminating connection" but not its end of stream (asyncpg: "cannot switch to state
    12"). Recording the outcome fails; the caller still gets the API's receipt."""
    async with LateCloseRelay(cluster.port, delay=2.0) as relay:
        dsn = f"postgresql://postgres@127.0.0.1:{relay.port}/postgres"
        async with _client(sandbox, dsn, "late") as client:
            await _funded(client)
            sandbox.faults.add("delay", endpoint="/redeem-tokens", delay=0.5, count=1)
            write = asyncio.ensure_future(client.redeem_tokens("c0", 1, idempotency_key="in-flight"))
            while not sandbox.applied_writes("/redeem-tokens"):  # noqa: ASYNC110 (the sandbox keeps no event)
                await asyncio.sleep(0.01)
            assert await _terminate(cluster.dsn, relay.upstream_ports) > 0
            receipt = await write
            assert receipt.tx_hash is not None and not receipt.verified
            # Until the closes arrive, each new write is refused as a LedgerError, nothing sent.
            with contextlib.suppress(sa.LedgerError):
                await client.redeem_tokens("c1", 1, idempotency_key="during")
            await _back_by_itself(client, within=10)
            await _settled(client, sandbox, {"receipts": [receipt], "escaped": []})
    assert len(sandbox.applied_writes("/redeem-tokens", idempotency_key="in-flight")) == 1


async def test_a_restart_under_writers(cluster: Cluster, sandbox: Sandbox) -> None:
    async with _client(sandbox, cluster.dsn, "restart") as client:
        await _funded(client)
        sandbox.faults.add("error", on="write", status=502, probability=0.1)
        async with _writers(client, 4.0) as report:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(cluster.restart, "fast")
        sandbox.faults.clear()
        assert report["receipts"]
        await _back_by_itself(client, within=10)
        await _settled(client, sandbox, report)


async def test_backends_terminated_again_and_again(cluster: Cluster, sandbox: Sandbox) -> None:
    async with _client(sandbox, cluster.dsn, "terminated") as client:
        await _funded(client)
        sandbox.faults.add("drop_after_commit", on="write", probability=0.1)
        async with _writers(client, 4.0) as report:
            for _ in range(4):
                await asyncio.sleep(0.7)
                await _terminate(cluster.dsn)
        sandbox.faults.clear()
        await _back_by_itself(client, within=10)
        await _settled(client, sandbox, report)


async def test_a_stopped_server_fails_fast_quietly_and_once_logged(
    cluster: Cluster, sandbox: Sandbox, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    async with _client(sandbox, cluster.dsn, "stopped") as client:
        await _funded(client)
        caplog.set_level(logging.WARNING)
        connects = 0
        original: Callable[..., Any] = asyncpg.connection.connect

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal connects
            connects += 1
            return await original(*args, **kwargs)

        await asyncio.to_thread(cluster.stop, "fast")
        calls = 0
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asyncpg.connection, "connect", counted)
            stop = time.monotonic() + 2.0
            while time.monotonic() < stop:
                calls += 1
                with pytest.raises(sa.LedgerError):
                    await client.upgrade_to_shakesco("down", 1, idempotency_key=f"down-{calls}")
            assert calls > 20  # each call failed at once
            assert connects <= 6, f"{connects} connection attempts for {calls} calls: a hot loop"
        await asyncio.to_thread(cluster.start)
        await _back_by_itself(client, within=10)
    assert sandbox.applied_writes("/upgrade-to-shakesco", idempotency_key="down-1") == []
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(down) == 1 and len(back) == 1, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if "connection floor" in r.getMessage()]
    assert "Traceback" not in capfd.readouterr().err


async def test_statements_timing_out(cluster: Cluster, sandbox: Sandbox) -> None:
    async with _client(sandbox, cluster.dsn, "timeouts") as client:
        await _funded(client)
        admin = await asyncpg.connect(cluster.dsn)
        await admin.execute("SET statement_timeout = 0")  # the setting below is for the SDK's sessions
        try:
            async with _writers(client, 3.0) as report:
                for _ in range(3):
                    await asyncio.sleep(0.4)
                    await admin.execute("ALTER SYSTEM SET statement_timeout = '1ms'")
                    await admin.execute("SELECT pg_reload_conf()")
                    await asyncio.sleep(0.4)
                    await admin.execute("ALTER SYSTEM RESET statement_timeout")
                    await admin.execute("SELECT pg_reload_conf()")
                    # and a lock pulse: every record waits, some past their timeout
                    async with admin.transaction():
                        await admin.execute("SET LOCAL lock_timeout = '2s'")
                        await admin.execute("LOCK TABLE timeouts.entries IN ACCESS EXCLUSIVE MODE")
                        await asyncio.sleep(0.3)
        finally:
            await admin.close()
        assert any(isinstance(e, sa.LedgerError) for e in report["errors"]) or report["receipts"]
        await _settled(client, sandbox, report)


# -- a write that lost its lease, and an earlier write whose other customer is busy ------------------
async def test_a_write_whose_lease_ended_does_not_judge_what_others_wrote_since(
    cluster: Cluster, sandbox: Sandbox
) -> None:
    """A's transfer got a 502; while A waits to read back, its lease session is ended and B
    writes the same customers (having settled A's entry). A's late read sees B's transfer
    too: judged, it would say "unexplained" and leave the entry in doubt for good."""
    async with _client(sandbox, cluster.dsn, "lost") as a, _client(sandbox, cluster.dsn, "lost") as b:
        await _funded(a)
        b_done = asyncio.Event()
        calls = 0
        verified = a.guard._verified

        async def slow(entry: Any, before: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:  # A's read once its request can no longer land: after B's write
                await b_done.wait()
            return await verified(entry, before)

        a.guard._verified = slow  # type: ignore[method-assign]
        sandbox.faults.add("fail_before_commit", endpoint="/transfer-tokens", count=1)
        write = asyncio.ensure_future(a.transfer_tokens("c0", "c1", 5, idempotency_key="a-transfer"))
        while calls < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        session = a.ledger._leases.session  # type: ignore[attr-defined]
        await _terminate(cluster.dsn, {session._con._transport.get_extra_info("sockname")[1]})
        await b.transfer_tokens("c0", "c1", 7, idempotency_key="b-transfer")
        b_done.set()
        with pytest.raises(sa.OutcomeUnknown, match="lease"):
            await write
        entry = await a.ledger.get("a-transfer")
        assert entry is not None and entry.state != EntryState.IN_DOUBT, entry
        assert entry.snapshot is not None or entry.state == EntryState.RECORDED
        summary = await a.reconcile(older_than=0)
        assert summary.in_doubt == ()
    assert len(sandbox.applied_writes("/transfer-tokens", idempotency_key="a-transfer")) <= 1
    assert len(sandbox.applied_writes("/transfer-tokens", idempotency_key="b-transfer")) == 1


async def _transfer_left_open(client: sa.ShakescoClient, key: str) -> None:
    """A transfer c0 -> c1 the API applied whose outcome record failed: open, with its snapshot."""
    wire = TRANSFER_TOKENS.prepare({"from_customer_ref": "c0", "to_customer_ref": "c1", "amount": 3})
    intent = Intent(key, TRANSFER_TOKENS.path, canonical(wire), ("c0", "c1"), KeySource.CALLER)
    ledger = client.ledger
    assert (await ledger.begin(intent, owner="gone", lease_ttl=5)).created
    snapshot = await snapshot_of(client, intent.operation, intent.params)
    await ledger.mark_sending(key, snapshot=snapshot, owner="gone", customers=intent.leases, lease_ttl=5, in_flight=2)
    await client._exchange(TRANSFER_TOKENS, wire, key)
    await long_ago(ledger, key)
    await ledger.release(intent.leases, owner="gone")


async def test_an_earlier_transfer_whose_other_customer_is_busy_keeps_its_snapshot(
    cluster: Cluster, sandbox: Sandbox
) -> None:
    async with _client(sandbox, cluster.dsn, "busy") as client, _client(sandbox, cluster.dsn, "busy") as other:
        await _funded(client)
        await _transfer_left_open(client, "open-transfer")
        assert await other.ledger.acquire(["c1"], owner="elsewhere", lease_ttl=5) is None
        with pytest.raises(sa.LedgerError, match="leased by another process; nothing was sent"):
            await client.redeem_tokens("c0", 1, idempotency_key="redeem")
        entry = await client.ledger.get("open-transfer")
        assert entry is not None and entry.state == EntryState.SENDING and entry.snapshot is not None
        await other.ledger.release(["c1"], owner="elsewhere")
        summary = await client.reconcile(older_than=0)  # both customers under one lease: decidable
        assert summary.counts["committed"] >= 1 and summary.in_doubt == ()
        assert (await client.redeem_tokens("c0", 1, idempotency_key="redeem")).tx_hash is not None
    assert len(sandbox.applied_writes("/transfer-tokens")) == 1
    assert len(sandbox.applied_writes("/redeem-tokens")) == 1
