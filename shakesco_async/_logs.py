"""``SHAKESCO_LOG=debug|info``: the SDK's own log lines on stderr, without touching the
application's logging set-up (as ``OPENAI_LOG`` and ``STRIPE_LOG`` do). Only the
``shakesco_async`` loggers: not aiosqlite's or aiohttp's, which flood at DEBUG."""

from __future__ import annotations

import logging
import os

__all__ = ["setup_from_env"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that a second set-up does not add a second one."""


def setup_from_env() -> None:
    level = _LEVELS.get(os.environ.get("SHAKESCO_LOG", "").strip().lower())
    if level is None:
        return
    logger = logging.getLogger("shakesco_async")
    if not any(isinstance(handler, _Handler) for handler in logger.handlers):
        handler = _Handler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
