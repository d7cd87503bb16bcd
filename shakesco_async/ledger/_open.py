"""Pick a ledger backend from what the caller passed."""

from __future__ import annotations

import os
from typing import Literal

from .._errors import ConfigurationError
from ._base import Ledger
from ._sqlite import SQLiteLedger

__all__ = ["open_ledger"]


def open_ledger(
    target: object,
    *,
    business: str,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
    allow_shared_filesystem: bool = False,
) -> Ledger:
    """The ledger for ``target`` (not yet opened).

    A ``Ledger`` as is; a ``postgresql://`` DSN or an asyncpg pool: the shared PostgreSQL
    ledger (needs the ``postgres`` extra); a file path: the embedded SQLite ledger
    (``allow_shared_filesystem``: see ``SQLiteLedger``).
    """
    if isinstance(target, Ledger):
        return target
    is_dsn = isinstance(target, str) and target.startswith(("postgres://", "postgresql://"))
    if is_dsn or type(target).__module__.startswith("asyncpg"):
        try:
            from ._postgres import PostgresLedger
        except ImportError:
            raise ConfigurationError(
                "a PostgreSQL ledger needs asyncpg: pip install 'shakesco-async[postgres]'"
            ) from None
        return PostgresLedger(target, business=business)
    if not isinstance(target, (str, os.PathLike)):
        raise ConfigurationError(f"ledger must be a file path or a Ledger, got {type(target).__name__}")
    return SQLiteLedger(
        target, business=business, synchronous=synchronous, allow_shared_filesystem=allow_shared_filesystem
    )
