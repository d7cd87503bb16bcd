"""The ledger interface, on both backends, and the SQLite ledger's group-commit batches."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from shakesco_async import LeaseLost, LedgerError, ValidationError
from shakesco_async.ledger import EntryState, Fence, Intent, KeySource, Ledger, Settlement, SQLiteLedger
from shakesco_async.ledger import _sqlite as sqlite_module
from shakesco_async.ledger import _sqlite_batch as sqlite_batch
from tests.support.ledgers import LedgerSpec, stage_committed

KEY = "sk_test_ledger_contract"


def _intent(key: str, customer: str) -> Intent:
    return Intent(
        key, "/claim-tokens", {"event_name": "signup", "customer_ref": customer}, (customer,), KeySource.CALLER
    )


@pytest.fixture
async def ledger(ledger_spec: LedgerSpec) -> AsyncIterator[Ledger]:
    async with ledger_spec.make(KEY) as opened:
        yield opened


async def test_begin_with_a_snapshot_starts_sending(ledger: Ledger) -> None:
    begun = await ledger.begin(_intent("k1", "c1"), owner="o1", lease_ttl=60, snapshot={"kind": "one_time"})
    assert begun.created and begun.entry is not None
    assert (begun.entry.state, begun.entry.attempts, begun.entry.snapshot) == (
        EntryState.SENDING,
        1,
        {"kind": "one_time"},
    )
    stored = await ledger.get("k1")
    assert stored is not None and stored.state == EntryState.SENDING and stored.snapshot == {"kind": "one_time"}
    plain = await ledger.begin(_intent("k2", "c2"), owner="o2", lease_ttl=60)
    assert plain.entry is not None and plain.entry.state == EntryState.RECORDED and plain.entry.attempts == 0


async def test_renew_extends_only_leases_nobody_else_held_since(ledger: Ledger) -> None:
    assert await ledger.acquire(["c1", "c2"], owner="a", lease_ttl=0.05) is None
    await asyncio.sleep(0.1)  # lapsed, and nobody took them: still a's to renew
    assert await ledger.renew(["c1", "c2"], owner="a", lease_ttl=60)
    assert await ledger.acquire(["c1"], owner="b", lease_ttl=60) is not None  # renewed: busy
    assert not await ledger.renew(["c1"], owner="b", lease_ttl=60)  # not b's
    await ledger.release(["c1"], owner="a")
    assert await ledger.acquire(["c1"], owner="b", lease_ttl=60) is None
    await ledger.release(["c1"], owner="b")
    # b held c1 in between: a cannot renew it (acquire would take it), nor c2 with it.
    assert not await ledger.renew(["c1", "c2"], owner="a", lease_ttl=60)
    assert await ledger.renew(["c2"], owner="a", lease_ttl=60)


async def test_an_entry_keeps_how_long_its_request_may_be_on_its_way(ledger: Ledger) -> None:
    begun = await ledger.begin(_intent("k1", "c1"), owner="o1", lease_ttl=60, snapshot={}, in_flight=7.5)
    assert begun.entry is not None and begun.entry.in_flight == 7.5
    stored = await ledger.get("k1")
    assert stored is not None and stored.in_flight == 7.5
    await ledger.mark_sending("k1", snapshot={}, owner="o1", customers=["c1"], lease_ttl=60, in_flight=61.0)
    again = await ledger.get("k1")
    assert again is not None and (again.in_flight, again.attempts) == (61.0, 2)
    # Marked again before it leaves (it waited): judged from then, still the same attempt.
    await ledger.mark_sending(
        "k1", snapshot={}, owner="o1", customers=["c1"], lease_ttl=60, in_flight=61.0, attempt=False
    )
    remarked = await ledger.get("k1")
    assert remarked is not None and remarked.attempts == 2 and remarked.updated_at > again.updated_at
    [claimed] = await ledger.claim_open(owner="r", older_than=0, limit=None, ttl=60)
    assert claimed.in_flight == 61.0
    plain = await ledger.begin(_intent("k2", "c2"), owner="o2", lease_ttl=60)
    assert plain.entry is not None and plain.entry.in_flight is None


async def test_claims_are_oldest_first_disjoint_and_given_back(ledger: Ledger) -> None:
    for i in range(5):
        await ledger.begin(_intent(f"old{i}", f"co{i}"), owner="o", lease_ttl=0)
    first = await ledger.claim_open(owner="A", older_than=0, limit=2, ttl=60)
    assert [e.key for e in first] == ["old0", "old1"]
    rest = await ledger.claim_open(owner="B", older_than=0, limit=None, ttl=60)
    assert [e.key for e in rest] == ["old2", "old3", "old4"]
    assert await ledger.claim_open(owner="C", older_than=0, limit=None, ttl=60) == []
    await ledger.unclaim("A", ["old0", "old2"])  # only its own claims, only these keys
    assert [e.key for e in await ledger.claim_open(owner="C", older_than=0, limit=None, ttl=60)] == ["old0"]
    await ledger.unclaim("A", ["old1"])
    assert [e.key for e in await ledger.claim_open(owner="D", older_than=0, limit=None, ttl=60)] == ["old1"]


async def test_claims_page_on_in_age_order_across_every_open_state(ledger: Ledger) -> None:
    states = ["recorded", "sending", "in_doubt", "sending", "recorded", "in_doubt", "in_doubt"]
    for i, state in enumerate(states):
        await ledger.begin(_intent(f"p{i}", f"cp{i}"), owner="o", lease_ttl=0)
        if state == "sending":
            await ledger.mark_sending(f"p{i}", snapshot={}, owner="o", customers=(), lease_ttl=0)
        elif state == "in_doubt":
            await ledger.settle(f"p{i}", Settlement(EntryState.IN_DOUBT, reason="lost"))
    await ledger.begin(_intent("done", "cd"), owner="o", lease_ttl=0)
    await ledger.settle("done", Settlement(EntryState.COMMITTED))  # final: never claimed
    pages: list[list[str]] = []
    after = None
    while not pages or len(pages[-1]) == 3:
        page = await ledger.claim_open(owner=f"page{len(pages)}", older_than=0, limit=3, ttl=60, after=after)
        pages.append([e.key for e in page])
        after = page[-1].created_at if page else after
    # The oldest of all three states first; each page's last entry, where the next one
    # starts, is kept out by its own claim.
    assert pages == [["p0", "p1", "p2"], ["p3", "p4", "p5"], ["p6"]]
    for n, keys in enumerate(pages):
        await ledger.unclaim(f"page{n}", keys)
    start = await ledger.get("p3")
    assert start is not None  # nothing older than ``after`` is taken, claimed or not
    late = await ledger.claim_open(owner="late", older_than=0, limit=None, ttl=60, after=start.created_at)
    assert [e.key for e in late] == ["p3", "p4", "p5", "p6"]


async def test_a_queued_outcome_is_seen_by_the_next_read(ledger: Ledger) -> None:
    await ledger.begin(_intent("k3", "c3"), owner="o3", lease_ttl=60, snapshot={})
    assert await ledger.settle(
        "k3", Settlement(EntryState.COMMITTED, result={"kind": "receipt"}, release=("c3",), owner="o3", wait=False)
    )
    entry = await ledger.get("k3")
    assert entry is not None and entry.state == EntryState.COMMITTED
    # and its lease went with it: another owner may take the customer at once
    assert await ledger.acquire(("c3",), owner="someone-else", lease_ttl=60) is None


async def test_lease_entries(ledger: Ledger) -> None:
    k4 = (await ledger.begin(_intent("k4", "c4"), owner="writer", lease_ttl=60, snapshot={})).entry
    k5 = (await ledger.begin(_intent("k5", "c5"), owner="w5", lease_ttl=60, snapshot={})).entry
    assert k4 is not None and k5 is not None
    await ledger.release(("c5",), owner="w5")
    await ledger.begin(_intent("k6", "c6"), owner="w6", lease_ttl=60, snapshot={})
    await ledger.settle("k6", Settlement(EntryState.COMMITTED, release=("c6",), owner="w6"))
    missing = attrs.evolve(k4, key="missing")
    k6_before = attrs.evolve(k4, key="k6")  # as read before it was settled
    wanted = [(missing, "r1"), (k4, "r2"), (k5, "r3"), (k6_before, "r4")]
    found = await ledger.lease_entries(wanted, lease_ttl=60)
    assert found[0] == (None, False)
    assert found[1][0] is not None and found[1][0].key == "k4" and not found[1][1]  # the writer still holds c4
    assert found[2][0] is not None and found[2][0].state == EntryState.SENDING and found[2][1]
    assert found[3][0] is not None and found[3][0].is_final and not found[3][1]
    assert await ledger.acquire(("c5",), owner="someone", lease_ttl=60) is not None  # r3 holds it now
    assert await ledger.acquire(("c6",), owner="someone", lease_ttl=60) is None  # nothing taken for a final one


async def test_postgres_leases_a_wave_together_and_gives_back_what_it_cannot_keep(
    ledger: Ledger, ledger_spec: LedgerSpec
) -> None:
    if ledger_spec.backend != "postgres":
        pytest.skip("the PostgreSQL ledger's own lease_entries")
    pg: Any = ledger
    entries = []
    for i in range(3):
        begun = await ledger.begin(_intent(f"w{i}", f"cw{i}"), owner=f"crashed{i}", lease_ttl=60, snapshot={})
        await ledger.release((f"cw{i}",), owner=f"crashed{i}")
        assert begun.entry is not None
        entries.append(begun.entry)
    wanted = [(entry, f"r{i}") for i, entry in enumerate(entries)]
    real_get_many = pg._get_many
    reads = 0

    async def settled_in_between(keys: list[str]) -> dict[str, Any]:
        nonlocal reads
        reads += 1
        found = await real_get_many(keys)
        if reads == 2:  # another writer settled w1 between the two reads
            found["w1"] = attrs.evolve(found["w1"], state=EntryState.COMMITTED)
        return dict(found)

    pg._get_many = settled_in_between
    found = await ledger.lease_entries(wanted, lease_ttl=60)
    assert [leased for _, leased in found] == [True, False, True]
    assert pg._leases.holders == {"cw0": "r0", "cw2": "r2"}  # w1's lease was given back
    for i in (0, 2):
        await ledger.release((f"cw{i}",), owner=f"r{i}")

    async def session_fails(names: Any, owner: str) -> bool:
        if owner == "r1":
            raise LedgerError("PostgreSQL ledger: ConnectionResetError")
        return await real_acquire(names, owner)

    pg._get_many = real_get_many
    real_acquire = pg._leases.acquire
    pg._leases.acquire = session_fails
    with pytest.raises(LedgerError, match="ConnectionReset"):
        await ledger.lease_entries(wanted, lease_ttl=60)
    assert pg._leases.holders == {}  # all or nothing: r0's and r2's leases were given back


async def test_concurrent_begins_behave_as_if_one_after_another(ledger: Ledger) -> None:
    """Many begins land in one batch; same key and same customer still see each other."""
    intents = [_intent(f"m{i}", f"cm{i}") for i in range(40)]
    intents += [_intent("m0", "cm0"), _intent("other-key-same-customer", "cm1")]
    owners = [f"o{i}" for i in range(len(intents))]
    results = await asyncio.gather(
        *(ledger.begin(it, owner=o, lease_ttl=60, snapshot={}) for it, o in zip(intents, owners, strict=True))
    )
    assert all(r.created for r in results[2:40])
    # Concurrent calls have no order, but of each clashing pair exactly one records
    for first, second in ((results[0], results[40]), (results[1], results[41])):
        assert first.created != second.created
        loser = second if first.created else first
        assert loser.busy_until is not None or (loser.entry is not None and loser.entry.key == "m0")
    stored = await ledger.entries()
    assert sorted(e.key for e in stored) == sorted({it.key for it in intents} - {"other-key-same-customer"}) or (
        sorted(e.key for e in stored) == sorted({it.key for it in intents} - {"m1"})
    )


async def test_begin_returns_earlier_open_entries_on_its_customers(ledger: Ledger) -> None:
    await ledger.begin(_intent("old", "shared"), owner="o-old", lease_ttl=60, snapshot={"total_earned": "0"})
    await ledger.release(("shared",), owner="o-old")  # as after a crash
    await ledger.begin(_intent("unrelated", "elsewhere"), owner="o-x", lease_ttl=60, snapshot={})
    begun = await ledger.begin(_intent("new", "shared"), owner="o-new", lease_ttl=60, snapshot={})
    assert begun.created and [e.key for e in begun.others] == ["old"]


async def test_a_long_history_of_final_writes_is_not_an_open_entry(ledger: Ledger) -> None:
    for i in range(4):  # a loyal customer's earlier writes, all settled
        await ledger.begin(_intent(f"h{i}", "loyal"), owner=f"o{i}", lease_ttl=60, snapshot={})
        final = EntryState.COMMITTED if i % 2 else EntryState.FAILED
        await ledger.settle(f"h{i}", Settlement(final, release=("loyal",), owner=f"o{i}"))
    await ledger.begin(_intent("open", "loyal"), owner="o-open", lease_ttl=60, snapshot={})
    await ledger.release(("loyal",), owner="o-open")  # as after a crash
    begun = await ledger.begin(_intent("next", "loyal"), owner="o-next", lease_ttl=60, snapshot={})
    assert [e.key for e in begun.others] == ["open"]
    assert [e.key for e in await ledger.open_entries(["loyal"], exclude="next")] == ["open"]
    assert len(await ledger.entries(customer="loyal")) == 6  # the history is still listed


async def test_an_entry_back_from_a_final_state_is_open_again(ledger: Ledger) -> None:
    # The API's answer is never reopened: a write whose lease lapsed mid-send cannot record
    # its timeout over another process's verdict (its own records say expect=open).
    await ledger.begin(_intent("late", "c-late"), owner="o", lease_ttl=0, snapshot={})
    await ledger.settle("late", Settlement(EntryState.COMMITTED))
    with pytest.raises(LedgerError, match="cannot move from committed to in_doubt"):
        await ledger.settle("late", Settlement(EntryState.IN_DOUBT, reason="timed out"))
    assert await ledger.open_entries(["c-late"], exclude="next") == []
    # A given-up write sent again by its caller is open again: the next write must see it.
    await ledger.begin(_intent("again", "c-again"), owner="o", lease_ttl=0)
    await ledger.settle("again", Settlement(EntryState.ABANDONED))
    await ledger.mark_sending("again", snapshot={}, owner="o", customers=(), lease_ttl=0)
    assert [e.key for e in await ledger.open_entries(["c-again"], exclude="next")] == ["again"]
    await ledger.release(("c-late", "c-again"), owner="o")
    begun = await ledger.begin(_intent("next", "c-again"), owner="o2", lease_ttl=60, snapshot={})
    assert begun.created and [e.key for e in begun.others] == ["again"]


async def test_prune_deletes_old_final_entries_only(ledger: Ledger, ledger_spec: LedgerSpec) -> None:
    states = {"done": EntryState.COMMITTED, "refused": EntryState.FAILED, "gave-up": EntryState.ABANDONED}
    for key, state in states.items():
        await ledger.begin(_intent(key, f"c-{key}"), owner="o", lease_ttl=0, snapshot={})
        await ledger.settle(key, Settlement(state))
    for key in ("open", "doubt", "unsent"):
        await ledger.begin(_intent(key, f"c-{key}"), owner="o", lease_ttl=0, snapshot=None if key == "unsent" else {})
    await ledger.settle("doubt", Settlement(EntryState.IN_DOUBT, reason="?"))
    async with ledger_spec.make("sk_another_business") as other:
        await other.begin(_intent("theirs", "c-theirs"), owner="o", lease_ttl=0, snapshot={})
        await other.settle("theirs", Settlement(EntryState.COMMITTED))
        await asyncio.sleep(0.3)
        assert await ledger.prune(older_than=60) == 0  # too recent
        await ledger.begin(_intent("fresh", "c-fresh"), owner="o", lease_ttl=0, snapshot={})
        await ledger.settle("fresh", Settlement(EntryState.COMMITTED))
        assert await ledger.prune(older_than=0.2) == 3
        assert {e.key for e in await ledger.entries()} == {"open", "doubt", "unsent", "fresh"}
        assert await other.get("theirs") is not None  # another business's ledger is its own
    assert await ledger.entries(customer="c-done") == []
    begun = await ledger.begin(_intent("done", "c-done"), owner="o", lease_ttl=0, snapshot={})
    assert begun.created  # a pruned key is a new write
    # and its customer link is new too (a stale one, closed, would hide it from this check)
    assert [e.key for e in await ledger.open_entries(["c-done"], exclude="next")] == ["done"]
    with pytest.raises(ValidationError):
        await ledger.prune(older_than=-1)


@pytest.mark.parametrize(
    ("lookup", "says"),
    [
        ({"key": "k\udcff"}, "key is not valid Unicode"),
        ({"key": 5}, "key must be a string"),
        ({"customer": "c\ud800"}, "customer is not valid Unicode"),
        ({"states": "committed"}, "states must be a sequence of EntryState"),
        ({"states": ["committed"]}, "states must be a sequence of EntryState"),
        ({"older_than": "1"}, "older_than must be a finite number"),
        ({"older_than": -1}, "older_than must be a finite number"),
        ({"limit": 0}, "limit must be None or an int of at least 1"),
        ({"limit": "5"}, "limit must be None or an int of at least 1"),
    ],
)
async def test_a_lookup_no_entry_could_answer_is_refused_before_any_read(
    ledger: Ledger, lookup: dict[str, Any], says: str
) -> None:
    """What a person types (the CLI passes its arguments on) is checked first: a clear
    ValidationError, never the database's own error, nor nothing found for a key of 5."""
    await ledger.begin(_intent("k-1", "c-1"), owner="o", lease_ttl=0, snapshot={})
    with pytest.raises(ValidationError, match=says):
        await ledger.entries(**lookup)
    if set(lookup) == {"key"}:
        with pytest.raises(ValidationError, match=says):
            await ledger.get(lookup["key"])
        with pytest.raises(ValidationError, match=says):
            await ledger.resolve(lookup["key"], applied=False, note="checked")
    assert [e.key for e in await ledger.entries(customer="c-1", states=[EntryState.SENDING], limit=1)] == ["k-1"]


