"""Fault injection: rules that make the sandbox fail the way networks and servers fail."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import enum
import math
import random
from collections.abc import Collection
from typing import Literal

import attrs

__all__ = ["FaultMode", "FaultRule", "Faults", "known_endpoint"]


class FaultMode(enum.StrEnum):
    DROP_AFTER_COMMIT = "drop_after_commit"
    """Apply the change, then close the connection without an answer."""
    DELAY = "delay"
    """Apply the change, answer only after ``delay`` seconds (so the client times out)."""
    COMMIT_LATE = "commit_late"
    """Hold the request ``delay`` seconds (or until ``release`` is set), then apply the
    change and answer: a client with a shorter timeout gives up first, and the change lands
    after it did (a slow or queued server). Reads made meanwhile see the state before it."""
    FAIL_THEN_COMMIT = "fail_then_commit"
    """Answer 502 Transaction failed (or ``status``/``message``) at once, and apply the
    change ``delay`` seconds later (or once ``release`` is set): a gateway that gave up on a
    backend that carries on. Reads made meanwhile see the state before it."""
    FAIL_BEFORE_COMMIT = "fail_before_commit"
    """Answer 502 Transaction failed (or ``status``/``message``); nothing applied."""
    FAIL_AFTER_COMMIT = "fail_after_commit"
    """Apply the change, then answer 502 Transaction failed (or ``status``/``message``: a
    gateway's 504, a redirect after the work is done...)."""
    RESET = "reset"
    """Reset the connection before anything is applied."""
    GARBAGE = "garbage"
    """Apply the change, then answer 200 with a body that is not JSON."""
    ERROR = "error"
    """Answer ``status`` with ``message`` (default 503 Service unavailable) before anything
    is applied (429 Fee limit, ...)."""


_APPLIES_BEFORE = frozenset({FaultMode.FAIL_BEFORE_COMMIT, FaultMode.RESET, FaultMode.ERROR})
_DELAYED = frozenset({FaultMode.DELAY, FaultMode.COMMIT_LATE, FaultMode.FAIL_THEN_COMMIT})
_HELD = frozenset({FaultMode.COMMIT_LATE, FaultMode.FAIL_THEN_COMMIT})


@attrs.define
class FaultRule:
    """Inject ``mode`` into matching requests.

    ``endpoint``: a path such as "/claim-tokens", or None for every endpoint of ``on``
    ("write", "read" or "any"). ``after``: let the first N matching calls through.
    ``count``: then fire on the next N (None: no limit); ``probability``: the chance
    for each matching call.
    """

    mode: FaultMode = attrs.field(converter=FaultMode)
    endpoint: str | None = None
    on: Literal["write", "read", "any"] = "write"
    count: int | None = None
    probability: float = 1.0
    delay: float = 0.0
    status: int | None = None
    message: str | None = None
    retry_after: float | None = None
    after: int = 0
    release: asyncio.Event | None = None
    fired: int = 0
    seen: int = 0
    held: int = 0
    """``commit_late``: requests read whole and being held (a test may kill their client now:
    they land all the same)."""

    @property
    def before_commit(self) -> bool:
        return self.mode in _APPLIES_BEFORE

    async def hold(self) -> None:
        """Wait ``delay`` seconds, or until ``release`` is set (the first, with both)."""
        self.held += 1
        if self.release is None:
            await asyncio.sleep(self.delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), self.delay or None)

    def answer(self) -> tuple[int, str]:
        """The error this rule answers with: its own, else its mode's."""
        status, message = (503, "Service unavailable") if self.mode == FaultMode.ERROR else (502, "Transaction failed")
        return (self.status or status, self.message or message)

    def matches(self, path: str, is_write: bool) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        if self.endpoint is not None:
            matched = "/" + self.endpoint.lstrip("/") == path
        else:
            matched = self.on == "any" or (self.on == "write") == is_write
        if matched and self.seen < self.after:
            self.seen += 1
            return False
        return matched


def known_endpoint(endpoint: str, known: Collection[str], kind: str = "endpoint") -> str:
    """``endpoint`` with its leading slash; ValueError if ``known`` (when given) lacks it."""
    path = "/" + endpoint.lstrip("/")
    if known and path not in known:
        near = difflib.get_close_matches(path, sorted(known), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else " (paths look like '/claim-tokens')"
        raise ValueError(f"the sandbox has no {kind} {path!r}{hint}")
    return path


class Faults:
    """The active fault rules; the first matching rule fires."""

    def __init__(self, rng: random.Random, endpoints: Collection[str] = ()) -> None:
        self._rng = rng
        self._endpoints = frozenset(endpoints)  # the paths a rule may name (empty: any)
        self.rules: list[FaultRule] = []

    def add(
        self,
        mode: FaultMode | str,
        *,
        endpoint: str | None = None,
        on: Literal["write", "read", "any"] = "write",
        count: int | None = None,
        probability: float = 1.0,
        delay: float = 0.0,
        status: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        after: int = 0,
        release: asyncio.Event | None = None,
    ) -> FaultRule:
        """Add a rule; returns it so a test can read ``rule.fired``.

        ``release`` (``commit_late``, ``fail_then_commit``): an ``asyncio.Event`` of the
        sandbox's loop; the held request is applied once the test sets it, so that it lands
        exactly where the test wants it (after the client's verification read, say).

        A rule that could never fire (a misspelt endpoint, ``count=0``, a delay of nothing)
        raises ``ValueError``: a test relying on it would pass without testing anything.
        """
        mode = FaultMode(mode)
        if endpoint is not None:
            endpoint = known_endpoint(endpoint, self._endpoints)
        if on not in ("write", "read", "any"):
            raise ValueError(f"on must be 'write', 'read' or 'any', got {on!r}")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1 (None: no limit), got {count!r}")
        if after < 0:
            raise ValueError(f"after must not be negative, got {after!r}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within 0..1")
        if not 0.0 <= delay < math.inf or not 0.0 <= (retry_after or 0.0) < math.inf:
            raise ValueError("delay and retry_after are finite seconds, not negative")
        if release is not None and not isinstance(release, asyncio.Event):
            raise ValueError(f"release must be an asyncio.Event, got {type(release).__name__}")
        if release is not None and mode not in _HELD:
            raise ValueError(f"release= holds a commit_late or fail_then_commit fault, not a {mode.value} one")
        if mode in _DELAYED and delay <= 0 and release is None:
            raise ValueError(f"a {mode.value} fault needs delay= seconds above 0")
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status (100-599), got {status!r}")
        rule = FaultRule(mode, endpoint, on, count, probability, delay, status, message, retry_after, after, release)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, path: str, is_write: bool) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(path, is_write) and (rule.probability >= 1.0 or self._rng.random() < rule.probability):
                rule.fired += 1
                return rule
        return None
