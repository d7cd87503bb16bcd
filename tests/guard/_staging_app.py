"""A child process that is the application: orders and the credits they owe, in one transaction.

    python -m tests.guard._staging_app app BASE_URL API_KEY BACKEND LOCATION SCHEMA TABLE ORDERS [KILL_AT]
    python -m tests.guard._staging_app sender BASE_URL API_KEY BACKEND LOCATION SCHEMA TABLE ORDERS

``app`` takes orders 0..ORDERS-1 that its table does not hold yet; each is one transaction
that inserts the order row and stages a claim of "purchase" for customer cust-(i % 4) under
the key order-i, and commits, except every fifth order, which it rolls back (the handler
failed). A sender runs in the same process meanwhile. With KILL_AT it kills itself with
SIGKILL right after committing that order, before anything could send it. ``sender`` only
sends, until every committed order's write is settled, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

from shakesco_async import GuardSettings, ShakescoClient
from shakesco_async.ledger import EntryState
from tests.support.ledgers import LedgerSpec

CUSTOMERS = 4


class _RolledBack(Exception):
    """The handler failed: its transaction rolls back."""


def rolled_back(order: int) -> bool:
    return order % 5 == 4


class Conn:
    """The application's connection: aiosqlite on the ledger's file, or asyncpg."""

    def __init__(self, spec: LedgerSpec, raw: Any) -> None:
        self.spec, self.raw = spec, raw

    @classmethod
    async def open(cls, spec: LedgerSpec) -> Conn:
        if spec.backend == "sqlite":
            import aiosqlite

            return cls(spec, await aiosqlite.connect(spec.location, isolation_level=None))
        import asyncpg

        return cls(spec, await asyncpg.connect(spec.location))

    async def taken(self, table: str) -> set[int]:
        sql = f"SELECT id FROM {table}"
        if self.spec.backend == "sqlite":
            async with self.raw.execute(sql) as cursor:
                return {int(row[0]) for row in await cursor.fetchall()}
        return {int(row[0]) for row in await self.raw.fetch(sql)}

    async def order(self, client: ShakescoClient, table: str, order: int) -> None:
        """One order and its credit, in one transaction: every other one through
        ``client.transaction``, the others through a transaction of the application's own."""
        key = f"order-{order}"
        if order % 2:
            sqlite = self.spec.backend == "sqlite"
            insert = f"INSERT INTO {table} (id) VALUES ({'?' if sqlite else '$1'})"
            args: tuple[Any, ...] = ((order,),) if sqlite else (order,)  # aiosqlite: one tuple; asyncpg: values
            with contextlib.suppress(_RolledBack):
                async with client.transaction(self.raw) as staged:
                    await self.raw.execute(insert, *args)
                    await staged.claim_tokens("purchase", f"cust-{order % CUSTOMERS}", idempotency_key=key)
                    if rolled_back(order):
                        raise _RolledBack
            return
        if self.spec.backend == "sqlite":
            await self.raw.execute("BEGIN IMMEDIATE")
            await self.raw.execute(f"INSERT INTO {table} (id) VALUES (?)", (order,))
            await client.staged(self.raw).claim_tokens("purchase", f"cust-{order % CUSTOMERS}", idempotency_key=key)
            await (self.raw.rollback() if rolled_back(order) else self.raw.commit())
            return
        tx = self.raw.transaction()
        await tx.start()
        await self.raw.execute(f"INSERT INTO {table} (id) VALUES ($1)", order)
        await client.staged(self.raw).claim_tokens("purchase", f"cust-{order % CUSTOMERS}", idempotency_key=key)
        await (tx.rollback() if rolled_back(order) else tx.commit())

    async def close(self) -> None:
        await self.raw.close()


def _client(base_url: str, api_key: str, spec: LedgerSpec) -> ShakescoClient:
    settings = GuardSettings(verify_delay=0.0, lease_ttl=5.0, lease_wait=30.0)
    return ShakescoClient(
        api_key, base_url=base_url, ledger=spec.make(api_key), timeout=1.0, guard=settings, max_retries=8
    )


async def app(base_url: str, api_key: str, spec: LedgerSpec, table: str, orders: int, kill_at: int | None) -> int:
    conn = await Conn.open(spec)
    async with _client(base_url, api_key, spec) as client:
        await client.ledger.open()  # before any transaction of the application's
        if kill_at is None:
            client.start_sender(poll=0.02)
        for order in sorted(set(range(orders)) - await conn.taken(table)):
            await conn.order(client, table, order)
            print(f"order {order}", flush=True)
            if order == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # committed, and nothing has sent it
            await asyncio.sleep(0.002)
    await conn.close()
    return 0


async def sender(base_url: str, api_key: str, spec: LedgerSpec, table: str, orders: int) -> int:
    owed = [f"order-{n}" for n in range(orders) if not rolled_back(n)]
    async with _client(base_url, api_key, spec) as client:
        client.start_sender(poll=0.02)
        while True:
            entries = [await client.ledger.get(key) for key in owed]
            if all(e is not None and e.is_final for e in entries):
                break
            if any(e is not None and e.state in (EntryState.SENDING, EntryState.IN_DOUBT) for e in entries):
                await client.reconcile(older_than=0)  # what a killed sender left mid-send
            await asyncio.sleep(0.05)
        print("all sent", flush=True)
    return 0


def main(argv: list[str]) -> int:
    mode, base_url, api_key, backend, location, schema, table, orders, *rest = argv
    spec = LedgerSpec.from_argv(backend, location, schema)
    if mode == "app":
        kill_at = int(rest[0]) if rest else None
        return asyncio.run(app(base_url, api_key, spec, table, int(orders), kill_at))
    return asyncio.run(sender(base_url, api_key, spec, table, int(orders)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