async def test_marking_sending_refuses_a_lease_another_owner_took(ledger: Ledger) -> None:
    # Owner "slow" lost its lease (lapsed, or given up) and "other" took the customer.
    await ledger.begin(_intent("slow", "c-lapse"), owner="slow", lease_ttl=60)
    await ledger.release(("c-lapse",), owner="slow")
    assert await ledger.acquire(("c-lapse",), owner="other", lease_ttl=60) is None
    with pytest.raises(LeaseLost, match="nothing was sent"):
        await ledger.mark_sending("slow", snapshot={}, owner="slow", customers=("c-lapse",), lease_ttl=60)
    entry = await ledger.get("slow")
    assert entry is not None and entry.state == EntryState.RECORDED and entry.attempts == 0
    assert await ledger.acquire(("c-lapse",), owner="third", lease_ttl=60) is not None  # still "other"'s


# -- SQLite only: how batches are run ---------------------------------------------------------------
async def test_concurrent_settles_each_say_whether_they_moved_in_call_order(ledger: Ledger) -> None:
    # With PostgreSQL these go out together, as one statement per batch of distinct keys.
    for key in ("s1", "s2", "s3"):
        await ledger.begin(_intent(key, f"c{key}"), owner="o", lease_ttl=60, snapshot={"kind": "one_time"})
    sending, in_doubt = (EntryState.SENDING,), (EntryState.IN_DOUBT,)
    receipt = {"kind": "receipt", "tx_hash": "0x1"}
    moved = await asyncio.gather(
        ledger.settle("s1", Settlement(EntryState.IN_DOUBT, reason="lost", expect=sending)),
        ledger.settle(
            "s1", Settlement(EntryState.COMMITTED, result={"kind": "receipt", "tx_hash": "0x0"}, expect=sending)
        ),
        ledger.settle("s2", Settlement(EntryState.IN_DOUBT, reason="superseded", expect=sending, drop_snapshot=True)),
        ledger.settle("s3", Settlement(EntryState.FAILED, error={"status": 409, "message": "Event already claimed"})),
        ledger.settle("missing", Settlement(EntryState.COMMITTED, result=receipt)),
        ledger.settle("s1", Settlement(EntryState.COMMITTED, result=receipt, expect=in_doubt)),
    )
    assert moved == [True, False, True, True, False, True]
    s1, s2, s3 = [await ledger.get(k) for k in ("s1", "s2", "s3")]
    assert s1 is not None and (s1.state, s1.result, s1.reason) == (EntryState.COMMITTED, receipt, None)
    assert s2 is not None and (s2.state, s2.snapshot, s2.reason) == (EntryState.IN_DOUBT, None, "superseded")
    assert s3 is not None and (s3.state, s3.snapshot) == (EntryState.FAILED, {"kind": "one_time"})
    assert s3.error == {"status": 409, "message": "Event already claimed"}
    assert await ledger.get("missing") is None


