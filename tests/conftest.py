"""Shared fixtures: a sandbox on loopback and clients pointed at it or at aioresponses."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shakesco_async import GuardSettings, ShakescoClient
from shakesco_async._timing import VirtualClock, use_clock
from shakesco_async.ledger import Ledger
from shakesco_async.sandbox import Sandbox
from tests.support.ledgers import LedgerSpec, sqlite_spec
from tests.support.postgres import postgres_cluster

FAST_GUARD = GuardSettings(verify_delay=0.0, lease_ttl=5.0)
UNIT_URL = "https://tokens.test"
UNIT_KEY = "sk_unit_test_key_123"

ClientFactory = Callable[..., ShakescoClient]
LOOP = os.environ.get("SHAKESCO_TEST_LOOP", "asyncio")
"""The event loop the async tests run on: ``asyncio``; ``uvloop`` (what uvicorn picks when it
is installed, so what many FastAPI services run the SDK on); or ``eager``, asyncio's loop with
``asyncio.eager_task_factory`` (Python 3.12+: a task runs at once, up to its first wait).
CI runs the suite on each."""


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None  # pytest-asyncio's own
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "eager" and hasattr(asyncio, "eager_task_factory"):

        def eager_loop() -> asyncio.AbstractEventLoop:
            loop = asyncio.new_event_loop()
            loop.set_task_factory(asyncio.eager_task_factory)
            return loop

        return eager_loop
    raise pytest.UsageError(f"SHAKESCO_TEST_LOOP={name!r}: use asyncio, uvloop or eager (Python 3.12+)")


_LOOP_FACTORY = _loop_factory(LOOP)
if _LOOP_FACTORY is not None:

    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
        return {LOOP: _LOOP_FACTORY}


@pytest.fixture
def virtual_clock() -> Iterator[VirtualClock]:
    """The SDK's waits take no time: its clock jumps ahead instead (``clock.slept`` lists them).
    Only for tests where nothing else waits on real time meanwhile (the sandbox's delay
    faults and the client's timeout do)."""
    with use_clock(VirtualClock()) as clock:
        yield clock


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=1234, frozen_clock=True) as sb:
        yield sb


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """One throwaway PostgreSQL cluster for the session; in CI its absence is a failure."""
    try:
        with postgres_cluster() as dsn:
            yield dsn
    except (OSError, FileNotFoundError, __import__("subprocess").CalledProcessError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not available here: {exc}")


@pytest.fixture
def ledger_spec(tmp_path: Path) -> LedgerSpec:
    """The test's ledger storage; tests/guard runs every test on both backends."""
    return sqlite_spec(tmp_path)


def postgres_spec(dsn: str) -> LedgerSpec:
    return LedgerSpec("postgres", dsn, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def make_client(sandbox: Sandbox, ledger_spec: LedgerSpec) -> AsyncIterator[ClientFactory]:
    """Clients against the sandbox; each opens the test's ledger anew, as another process would."""
    made: list[ShakescoClient] = []
    ledgers: list[Ledger] = []

    def make(**overrides: Any) -> ShakescoClient:
        api_key = overrides.pop("api_key", sandbox.api_key)
        options: dict[str, Any] = {"base_url": sandbox.base_url, "timeout": 2.0, "guard": FAST_GUARD}
        options.update(overrides)
        if "ledger" not in options:
            options["ledger"] = ledger_spec.make(api_key)
            ledgers.append(options["ledger"])
        client = ShakescoClient(api_key, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()
    for ledger in ledgers:
        await ledger.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> ShakescoClient:
    return make_client()


@pytest.fixture
async def unit_client(tmp_path: Path) -> AsyncIterator[ShakescoClient]:
    """A client for aioresponses tests: nothing real is ever reached."""
    async with ShakescoClient(
        UNIT_KEY, base_url=UNIT_URL, ledger=tmp_path / "unit.sqlite3", timeout=1.0, guard=FAST_GUARD
    ) as c:
        yield c
