"""The ``shakesco-async`` command: demo, sandbox, ledger, reconcile."""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
