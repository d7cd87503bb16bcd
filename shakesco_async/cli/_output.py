"""Rendering for the command line: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from .._convert import converter
from ..ledger import LedgerEntry

__all__ = ["ProgressBar", "entry_dict", "print_json", "print_table"]


def entry_dict(entry: LedgerEntry) -> dict[str, Any]:
    """A ledger entry as plain JSON-able data."""
    data: dict[str, Any] = converter.unstructure(entry)
    data["customers"] = list(entry.customers)
    return data


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


class ProgressBar:
    """One redrawn line on stderr, only when a person is watching; ``close`` ends it.

    The total grows while reconcile claims page after page, so the end of the line is
    the caller's to say, not the moment done catches up with total.
    """

    def __init__(self) -> None:
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty() or total < 20:
            return
        width = 30
        filled = width * min(done, total) // total
        sys.stderr.write(f"\rreconciling [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._drawn = False
