"""A guard for tests of code that could spin: a coroutine that never yields to the event loop
cannot be stopped by a timeout of the loop's (asyncio.wait_for), so a signal stops it."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


class Spun(Exception):
    """Raised inside the code under test when it ran past its time without giving way."""


@contextlib.contextmanager
def fails_if_it_spins(seconds: float = 2.0) -> Iterator[None]:
    """Raise ``Spun`` in the main thread if the block takes longer than ``seconds``."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Spun(f"still running after {seconds}s: the event loop never got its turn")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
