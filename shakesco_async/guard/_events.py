"""What the guard knows of each claim event: one-time or repeatable.

A one-time claim needs no pre-send snapshot: ``/has-claimed-event`` answers definitively
whether it landed. Knowing an event's kind costs one ``/event-details`` read, shared by
every claim of that event for ``ttl`` seconds. Verification reads the kind again, so an
event switched to repeatable in between is caught there and its claim left in doubt.
"""

from __future__ import annotations

import asyncio

from .._errors import APIError, MalformedResponse, TransportError
from .._timing import CLOCK
from ..endpoints import EndpointMethods

__all__ = ["EventKinds"]


class EventKinds:
    """A per-client cache of event kinds; ``None`` means "not known, take a snapshot"."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._known: dict[str, tuple[bool, float]] = {}
        self._loading: dict[str, asyncio.Future[bool | None]] = {}
        self._forgotten = 0

    async def one_time(self, reader: EndpointMethods, name: str) -> bool | None:
        """Whether ``name`` is a one-time event, from a read at most ``ttl`` seconds old."""
        if self._ttl <= 0:
            return None
        known = self._known.get(name)
        if known is not None and CLOCK.monotonic() - known[1] < self._ttl:
            return known[0]
        loading = self._loading.get(name)
        if loading is not None:  # one read serves every claim waiting for it
            return await asyncio.shield(loading)
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        kind: bool | None = None
        forgotten = self._forgotten
        try:
            details = await reader.event_details(name)
            kind = details.should_not_claim_twice
            if forgotten == self._forgotten:  # else a change may have raced this read: do not keep it
                self._known[name] = (kind, CLOCK.monotonic())
        except (TransportError, APIError, MalformedResponse):
            pass  # unknown: the claim falls back to a snapshot (and a missing event answers 404 to it)
        finally:
            del self._loading[name]
            future.set_result(kind)
        return kind

    def forget(self, name: str) -> None:
        """Drop what is known of ``name`` (this client is changing it)."""
        self._known.pop(name, None)
        self._forgotten += 1
