"""Pick a ledger backend from what the caller passed."""

from __future__ import annotations

import os
from typing import Literal

from .._errors import ConfigurationError
from ._base import Ledger
from ._sqlite import SQLiteLedger

__all__ = ["open_ledger"]


def open_ledger(
    target: Ledger | str | os.PathLike[str], *, business: str, synchronous: Literal["FULL", "NORMAL"] = "FULL"
) -> Ledger:
    """A ``Ledger`` instance as is, or a SQLite ledger for a file path (not yet opened)."""
    if isinstance(target, Ledger):
        return target
    if isinstance(target, str) and target.startswith(("postgres://", "postgresql://")):
        raise ConfigurationError("a PostgreSQL ledger is not available in this version; pass a file path")
    if not isinstance(target, (str, os.PathLike)):
        raise ConfigurationError(f"ledger must be a file path or a Ledger, got {type(target).__name__}")
    return SQLiteLedger(target, business=business, synchronous=synchronous)
