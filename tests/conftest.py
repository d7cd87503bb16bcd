"""Shared fixtures: a sandbox on loopback and clients pointed at it or at aioresponses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from shakesco_async import GuardSettings, ShakescoClient
from shakesco_async.sandbox import Sandbox

FAST_GUARD = GuardSettings(verify_delay=0.0, lease_ttl=5.0)
UNIT_URL = "https://tokens.test"
UNIT_KEY = "sk_unit_test_key_123"

ClientFactory = Callable[..., ShakescoClient]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=1234, frozen_clock=True) as sb:
        yield sb


@pytest.fixture
async def make_client(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[ClientFactory]:
    """Clients against the sandbox; each shares the test's ledger file unless told otherwise."""
    made: list[ShakescoClient] = []

    def make(**overrides: Any) -> ShakescoClient:
        options: dict[str, Any] = {
            "base_url": sandbox.base_url,
            "ledger": tmp_path / "ledger.sqlite3",
            "timeout": 2.0,
            "guard": FAST_GUARD,
        }
        options.update(overrides)
        client = ShakescoClient(options.pop("api_key", sandbox.api_key), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


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
