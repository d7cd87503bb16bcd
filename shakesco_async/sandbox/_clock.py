"""A clock the tests can move."""

from __future__ import annotations

import time

__all__ = ["SandboxClock"]


class SandboxClock:
    """Wall-clock time plus an offset that ``advance`` moves forward."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """Unix seconds as the sandbox sees them."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Jump forward: happy hours end, caps reset, stakes and grants mature."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += seconds