async def test_a_settle_that_cannot_be_stored_fails_alone(ledger: Ledger) -> None:
    for key in ("bad", "good"):
        await ledger.begin(_intent(key, f"c{key}"), owner="o", lease_ttl=60, snapshot={})
    receipt = {"kind": "receipt", "tx_hash": "0x1"}
    outcomes = await asyncio.gather(
        ledger.settle("bad", Settlement(EntryState.COMMITTED, result={"amount": Decimal(1)})),  # not JSON
        ledger.settle("good", Settlement(EntryState.COMMITTED, result=receipt)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], TypeError) and outcomes[1] is True
    bad, good = await ledger.get("bad"), await ledger.get("good")
    assert bad is not None and bad.state == EntryState.SENDING
    assert good is not None and (good.state, good.result) == (EntryState.COMMITTED, receipt)


@pytest.fixture
async def sqlite_ledger(tmp_path: Path) -> AsyncIterator[SQLiteLedger]:
    async with SQLiteLedger(tmp_path / "batches.sqlite3", business="b") as opened:
        yield opened


async def test_a_failing_operation_fails_alone(sqlite_ledger: SQLiteLedger) -> None:
    bad, good = _intent("bad", "cb"), _intent("good", "cg")
    results = await asyncio.gather(
        sqlite_ledger.begin(bad, owner="o1", lease_ttl=60, snapshot={"x": Decimal(1)}),  # cannot be stored
        sqlite_ledger.begin(good, owner="o2", lease_ttl=60, snapshot={}),
        return_exceptions=True,
    )
    assert isinstance(results[0], TypeError)
    assert not isinstance(results[1], BaseException) and results[1].created
    assert await sqlite_ledger.get("bad") is None
    assert await sqlite_ledger.acquire(("cb",), owner="o3", lease_ttl=60) is None  # nothing half-recorded


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])  # committed on the ledger's thread, on the loop's
async def test_a_lone_record_that_fails_midway_leaves_nothing_behind(tmp_path: Path, synchronous: str) -> None:
    async with SQLiteLedger(tmp_path / "lone.sqlite3", business="b", synchronous=synchronous) as ledger:
        await ledger.begin(_intent("k1", "c1"), owner="o1", lease_ttl=60)
        await ledger.release(("c1",), owner="o1")
        # A key marked SDK-made is not looked up first: its insert fails after its lease is taken.
        again = attrs.evolve(_intent("k1", "c2"), key_source=KeySource.GENERATED)
        with pytest.raises(LedgerError, match="UNIQUE"):
            await ledger.begin(again, owner="o2", lease_ttl=60, snapshot={})
        assert await ledger.acquire(("c2",), owner="o3", lease_ttl=60) is None  # the lease went with it
        first = await ledger.get("k1")
        assert first is not None and first.customers == ("c1",)
        assert (await ledger.begin(_intent("k2", "c4"), owner="o4", lease_ttl=60, snapshot={})).created


