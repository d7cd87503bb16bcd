"""Rendering for the command line: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from .._convert import converter
from ..ledger import LedgerEntry

__all__ = [
    "ProgressBar",
    "entry_dict",
    "escape_what_the_terminal_cannot_show",
    "print_json",
    "print_table",
    "utf8_stdout",
]


def entry_dict(entry: LedgerEntry) -> dict[str, Any]:
    """A ledger entry as plain JSON-able data."""
    data: dict[str, Any] = converter.unstructure(entry)
    data["customers"] = list(entry.customers)
    return data


def escape_what_the_terminal_cannot_show() -> None:
    """Keys and customers are the application's text: a character the terminal's encoding
    lacks (a Latin-1 locale, ``PYTHONIOENCODING=ascii``) is printed as a backslash escape,
    not a traceback halfway through a listing. Exports write UTF-8 instead (``utf8_stdout``)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")


@contextlib.contextmanager
def utf8_stdout() -> Iterator[TextIO]:
    """Standard output as UTF-8 whatever the terminal: an export is data, and an escape in
    it would be another key or customer."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a stream of text alone (a test's, say): nothing to encode
        yield sys.stdout
        return
    sys.stdout.flush()
    out = io.TextIOWrapper(buffer, encoding="utf-8", newline="")
    try:
        yield out
        out.flush()
    finally:
        out.detach()  # the buffer stays sys.stdout's


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
