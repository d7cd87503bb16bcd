"""The guard, ledger and reconcile tests run on both ledger backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import postgres_spec
from tests.support.ledgers import LedgerSpec, sqlite_spec


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_spec(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSpec:
    if request.param == "postgres":
        return postgres_spec(request.getfixturevalue("postgres_dsn"))
    return sqlite_spec(tmp_path)