async def test_settles_in_one_batch_say_which_entries_moved(sqlite_ledger: SQLiteLedger) -> None:
    for key in ("m1", "m3"):
        await sqlite_ledger.begin(_intent(key, f"c{key}"), owner="o", lease_ttl=60, snapshot={})
    plain = await asyncio.gather(  # unconditional: counted by the update itself
        *(sqlite_ledger.settle(k, Settlement(EntryState.IN_DOUBT, reason="r")) for k in ("m1", "missing", "m3"))
    )
    assert plain == [True, False, True]
    expecting = await asyncio.gather(  # conditional: looked up first
        sqlite_ledger.settle("m1", Settlement(EntryState.COMMITTED, expect=(EntryState.IN_DOUBT,))),
        sqlite_ledger.settle("m3", Settlement(EntryState.COMMITTED, expect=(EntryState.SENDING,))),
        sqlite_ledger.settle("gone", Settlement(EntryState.COMMITTED)),
    )
    assert expecting == [True, False, False]
    states = [e.state if (e := await sqlite_ledger.get(k)) else None for k in ("m1", "m3", "missing")]
    assert states == [EntryState.COMMITTED, EntryState.IN_DOUBT, None]


async def test_an_sdk_made_key_is_not_looked_up_but_never_recorded_twice(sqlite_ledger: SQLiteLedger) -> None:
    made = attrs.evolve(_intent("sdk_abc", "cg"), key_source=KeySource.GENERATED)
    assert (await sqlite_ledger.begin(made, owner="o", lease_ttl=60, snapshot={})).created
    await sqlite_ledger.release(made.leases, owner="o")
    again, other = await asyncio.gather(
        sqlite_ledger.begin(made, owner="o", lease_ttl=60, snapshot={}),
        sqlite_ledger.begin(_intent("fine", "cf"), owner="o", lease_ttl=60, snapshot={}),
        return_exceptions=True,
    )
    assert isinstance(again, LedgerError)  # a clash is an error, never a second entry
    assert not isinstance(other, BaseException) and other.created  # and fails alone
    assert [e.key for e in await sqlite_ledger.entries()] == ["sdk_abc", "fine"]


