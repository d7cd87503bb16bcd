"""Construction: keys, URLs, lifecycle; the key never leaks."""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from shakesco_async import ConfigurationError, EntryState, GuardSettings, ShakescoClient, TransportError, Unauthorized
from tests.conftest import UNIT_KEY, UNIT_URL


def test_missing_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHAKESCO_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SHAKESCO_API_KEY"):
        ShakescoClient()


@pytest.mark.parametrize("key", ["sk live", "sk_\nx", "sk_\x00x", "sk_\x7fx", "sk_\ud800x", "sk_ключ", 42])
def test_an_api_key_that_cannot_be_a_header_is_refused_up_front(key: object) -> None:
    with pytest.raises(ConfigurationError, match="printable ASCII") as caught:
        ShakescoClient(key)  # type: ignore[arg-type]
    assert str(key) not in str(caught.value)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHAKESCO_API_KEY", "sk_from_env")
    monkeypatch.setenv("SHAKESCO_BASE_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("SHAKESCO_LEDGER", str(tmp_path / "env.sqlite3"))
    client = ShakescoClient()
    assert str(client.base_url) == "http://127.0.0.1:9999"
    assert "env.sqlite3" in repr(client.ledger)


def test_the_timeout_comes_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHAKESCO_TIMEOUT", raising=False)
    assert ShakescoClient("k").timeout == 30.0
    monkeypatch.setenv("SHAKESCO_TIMEOUT", " 7.5 ")
    assert ShakescoClient("k").timeout == 7.5
    assert ShakescoClient("k", timeout=2).timeout == 2.0
    for bad in ("soon", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("SHAKESCO_TIMEOUT", bad)
        with pytest.raises(ConfigurationError, match=r"(?i)timeout"):
            ShakescoClient("k")


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHAKESCO_BASE_URL", raising=False)
    assert str(ShakescoClient("k").base_url) == "https://tokens.shakesco.com"


@pytest.mark.parametrize(
    "url", ["http://tokens.shakesco.com", "http://10.0.0.5:8080", "ftp://x", "https://user:pw@host", "nonsense"]
)
def test_unsafe_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        ShakescoClient("k", base_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "https://a..b",  # an empty label: the resolver raised UnicodeError at the first request
        "https://xn--zz",  # punycode that decodes to nothing
        "https://ex ample.com",
        "https://ho%st",
        "https://[::1",
        "https://host:99999",
        "https://h\udcff.com",
        "https://" + "a" * 64 + ".com",
        5,
    ],
)
def test_a_base_url_that_cannot_be_reached_is_refused_at_once(url: object) -> None:
    """Refused when the client is made, as a ConfigurationError: at the first request it
    was a resolver's UnicodeError, or a failure to connect for every write."""
    with pytest.raises(ConfigurationError, match="base_url"):
        ShakescoClient("k", base_url=url)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["https://user:s3cret@a..b", "ftp://u:s3cret@x", "https://u:s3cret@host:99999"])
