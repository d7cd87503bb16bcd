"""The ledger: a durable record of every guarded write, behind one interface."""

from __future__ import annotations

from ._base import Begun, Fence, Ledger
from ._entry import FINAL_STATES, EntryState, Intent, KeySource, LedgerEntry, Settlement, lease_names
from ._open import open_ledger
from ._sqlite import SQLiteLedger

__all__ = [
    "FINAL_STATES",
    "Begun",
    "EntryState",
    "Fence",
    "Intent",
    "KeySource",
    "Ledger",
    "LedgerEntry",
    "SQLiteLedger",
    "Settlement",
    "lease_names",
    "open_ledger",
]