@pytest.fixture
def settings_made(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Each batch's ``synchronous`` switch, in order (None: left as the batch before set it)."""
    seen: list[str | None] = []
    real = sqlite_module.set_synchronous

    def spy(db: Any, synchronous: str | None) -> None:
        seen.append(synchronous)
        real(db, synchronous)

    monkeypatch.setattr(sqlite_module, "set_synchronous", spy)  # batches on the loop's thread
    monkeypatch.setattr(sqlite_batch, "set_synchronous", spy)  # and on the ledger's
    return seen


async def test_only_batches_with_a_durable_operation_wait_for_the_disk(
    sqlite_ledger: SQLiteLedger, settings_made: list[str | None]
) -> None:
    seen = settings_made
    await sqlite_ledger.begin(_intent("d1", "cd"), owner="o", lease_ttl=60, snapshot={})
    await sqlite_ledger.release(("cd",), owner="o")
    await sqlite_ledger.settle("d1", Settlement(EntryState.COMMITTED, wait=False))
    await sqlite_ledger.get("d1")  # waits for the queued outcome
    await sqlite_ledger.settle("d1", Settlement(EntryState.COMMITTED))
    effective: list[str | None] = []
    for setting in seen:  # None: left as the batch before set it
        effective.append(setting if setting is not None else effective[-1])
    assert effective == ["FULL", "NORMAL", "NORMAL", "FULL"]
    assert seen[2] is None  # the pragma is a statement of its own: not repeated


async def test_outcomes_between_writes_made_one_at_a_time_keep_the_setting(
    sqlite_ledger: SQLiteLedger, settings_made: list[str | None]
) -> None:
    seen = settings_made
    for n in range(3):  # a write, its outcome queued, the next write: each caller's only one in flight
        await sqlite_ledger.begin(_intent(f"one{n}", f"c1{n}"), owner="o", lease_ttl=60, snapshot={}, alone=True)
        await sqlite_ledger.settle(
            f"one{n}", Settlement(EntryState.COMMITTED, release=(f"c1{n}",), owner="o", wait=False)
        )
        await sqlite_ledger.get(f"one{n}")  # waits for the queued outcome
    assert seen[0] == "FULL" and seen[1:] == [None] * 5  # no switch each way around each outcome
    entry = await sqlite_ledger.get("one2")
    assert entry is not None and entry.state == EntryState.COMMITTED
    await sqlite_ledger.begin(_intent("many", "cm"), owner="o", lease_ttl=60, snapshot={})  # others in flight
    await sqlite_ledger.settle("many", Settlement(EntryState.COMMITTED, release=("cm",), owner="o", wait=False))
    await sqlite_ledger.get("many")
    assert seen[6:] == [None, "NORMAL"]  # then an outcome alone in its batch skips the fsync again


async def test_a_lone_durable_record_commits_inline_only_while_the_disk_is_fast(
    sqlite_ledger: SQLiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    real = sqlite_module.in_connection_thread

    async def spy(conn: Any, fn: Any) -> Any:
        hops.append(getattr(fn, "__name__", "?"))
        return await real(conn, fn)

    monkeypatch.setattr(sqlite_module, "in_connection_thread", spy)
    await sqlite_ledger.begin(_intent("fast", "cf"), owner="o", lease_ttl=60, snapshot={}, alone=True)
    assert hops == []  # committed (durably) on the loop's thread
    fast = await sqlite_ledger.get("fast")
    assert fast is not None and fast.state == EntryState.SENDING

    sqlite_ledger._durable_cost = 0.5  # as if each fsync took half a second here
    await sqlite_ledger.begin(_intent("slow", "cs"), owner="o", lease_ttl=60, snapshot={}, alone=True)
    assert hops == ["batch"]  # the loop never blocks on a slow disk
    assert sqlite_ledger._durable_cost < 0.5  # and the thread measures the disk again

    hops.clear()
    sqlite_ledger._durable_cost = 0.0
    await asyncio.gather(
        *(
            sqlite_ledger.begin(_intent(f"many{i}", f"cm{i}"), owner="o", lease_ttl=60, snapshot={}, alone=True)
            for i in range(3)
        )
    )
    assert hops == ["batch"]  # several durable records: the loop goes on while the disk works

    hops.clear()
    await sqlite_ledger.begin(_intent("busy", "cb"), owner="o", lease_ttl=60, snapshot={})
    assert hops == ["batch"]  # its caller has other writes in flight: their answers must not wait
    busy = await sqlite_ledger.get("busy")
    assert busy is not None and busy.state == EntryState.SENDING


async def test_writes_wait_out_another_process_holding_the_lock(sqlite_ledger: SQLiteLedger) -> None:
    other = sqlite3.connect(sqlite_ledger.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    begun = asyncio.ensure_future(sqlite_ledger.begin(_intent("w1", "cw"), owner="o", lease_ttl=60, snapshot={}))
    await asyncio.sleep(0.3)
    assert not begun.done()  # waiting on the ledger thread, not blocking the event loop
    other.execute("COMMIT")
    other.close()
    assert (await asyncio.wait_for(begun, 15)).created


async def test_every_kind_of_batch_waits_for_the_lock_but_not_forever(sqlite_ledger: SQLiteLedger) -> None:
    await sqlite_ledger.open()
    other = sqlite3.connect(sqlite_ledger.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    leasing = asyncio.ensure_future(sqlite_ledger.acquire(("cl",), owner="o", lease_ttl=60))  # a thread batch
    await asyncio.sleep(0.2)
    assert not leasing.done()
    probe = sqlite3.connect(sqlite_ledger.path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # the ledger's own busy handler gives up
        sqlite_batch.begin_write(probe, wait=0.1)
    probe.close()
    other.execute("COMMIT")
    other.close()
    assert await asyncio.wait_for(leasing, 15) is None


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])  # batches on the ledger's thread, on the loop's
async def test_a_batch_that_breaks_fails_its_callers_instead_of_hanging(
    tmp_path: Path, synchronous: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(db: Any, ops: Any) -> Any:
        raise RuntimeError("boom")

    async with SQLiteLedger(tmp_path / "broken.sqlite3", business="b", synchronous=synchronous) as ledger:
        monkeypatch.setattr(sqlite_module, "run_ops", broken)
        monkeypatch.setattr(sqlite_batch, "run_ops", broken)
        with pytest.raises(LedgerError, match="boom"):
            await asyncio.wait_for(ledger.begin(_intent("x", "cx"), owner="o", lease_ttl=60), 5)
        monkeypatch.undo()
        assert (await ledger.begin(_intent("x", "cx"), owner="o", lease_ttl=60)).created


# -- fences: a snapshot read before its intent is recorded ----------------------------------------
async def test_a_fenced_snapshot_is_kept_only_if_nobody_else_wrote_meanwhile(ledger: Ledger) -> None:
    fence = Fence.starting_now("me:", 1.0)
    snap = {"total_earned": "0"}
    if not ledger.fences_snapshots:  # PostgreSQL: never kept; the guard reads again once leased
        begun = await ledger.begin(_intent("f0", "cf0"), owner="me:1", lease_ttl=60, snapshot=snap, fence=fence)
        assert begun.entry is not None and begun.entry.state == EntryState.RECORDED
        assert begun.entry.snapshot is None
        return
    clean = await ledger.begin(_intent("f1", "cf1"), owner="me:1", lease_ttl=60, snapshot=snap, fence=fence)
    assert clean.entry is not None and clean.entry.state == EntryState.SENDING and clean.entry.snapshot == snap
    # another process leased and released the customer after the fence: the read may predate its write
    assert await ledger.acquire(("cf2",), owner="other:1", lease_ttl=60) is None
    await ledger.release(("cf2",), owner="other:1")
    crossed = await ledger.begin(_intent("f2", "cf2"), owner="me:2", lease_ttl=60, snapshot=snap, fence=fence)
    assert crossed.entry is not None and crossed.entry.state == EntryState.RECORDED
    assert crossed.entry.snapshot is None and (await ledger.get("f2")).snapshot is None  # type: ignore[union-attr]
    # this process's own earlier writes are kept out by its in-process locks: they do not count
    assert await ledger.acquire(("cf3",), owner="me:9", lease_ttl=60) is None
    await ledger.release(("cf3",), owner="me:9")
    ours = await ledger.begin(_intent("f3", "cf3"), owner="me:3", lease_ttl=60, snapshot=snap, fence=fence)
    assert ours.entry is not None and ours.entry.state == EntryState.SENDING
    # a lease that ended before the fence does not count either
    early = Fence.starting_now("me:", -1.0)
    assert await ledger.acquire(("cf4",), owner="other:2", lease_ttl=60) is None
    await ledger.release(("cf4",), owner="other:2")
    later = await ledger.begin(_intent("f4", "cf4"), owner="me:4", lease_ttl=60, snapshot=snap, fence=early)
    assert later.entry is not None and later.entry.state == EntryState.SENDING
    # an open entry on the customer: the snapshot may not be the state before this write
    await ledger.begin(_intent("f5-old", "cf5"), owner="other:3", lease_ttl=60, snapshot=snap)
    await ledger.release(("cf5",), owner="other:3")
    behind = await ledger.begin(_intent("f5", "cf5"), owner="me:5", lease_ttl=60, snapshot=snap, fence=early)
    assert behind.entry is not None and behind.entry.state == EntryState.RECORDED
    assert [e.key for e in behind.others] == ["f5-old"]


async def test_the_open_entry_check_reads_open_links_only(sqlite_ledger: SQLiteLedger) -> None:
    for i in range(3):
        await sqlite_ledger.begin(_intent(f"h{i}", "loyal"), owner="o", lease_ttl=0, snapshot={})
        await sqlite_ledger.settle(f"h{i}", Settlement(EntryState.COMMITTED if i else EntryState.ABANDONED))
    await sqlite_ledger.begin(_intent("open", "loyal"), owner="o", lease_ttl=0, snapshot={})
    await sqlite_ledger.settle("open", Settlement(EntryState.IN_DOUBT, reason="lost"))  # open, not final
    db = sqlite3.connect(sqlite_ledger.path)
    try:
        links = dict(db.execute("SELECT key, open FROM entry_customers WHERE customer = 'loyal'").fetchall())
        assert links == {"h0": 0, "h1": 0, "h2": 0, "open": 1}  # closed with their entries
        check = sqlite_batch.open_entries_sql("business = ?", 1)
        plan = " ".join(r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {check}", ("b", "sending", "in_doubt", "b", "x")))
        assert "entry_customers_open" in plan  # so a write's check does not grow with the history
    finally:
        db.close()


async def test_marking_sending_renews_a_lapsed_lease_nobody_took(sqlite_ledger: SQLiteLedger) -> None:
    await sqlite_ledger.begin(_intent("kept", "c-kept"), owner="kept", lease_ttl=0)
    await sqlite_ledger.mark_sending("kept", snapshot={}, owner="kept", customers=("c-kept",), lease_ttl=60)
    assert await sqlite_ledger.acquire(("c-kept",), owner="third", lease_ttl=60) is not None


async def test_the_every_business_view_writes_nothing(sqlite_ledger: SQLiteLedger) -> None:
    await sqlite_ledger.begin(_intent("mine", "c-mine"), owner="o", lease_ttl=0, snapshot={})
    async with SQLiteLedger(sqlite_ledger.path, business=sqlite_module.ANY_BUSINESS) as view:
        assert [e.key for e in await view.entries()] == ["mine"]  # it reads every business
        for write in (
            lambda: view.begin(_intent("theirs", "c-theirs"), owner="o", lease_ttl=0, snapshot={}),
            lambda: view.acquire(["c-theirs"], owner="o", lease_ttl=60),
            lambda: view.settle("mine", Settlement(EntryState.ABANDONED)),
            lambda: view.prune(older_than=0),
        ):
            with pytest.raises(LedgerError, match="read-only"):
                await write()
    assert [(e.key, e.state) for e in await sqlite_ledger.entries()] == [("mine", EntryState.SENDING)]


@pytest.mark.parametrize("state", list(EntryState))
async def test_an_entry_is_marked_sending_only_from_a_state_that_may_be_sent(ledger: Ledger, state: EntryState) -> None:
    """Never from the API's own answer: a new attempt would reopen a committed or failed write."""
    if state == EntryState.STAGED:
        await stage_committed(ledger, _intent("k", "c"))
        assert await ledger.acquire(("c",), owner="o", lease_ttl=60) is None
    else:
        await ledger.begin(_intent("k", "c"), owner="o", lease_ttl=60)
    if state not in (EntryState.RECORDED, EntryState.STAGED):
        assert await ledger.settle("k", Settlement(state, release=(), owner="o"))
    mark = ledger.mark_sending("k", snapshot={"n": 1}, owner="o", customers=("c",), lease_ttl=60)
    if state in (EntryState.COMMITTED, EntryState.FAILED):
        with pytest.raises(LedgerError, match="cannot be sent again"):
            await mark
        entry = await ledger.get("k")
        assert entry is not None and entry.state == state and entry.snapshot is None  # untouched
    else:
        await mark
        entry = await ledger.get("k")
        assert entry is not None and entry.state == EntryState.SENDING
    with pytest.raises(LedgerError, match="cannot be sent again"):
        await ledger.mark_sending("no-such-key", snapshot=None, owner="o", customers=("c",), lease_ttl=60)


async def _in_state(ledger: Ledger, key: str, state: EntryState) -> None:
    if state == EntryState.STAGED:
        await stage_committed(ledger, _intent(key, f"c-{key}"))
        return
    await ledger.begin(_intent(key, f"c-{key}"), owner="o", lease_ttl=60)
    if state == EntryState.SENDING:
        await ledger.mark_sending(key, snapshot={}, owner="o", customers=(f"c-{key}",), lease_ttl=60)
    elif state != EntryState.RECORDED:
        assert await ledger.settle(key, Settlement(state))


@pytest.mark.parametrize("start", list(EntryState))
async def test_every_move_of_the_state_machine(ledger: Ledger, start: EntryState) -> None:
    """Each allowed move is made; each forbidden one raises and changes nothing; with
    ``expect``, a move from a state not expected is not made, and is no error."""
    from shakesco_async.ledger._entry import MOVES_INTO

    for target in EntryState:
        key = f"{start.value}-{target.value}"
        await _in_state(ledger, key, start)
        if start in MOVES_INTO[target]:
            assert await ledger.settle(key, Settlement(target, reason="moved"))
            entry = await ledger.get(key)
            assert entry is not None and entry.state == target
        else:
            with pytest.raises(LedgerError, match=f"cannot move from {start.value} to {target.value}"):
                await ledger.settle(key, Settlement(target, reason="moved"))
            entry = await ledger.get(key)
            assert entry is not None and entry.state == start and entry.reason != "moved"
        other = [s for s in EntryState if s != start]
        again = f"{key}-expect"
        await _in_state(ledger, again, start)
        assert not await ledger.settle(again, Settlement(target, expect=other))
        entry = await ledger.get(again)
        assert entry is not None and entry.state == start


def test_nothing_leaves_the_apis_own_answers() -> None:
    from shakesco_async.ledger._entry import MOVES_INTO

    for target, sources in MOVES_INTO.items():
        for final in (EntryState.COMMITTED, EntryState.FAILED):
            assert (final in sources) == (target == final), (final, target)


@pytest.mark.parametrize("wait", [True, False])
async def test_a_settle_wakes_whoever_watches_the_key(ledger: Ledger, wait: bool) -> None:
    """``result_of`` in this process learns of an outcome, and what it is, without reading
    the ledger again; every waiter on the key is woken, and only on that key."""
    await ledger.begin(_intent("w", "cw"), owner="o", lease_ttl=60)
    first, second, other = ledger.watch("w"), ledger.watch("w"), ledger.watch("other")
    gone = ledger.watch("w")
    ledger.unwatch("w", gone)  # a waiter that stopped waiting is not woken
    move = Settlement(EntryState.COMMITTED, result={"kind": "receipt", "tx_hash": "0x1"}, owner="o", wait=wait)
    assert await ledger.settle("w", move)
    assert await asyncio.wait_for(first, 10) == move
    assert await asyncio.wait_for(second, 10) == move
    assert not gone.done()
    assert not other.done()
    ledger.unwatch("other", other)
    late = ledger.watch("w")
    nothing = Settlement(EntryState.IN_DOUBT, reason="x", expect=(EntryState.SENDING,), wait=wait)
    moved = await ledger.settle("w", nothing)
    assert not (wait and moved)  # queued (wait=False), a backend may say True at once
    await ledger.get("w")  # ordered after the queued move
    await asyncio.sleep(0.05)
    assert not late.done()  # a settle that moved nothing wakes nobody


async def test_begin_adopts_an_unsent_entry_of_the_same_write_in_one_commit(ledger: Ledger) -> None:
    """``adopt``: a staged (or recorded) entry of the same write is taken as the call's own:
    leased, and marked sending with its snapshot where the ledger keeps one; anything else
    is returned as found, nothing leased."""
    await stage_committed(ledger, _intent("a", "ca"))
    await stage_committed(ledger, _intent("b", "cb"))
    plain = await ledger.begin(_intent("a", "ca"), owner="o1", lease_ttl=60)
    assert not plain.created and plain.entry is not None and plain.entry.state == EntryState.STAGED
    assert await ledger.acquire(["ca"], owner="o2", lease_ttl=60) is None  # nothing was leased
    await ledger.release(["ca"], owner="o2")

    begun = await ledger.begin(_intent("a", "ca"), owner="o1", lease_ttl=60, snapshot={"s": 1}, adopt=True)
    assert begun.created and begun.entry is not None and begun.others == ()
    stored = await ledger.get("a")
    assert stored is not None and stored.state == begun.entry.state
    if stored.state == EntryState.SENDING:  # kept with its snapshot, in the same commit
        assert stored.snapshot == {"s": 1} and stored.attempts == 1
    else:
        assert stored.state == EntryState.STAGED and stored.snapshot is None
    assert await ledger.acquire(["ca"], owner="o2", lease_ttl=60) is not None  # leased by o1
    again = await ledger.begin(_intent("a", "ca"), owner="o3", lease_ttl=60, adopt=True)
    assert not again.created  # leased, or no longer unsent: not taken twice

    other = Intent("b", "/claim-tokens", {"event_name": "other", "customer_ref": "cb"}, ("cb",), KeySource.CALLER)
    refused = await ledger.begin(other, owner="o4", lease_ttl=60, adopt=True)
    assert not refused.created and refused.entry is not None and refused.entry.state == EntryState.STAGED
    assert await ledger.acquire(["cb"], owner="o5", lease_ttl=60) is None


async def test_begin_adopts_a_customers_owed_writes_only_in_the_order_they_were_recorded(ledger: Ledger) -> None:
    """Across processes too: a later owed write on a customer is not taken while an earlier
    one is still unsent."""
    await stage_committed(ledger, _intent("first", "c"))
    await asyncio.sleep(0.002)
    await stage_committed(ledger, _intent("second", "c"))
    await stage_committed(ledger, _intent("elsewhere", "d"))
    waits = await ledger.begin(_intent("second", "c"), owner="o1", lease_ttl=60, adopt=True)
    assert not waits.created and waits.entry is None and waits.busy_until is not None
    assert (await ledger.begin(_intent("elsewhere", "d"), owner="o2", lease_ttl=60, adopt=True)).created
    assert (await ledger.begin(_intent("first", "c"), owner="o3", lease_ttl=60, adopt=True)).created
    await ledger.settle("first", Settlement(EntryState.COMMITTED, result={}, release=("c",), owner="o3"))
    assert (await ledger.begin(_intent("second", "c"), owner="o1", lease_ttl=60, adopt=True)).created