def test_a_refused_base_url_is_never_shown_with_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url") as refused:
        ShakescoClient("k", base_url=url)
    assert "s3cret" not in str(refused.value) and "s3cret" not in repr(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8787",
        "http://localhost:8787",
        "http://[::1]:8787",
        "https://x.io",
        "https://tokens.bücher.example/api/",
        "https://shakesco_api.internal:8443",  # a container's service name
        "https://10.1.2.3",
    ],
)
def test_loopback_http_and_https_are_accepted(url: str) -> None:
    ShakescoClient("k", base_url=url)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", 0),
        ("timeout", -1),
        ("timeout", math.inf),  # an OverflowError inside aiohttp, after the intent was recorded
        ("timeout", "30"),
        ("timeout", math.nan),
        ("timeout", 10**400),  # past any float: an OverflowError of its own
        ("max_retries", -1),
        ("max_retries", 1.5),
        ("max_retries", 10**400),  # the leases' lifetime grows with it: an OverflowError
    ],
)
def test_bad_options(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError):
        ShakescoClient("k", **{option: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ShakescoClient("k").with_options(**{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("settings", [{"lease_ttl": 0}, {"lease_ttl": -5.0}, {"lease_wait": -1.0}])
def test_guard_settings_refuse_leases_that_cannot_hold(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="lease_"):
        GuardSettings(**settings)


@pytest.mark.parametrize(
    "settings",
    [
        {"lease_ttl": math.inf},  # a crashed process's customers would stay leased for ever
        {"lease_wait": math.nan},
        {"verify_delay": math.inf},
        {"verify_delay": "1"},
        {"event_ttl": math.nan},
        {"event_ttl": True},
    ],
)
def test_guard_settings_are_finite_numbers_of_seconds(settings: dict[str, object]) -> None:
    name = next(iter(settings))
    with pytest.raises(ValueError, match=name):
        GuardSettings(**settings)  # type: ignore[arg-type]


def test_a_lease_must_outlive_the_write_it_guards() -> None:
    # A lease that lapses while the request is in flight lets another process's reconcile
    # judge the write not applied, and send it again, before the first one lands.
    with pytest.raises(ConfigurationError, match=r"lease_ttl .*timeout"):
        ShakescoClient("k", timeout=30, guard=GuardSettings(lease_ttl=20, verify_delay=1.0))
    with pytest.raises(ConfigurationError, match="lease_ttl"):
        ShakescoClient("k", timeout=10, guard=GuardSettings(lease_ttl=10.5, verify_delay=1.0))
    ShakescoClient("k", timeout=10, guard=GuardSettings(lease_ttl=11.5, verify_delay=1.0))
    ShakescoClient("k", timeout=300, guard=GuardSettings())  # the default follows the timeout


async def test_key_never_appears_in_repr_errors_or_logs(
    unit_client: ShakescoClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="shakesco_async")
    assert UNIT_KEY not in repr(unit_client)
    assert UNIT_KEY not in repr(unit_client._api_key)
    assert UNIT_KEY not in str(vars(unit_client))
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/token-info", status=401, payload={"error": "Unauthorized"})
        with pytest.raises(Unauthorized) as info:
            await unit_client.token_info()
    assert UNIT_KEY not in str(info.value)
    assert UNIT_KEY not in repr(info.value)
    assert "GET /token-info -> 401" in caplog.text
    assert UNIT_KEY not in caplog.text


async def test_key_never_travels_in_a_chained_aiohttp_error(unit_client: ShakescoClient) -> None:
    # aiohttp's ClientResponseError (an unparseable answer from a proxy, say) carries the
    # request's headers, Authorization among them, in its repr and args.
    sent = CIMultiDictProxy(CIMultiDict({"Authorization": f"Bearer {UNIT_KEY}", "Accept": "application/json"}))
    info = aiohttp.RequestInfo(URL(f"{UNIT_URL}/balance"), "GET", sent, URL(f"{UNIT_URL}/balance"))
    with aioresponses() as m:
        m.get(
            f"{UNIT_URL}/balance?customer_ref=c",
            exception=aiohttp.ClientResponseError(info, (), status=400),
            repeat=True,
        )
        with pytest.raises(TransportError) as caught:
            await unit_client.balance("c")
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, aiohttp.ClientResponseError) for e in chain)  # still there to debug with
    told = "".join(traceback.format_exception(caught.value)) + "".join(repr(e) + repr(e.args) for e in chain)
    assert UNIT_KEY not in told
    assert "Accept" in told  # only the key is taken out


async def test_key_is_never_stored_in_the_ledger(tmp_path: Path) -> None:
    from tests.unit._mock import ANY_READ, QUIET_STATE, TX

    path = tmp_path / "secret.sqlite3"
    async with ShakescoClient(UNIT_KEY, base_url=UNIT_URL, ledger=path) as client:
        with aioresponses() as m:
            m.get(ANY_READ, payload=QUIET_STATE, repeat=True)
            m.post(f"{UNIT_URL}/expire-tokens", payload={"tx_hash": TX})
            await client.expire_tokens("c1")
    for file in tmp_path.iterdir():
        assert UNIT_KEY.encode() not in file.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_lifecycle_closes_its_own_session() -> None:
    client = ShakescoClient("k", base_url=UNIT_URL)
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/event-counter", payload={"event_count": "1"})
        async with client:
            assert await client.event_counter() == 1
            session = client._transport._pool.session
            assert session is not None
    assert session.closed


async def test_a_shared_session_is_left_open() -> None:
    async with aiohttp.ClientSession() as session:
        with aioresponses() as m:
            m.get(f"{UNIT_URL}/event-counter", payload={"event_count": "4"})
            async with ShakescoClient("k", base_url=UNIT_URL, session=session) as client:
                assert await client.event_counter() == 4
        assert not session.closed


async def test_no_session_is_created_until_needed() -> None:
    client = ShakescoClient("k", base_url=UNIT_URL)
    assert client._transport._pool.session is None
    await client.aclose()


def test_aiosqlite_still_offers_the_thread_hook_the_ledger_uses() -> None:
    # The SQLite ledger hands commits (or whole batches) to aiosqlite's thread as one step,
    # runs record batches' statements on the raw connection from the event loop, and makes
    # the thread a daemon before it starts.
    import threading

    import aiosqlite

    assert callable(getattr(aiosqlite.Connection, "_execute", None))
    assert isinstance(getattr(aiosqlite.Connection, "_conn", None), property)
    unstarted = aiosqlite.connect(":memory:")
    assert isinstance(unstarted._thread, threading.Thread) and not unstarted._thread.is_alive()


def test_a_client_is_refused_on_a_second_event_loop(tmp_path: Path) -> None:
    client = ShakescoClient("k", base_url=UNIT_URL, ledger=tmp_path / "l.sqlite3")
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/event-counter", payload={"event_count": "1"}, repeat=True)
        assert asyncio.run(client.event_counter()) == 1
        with pytest.raises(ConfigurationError, match="one client per event loop"):
            asyncio.run(client.claim_tokens("signup", "c"))
        with pytest.raises(ConfigurationError, match="one client per event loop"):
            asyncio.run(client.event_counter())

    asyncio.run(client.aclose())  # closing is allowed from any loop


def test_a_client_never_closed_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    # aiosqlite's thread is not a daemon: a forgotten aclose() used to hang the exit forever.
    ledger = str(tmp_path / "l.sqlite3")
    script = (
        "import asyncio\n"
        "from shakesco_async import ShakescoClient\n"
        "from shakesco_async.sandbox import Sandbox\n"
        "async def main():\n"
        "    async with Sandbox() as sandbox:\n"
        f"        client = ShakescoClient(sandbox.api_key, base_url=sandbox.base_url, ledger={ledger!r})\n"
        "        await client.upgrade_to_shakesco('c', 5)\n"
        "        print(await client.balance('c'))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5.0"


async def test_a_version_1_sqlite_ledger_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    from shakesco_async.ledger import SQLiteLedger
    from shakesco_async.ledger._sqlite import _MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO entries VALUES ('b', 'k', '/expire-tokens', '{}', 'd', '[]', 'caller', 'recorded', 0,"
        " NULL, NULL, NULL, NULL, 1.0, 1.0)"
    )
    db.commit()
    db.close()
    ledger = SQLiteLedger(path, business="b")
    claimed = await ledger.claim_open(owner="me", older_than=0, limit=None, ttl=60)
    assert [e.key for e in claimed] == ["k"]
    await ledger.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'leases_by_expiry'").fetchone()
    db.close()


async def test_a_version_3_sqlite_ledger_marks_the_links_of_open_entries(tmp_path: Path) -> None:
    import sqlite3

    from shakesco_async.ledger import SQLiteLedger
    from shakesco_async.ledger._sqlite import _MIGRATIONS

    path = tmp_path / "v3.sqlite3"
    db = sqlite3.connect(path)
    for step in _MIGRATIONS[:3]:
        db.executescript(step)
    db.execute("PRAGMA user_version = 3")
    for key, state in (("done", "committed"), ("lost", "in_doubt"), ("new", "recorded")):
        db.execute(
            "INSERT INTO entries (business, key, operation, params, params_digest, customers, key_source, state,"
            " snapshot, created_at, updated_at) VALUES ('b', ?, '/claim-tokens', '{}', 'd', '[\"c\"]', 'caller', ?,"
            " '{}', 1.0, 1.0)",
            (key, state),
        )
        db.execute("INSERT INTO entry_customers VALUES ('b', 'c', ?)", (key,))
    db.commit()
    db.close()
    async with SQLiteLedger(path, business="b") as ledger:
        assert [e.key for e in await ledger.open_entries(["c"], exclude="new")] == ["lost"]
    db = sqlite3.connect(path)
    assert dict(db.execute("SELECT key, open FROM entry_customers").fetchall()) == {"done": 0, "lost": 1, "new": 1}
    db.close()


async def test_an_sdk_that_deletes_leases_cannot_share_a_fenced_ledger(tmp_path: Path) -> None:
    """Fences need every writer to keep ended leases: a newer schema turns older SDKs away."""
    import sqlite3

    from shakesco_async import LedgerError
    from shakesco_async.ledger import SQLiteLedger
    from shakesco_async.ledger import _sqlite as sqlite_module

    path = tmp_path / "shared.sqlite3"
    async with SQLiteLedger(path, business="b") as ledger:
        await ledger.counts()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {sqlite_module.SCHEMA_VERSION + 1}")  # as written by a newer SDK
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="newer than this SDK"):
        async with SQLiteLedger(path, business="b") as ledger:
            await ledger.counts()


async def test_a_relative_ledger_path_is_fixed_where_the_client_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit._mock import ANY_READ, QUIET_STATE, TX

    monkeypatch.chdir(tmp_path)
    client = ShakescoClient(UNIT_KEY, base_url=UNIT_URL, ledger="ledger.sqlite3")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a process that changes directory later
    async with client:
        with aioresponses() as m:
            m.get(ANY_READ, payload=QUIET_STATE, repeat=True)
            m.post(f"{UNIT_URL}/expire-tokens", payload={"tx_hash": TX})
            await client.expire_tokens("c1")
    assert (tmp_path / "ledger.sqlite3").exists()
    assert not (tmp_path / "elsewhere" / "ledger.sqlite3").exists()


async def test_a_closed_shared_session_is_a_transport_error_not_a_crash(tmp_path: Path) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    async with ShakescoClient("k", base_url=UNIT_URL, ledger=tmp_path / "l.sqlite3", session=session) as client:
        with pytest.raises(TransportError, match="session= is closed") as caught:
            await client.event_counter()
        with pytest.raises(TransportError):
            await client.claim_tokens("signup", "c")
        counts = await client.ledger.counts()
    assert caught.value.sent is False
    assert counts[EntryState.SENDING] == counts[EntryState.IN_DOUBT] == 0  # nothing left open


async def test_a_shared_session_with_its_own_auth_is_refused_at_construction(tmp_path: Path) -> None:
    with warnings.catch_warnings():  # aiohttp 3.14 deprecates session auth, but still has it
        warnings.simplefilter("ignore", DeprecationWarning)
        session = aiohttp.ClientSession(auth=aiohttp.BasicAuth("user", "pass"))
    async with session:
        with pytest.raises(ConfigurationError, match="own auth"):
            ShakescoClient("k", base_url=UNIT_URL, ledger=tmp_path / "l.sqlite3", session=session)
    assert not (tmp_path / "l.sqlite3").exists()


async def test_a_closed_client_refuses_calls_before_touching_its_ledger(tmp_path: Path) -> None:
    client = ShakescoClient("k", base_url=UNIT_URL, ledger=tmp_path / "l.sqlite3")
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/event-counter", payload={"event_count": "1"})
        await client.event_counter()
    await client.aclose()
    for call in (
        lambda: client.claim_tokens("signup", "c"),
        lambda: client.balance("c"),
        lambda: client.reconcile(older_than=0),
    ):
        with pytest.raises(TransportError, match="closed") as caught:
            await call()
        assert caught.value.sent is False
    with pytest.raises(TransportError, match="closed"):
        client.start_reconciler(interval=1)
    assert client._life.reconciler is None
    assert client.ledger._writer is None  # type: ignore[attr-defined]  # not reopened
    async with ShakescoClient("k", base_url=UNIT_URL, ledger=tmp_path / "l.sqlite3") as again:
        assert sum((await again.ledger.counts()).values()) == 0  # no intent was recorded


async def test_an_answer_that_echoes_the_key_never_carries_it_further(
    unit_client: ShakescoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy or a misconfigured API may echo the request's Authorization header in its
    answer: the key is taken out of every answer as it is read, so no error, log line or
    ledger entry made from it holds the key."""
    from shakesco_async import InvalidParameters
    from tests.unit._mock import ANY_READ, QUIET_STATE

    caplog.set_level(logging.DEBUG, logger="shakesco_async")
    echoed = {"error": f"Invalid parameters: bad header Bearer {UNIT_KEY}"}
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/balance?customer_ref=c", status=400, payload=echoed, headers={"X-Request-Id": UNIT_KEY})
        with pytest.raises(InvalidParameters) as read:
            await unit_client.balance("c")
        m.get(ANY_READ, payload=QUIET_STATE, repeat=True)
        m.post(f"{UNIT_URL}/expire-tokens", status=400, payload=echoed)
        with pytest.raises(InvalidParameters) as write:
            await unit_client.expire_tokens("c", idempotency_key="echo")
    entry = await unit_client.ledger.get("echo")
    assert entry is not None and entry.state == EntryState.FAILED
    for told in (read.value, write.value):
        assert "bad header Bearer ***" in str(told)
        assert UNIT_KEY not in str(told) + repr(told) + repr(told.args) + str(vars(told))
    assert UNIT_KEY not in repr(entry) and UNIT_KEY not in caplog.text


@pytest.mark.parametrize(
    "ledger", ["", "   ", "file:ledger.sqlite3?mode=ro", "sqlite:///ledger.sqlite3", "mysql://h/db", "s3://bucket/x"]
)
def test_a_ledger_that_is_no_path_is_refused_before_anything_is_made(
    ledger: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty setting (``SHAKESCO_LEDGER=`` in a deployment) or a URI: refused, where a
    file named by it (or by the working directory) was made and written to."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="ledger"):
        ShakescoClient("k", base_url=UNIT_URL, ledger=ledger)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_ledger_setting_in_the_environment_counts_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHAKESCO_LEDGER", "  ")
    client = ShakescoClient("k", base_url=UNIT_URL)
    assert repr(client.ledger) == repr(ShakescoClient("k", base_url=UNIT_URL, ledger="shakesco-ledger.sqlite3").ledger)
