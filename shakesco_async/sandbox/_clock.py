"""A clock the tests can move."""

from __future__ import annotations

import time

__all__ = ["SandboxClock"]


class SandboxClock:
    """Wall-clock time plus an offset that ``advance`` moves forward.

    A frozen clock stands still between ``advance`` calls, for exact arithmetic in tests.
    """

    def __init__(self, *, frozen: bool = False) -> None:
        self._offset = 0.0
        self._frozen_at = time.time() if frozen else None

    def now(self) -> float:
        """Unix seconds as the sandbox sees them."""
        base = self._frozen_at if self._frozen_at is not None else time.time()
        return base + self._offset

    def freeze(self) -> None:
        """Stop the clock where it is; only ``advance`` moves it from now on."""
        self._frozen_at = self.now() - self._offset

    def advance(self, seconds: float) -> None:
        """Jump forward: happy hours end, caps reset, stakes and grants mature."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += seconds
