"""Customer reads: balances, lifetime counters, claims and activity."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from .. import _validate as v
from .._convert import to_datetime
from .._errors import MalformedResponse
from .._models import UserInfo
from ._spec import Caller, model, read, single


def _last_activity(data: Any) -> datetime | None:
    if not isinstance(data, dict):
        raise MalformedResponse("expected a JSON object")
    try:
        return to_datetime(data.get("last_activity") or data.get("last_activity_iso"))
    except ValueError as exc:
        raise MalformedResponse(f"cannot read last_activity: {exc}") from None


BALANCE = read("/balance", ("customer_ref", v.customer_ref), parse=single("balance", Decimal))
USER_INFO = read("/user-info", ("customer_ref", v.customer_ref), parse=model(UserInfo))
TOTAL_EARNED = read("/total-earned", ("customer_ref", v.customer_ref), parse=single("total_earned", Decimal))
TOTAL_SPENT = read("/total-spent", ("customer_ref", v.customer_ref), parse=single("total_spent", Decimal))
HAS_CLAIMED_EVENT = read(
    "/has-claimed-event",
    ("customer_ref", v.customer_ref),
    ("event_name", v.event_name),
    parse=single("has_claimed", bool),
)
LAST_ACTIVITY = read("/last-activity", ("customer_ref", v.customer_ref), parse=_last_activity)
IS_EXPIRED = read("/is-expired", ("customer_ref", v.customer_ref), parse=single("is_expired", bool))
EVENT_ALLOCATION = read("/event-allocation", ("event_name", v.event_name), parse=single("total_allocation", Decimal))


class QueryEndpoints(Caller):
    async def balance(self, customer_ref: str) -> Decimal:
        """Available balance (excludes staked and vesting tokens)."""
        return await self._call(BALANCE, customer_ref=customer_ref)

    async def user_info(self, customer_ref: str) -> UserInfo:
        """Everything about one customer."""
        return await self._call(USER_INFO, customer_ref=customer_ref)

    async def total_earned(self, customer_ref: str) -> Decimal:
        """Lifetime tokens earned from every source."""
        return await self._call(TOTAL_EARNED, customer_ref=customer_ref)

    async def total_spent(self, customer_ref: str) -> Decimal:
        """Lifetime tokens redeemed."""
        return await self._call(TOTAL_SPENT, customer_ref=customer_ref)

    async def has_claimed_event(self, customer_ref: str, event_name: str) -> bool:
        """Whether the customer has claimed the event."""
        return await self._call(HAS_CLAIMED_EVENT, customer_ref=customer_ref, event_name=event_name)

    async def last_activity(self, customer_ref: str) -> datetime | None:
        """When the customer last earned or spent, or None if never."""
        return await self._call(LAST_ACTIVITY, customer_ref=customer_ref)

    async def is_expired(self, customer_ref: str) -> bool:
        """Whether the customer has been inactive longer than the token's expiry period
        (False with no expiry set or no activity): ``expire_tokens`` succeeds only then."""
        return await self._call(IS_EXPIRED, customer_ref=customer_ref)

    async def event_allocation(self, event_name: str) -> Decimal:
        """Tokens awarded for an event across all customers since launch."""
        return await self._call(EVENT_ALLOCATION, event_name=event_name)
