"""Running a command's coroutine, so that a service manager's stop ends it as Ctrl-C does."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

__all__ = ["Terminated", "run"]


class Terminated(Exception):  # a signal, like KeyboardInterrupt: no Error suffix
    """The command was stopped by SIGTERM, after its clean-up ran."""


def run(command: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run``, with SIGTERM (systemd, Kubernetes, ``docker stop``) cancelling the
    command as Ctrl-C does, instead of killing the process where it stands: a reconcile
    gives back the entries it claimed and its customers' leases, which would otherwise
    hold those customers' writes for up to the lease's lifetime. Raises ``Terminated``.
    """
    return asyncio.run(_cancelled_by_sigterm(command))


async def _cancelled_by_sigterm(command: Coroutine[Any, Any, int]) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, stop)
    except (NotImplementedError, RuntimeError):  # Windows, or not the main thread: the default stays
        return await command
    try:
        return await command
    except asyncio.CancelledError:
        if stopped:
            raise Terminated from None
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
