"""Leave ledger entries exactly as a process that died at a given phase would."""

from __future__ import annotations

from shakesco_async import ShakescoClient
from shakesco_async.endpoints.transfers import UPGRADE_TO_SHAKESCO
from shakesco_async.guard._outcome import canonical
from shakesco_async.guard._verify import snapshot_of
from shakesco_async.ledger import Intent, KeySource, Ledger, SQLiteLedger
from tests.support.ledgers import sqlite_execute

POINTS = ("recorded", "sending_unsent", "sending_applied")


async def die_at(client: ShakescoClient, point: str, key: str, customer: str, source: KeySource) -> None:
    """Run an upgrade_to_shakesco(customer, 10) as the guard would, and stop dead at ``point``."""
    wire = UPGRADE_TO_SHAKESCO.prepare({"customer_ref": customer, "amount": 10})
    intent = Intent(key, UPGRADE_TO_SHAKESCO.path, canonical(wire), (customer,), source)
    ledger = client.ledger
    begun = await ledger.begin(intent, owner="dead-process", lease_ttl=0.05)
    assert begun.created
    if point != "recorded":
        snapshot = await snapshot_of(client, intent.operation, intent.params)
        await ledger.mark_sending(
            key,
            snapshot=snapshot,
            owner="dead-process",
            customers=intent.leases,
            lease_ttl=0.05,
            in_flight=client.guard._timing.in_flight,
        )
        if point == "sending_applied":
            await client._exchange(UPGRADE_TO_SHAKESCO, wire, key)
        await long_ago(ledger, key)
    await _die(ledger, intent.leases)


async def long_ago(ledger: Ledger, key: str) -> None:
    """Date the entry's last send a minute back: the process died then, and its request
    has reached the API (or never will) by now, so the next writer may judge it at once."""
    if isinstance(ledger, SQLiteLedger):
        sqlite_execute(ledger.path, "UPDATE entries SET updated_at = updated_at - 60 WHERE key = ?", (key,))
        return
    sql = "UPDATE {} SET updated_at = updated_at - interval '60 s' WHERE key = $1 AND business = $2"
    async with (await ledger._pool_conn()).acquire() as conn:  # type: ignore[attr-defined]
        await conn.execute(sql.format(ledger._t), key, ledger.business)  # type: ignore[attr-defined]


async def _die(ledger: Ledger, leases: tuple[str, ...]) -> None:
    """What the process's death does to its leases: SQLite's expire (0.05 s); PostgreSQL's
    advisory locks end with the session at once."""
    if not isinstance(ledger, SQLiteLedger):
        await ledger.release(leases, owner="dead-process")
