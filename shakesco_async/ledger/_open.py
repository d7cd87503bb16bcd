"""Pick a ledger backend from what the caller passed."""

from __future__ import annotations

import os
import re
from typing import Literal

from .._errors import ConfigurationError
from ._base import Ledger
from ._sqlite import SQLiteLedger

__all__ = ["open_ledger"]


_URI = re.compile(r"(?P<scheme>file:|[A-Za-z][A-Za-z0-9+.-]*://)", re.ASCII)  # SQLite's URIs, and URLs


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
    if isinstance(target, str) and not target.strip():
        # Taken as a path, it names the working directory (or a file of blanks, made there).
        raise ConfigurationError(f"ledger is an empty path ({target!r}): give a file path, a DSN or a Ledger")
    if isinstance(target, str) and (uri := _URI.match(target)):
        # Taken as a path, a file under a directory "file:" or "mysql:", made without a word.
        raise ConfigurationError(
            f"ledger must be a file path, a postgresql:// DSN or a Ledger, not a {uri['scheme']} URI"
        )
    return SQLiteLedger(
        target, business=business, synchronous=synchronous, allow_shared_filesystem=allow_shared_filesystem
    )
