"""Events and token facts."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .. import _validate as v
from .._models import EventDetails, Receipt, TokenInfo
from . import _proofs as proofs
from ._spec import Caller, model, read, receipt, single, write
from ._types import Amount

SET_EVENT_DETAILS = write(
    "/set-event-details",
    ("event_name", v.event_name),
    ("allocation", v.amount),
    ("should_not_claim_twice", v.boolean),
    parse=receipt,
    proof=proofs.EVENT,
)
EVENT_DETAILS = read("/event-details", ("event_name", v.event_name), parse=model(EventDetails))
EVENT_COUNTER = read("/event-counter", parse=single("event_count", int))
EVENT_BY_INDEX = read("/event-by-index", ("index", v.index), parse=single("event_name", str))
TOKEN_INFO = read("/token-info", parse=model(TokenInfo))


class EventEndpoints(Caller):
    async def set_event_details(
        self, event_name: str, allocation: Amount, should_not_claim_twice: bool, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Create or update an event (``should_not_claim_twice=True`` makes it one-time)."""
        return await self._call(
            SET_EVENT_DETAILS,
            event_name=event_name,
            allocation=allocation,
            should_not_claim_twice=should_not_claim_twice,
            idempotency_key=idempotency_key,
        )

    async def event_details(self, event_name: str) -> EventDetails:
        """An event's allocation and one-time flag."""
        return await self._call(EVENT_DETAILS, event_name=event_name)

    async def event_counter(self) -> int:
        """How many events are configured."""
        return await self._call(EVENT_COUNTER)

    async def event_by_index(self, index: int) -> str:
        """The name of the event at a 0-based index."""
        return await self._call(EVENT_BY_INDEX, index=index)

    async def iter_events(self) -> AsyncIterator[str]:
        """Every configured event's name, in index order (``event_counter``, then
        ``event_by_index`` for each): ``[name async for name in client.iter_events()]``."""
        for index in range(await self.event_counter()):
            yield await self.event_by_index(index)

    async def token_info(self) -> TokenInfo:
        """Basic token facts."""
        return await self._call(TOKEN_INFO)
