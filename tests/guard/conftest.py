"""The guard, ledger and reconcile tests run on both ledger backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import postgres_spec
from tests.support.ledgers import LedgerSpec, sqlite_spec

# CI's compatibility suites but the lowest run the SQLite half only:
# the PostgreSQL half depends on asyncpg's version, which the lowest suite covers.
BACKENDS = os.environ.get("SHAKESCO_TEST_BACKENDS", "sqlite,postgres").split(",")


@pytest.fixture(params=BACKENDS)
def ledger_spec(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSpec:
    if request.param == "postgres":
        return postgres_spec(request.getfixturevalue("postgres_dsn"))
    return sqlite_spec(tmp_path)
