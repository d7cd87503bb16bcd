"""Fixtures of the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from shakesco_async import ShakescoClient
from shakesco_async.sandbox import Sandbox


@pytest.fixture
async def seeded(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The sandbox, named by the environment as an application's settings would name the
    API (SHAKESCO_API_KEY, SHAKESCO_BASE_URL, SHAKESCO_LEDGER), with a repeatable
    "purchase" event of 5 tokens."""
    monkeypatch.setenv("SHAKESCO_API_KEY", sandbox.api_key)
    monkeypatch.setenv("SHAKESCO_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("SHAKESCO_LEDGER", str(tmp_path / "app-ledger.sqlite3"))
    async with ShakescoClient() as client:
        await client.set_event_details("purchase", 5, False)
    return sandbox
