"""Exponential backoff with full jitter, and Retry-After parsing."""

from __future__ import annotations

import email.utils
import random
import time

__all__ = ["backoff_delay", "parse_retry_after"]

BASE_DELAY = 0.25
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 60.0


def backoff_delay(attempt: int, *, retry_after: float | None = None, base: float = BASE_DELAY) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    A server's Retry-After wins (capped); otherwise full jitter over an exponentially
    growing window, so many clients that failed together do not retry together.
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
    window = min(MAX_DELAY, base * (2 ** (attempt - 1)))
    return random.uniform(window / 2, window)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
