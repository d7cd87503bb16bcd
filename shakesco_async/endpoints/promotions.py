"""Promotions: happy hours and the daily earning cap."""

from __future__ import annotations

from .. import _validate as v
from .._models import DailyCapSettings, DailyEarnings, HappyHour, Receipt
from . import _proofs as proofs
from ._spec import Caller, model, read, receipt, write
from ._types import Amount, Duration

SET_HAPPY_HOUR = write(
    "/set-happy-hour", ("duration", v.duration), ("multiplier", v.multiplier), parse=receipt, proof=proofs.HAPPY_HOUR
)
END_HAPPY_HOUR = write("/end-happy-hour", parse=receipt, proof=proofs.END_HAPPY_HOUR)
HAPPY_HOUR = read("/happy-hour", parse=model(HappyHour))
SET_DAILY_CAP = write("/set-daily-cap", ("cap_amount", v.amount), parse=receipt, proof=proofs.REPEATABLE)
REMOVE_DAILY_CAP = write("/remove-daily-cap", parse=receipt, proof=proofs.REPEATABLE)
DAILY_CAP_SETTINGS = read("/daily-cap-settings", parse=model(DailyCapSettings))
DAILY_EARNINGS = read("/daily-earnings", ("customer_ref", v.customer_ref), parse=model(DailyEarnings))


class PromotionEndpoints(Caller):
    async def set_happy_hour(
        self, duration: Duration, multiplier: Amount, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Multiply claims for ``duration`` seconds (replaces an active happy hour)."""
        return await self._call(
            SET_HAPPY_HOUR, duration=duration, multiplier=multiplier, idempotency_key=idempotency_key
        )

    async def end_happy_hour(self, *, idempotency_key: str | None = None) -> Receipt:
        """End the happy hour now."""
        return await self._call(END_HAPPY_HOUR, idempotency_key=idempotency_key)

    async def happy_hour(self) -> HappyHour:
        """The current happy hour."""
        return await self._call(HAPPY_HOUR)

    async def set_daily_cap(self, cap_amount: Amount, *, idempotency_key: str | None = None) -> Receipt:
        """Cap what one customer can earn from claims in a rolling 24 hours."""
        return await self._call(SET_DAILY_CAP, cap_amount=cap_amount, idempotency_key=idempotency_key)

    async def remove_daily_cap(self, *, idempotency_key: str | None = None) -> Receipt:
        """Remove the daily cap."""
        return await self._call(REMOVE_DAILY_CAP, idempotency_key=idempotency_key)

    async def daily_cap_settings(self) -> DailyCapSettings:
        """The daily earning cap (``is_active`` is False when none is set)."""
        return await self._call(DAILY_CAP_SETTINGS)

    async def daily_earnings(self, customer_ref: str) -> DailyEarnings:
        """What the customer earned from claims in the current 24-hour window."""
        return await self._call(DAILY_EARNINGS, customer_ref=customer_ref)
