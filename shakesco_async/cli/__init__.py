"""The ``shakesco-async`` command: demo, sandbox."""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
