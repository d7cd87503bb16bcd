"""Cashback: programmes per currency and customer progress."""

from __future__ import annotations

from .. import _validate as v
from .._models import CashbackProgress, CashbackSettings, Receipt
from . import _proofs as proofs
from ._spec import Caller, model, read, receipt, write
from ._types import Amount

SET_CASHBACK = write(
    "/set-cashback",
    ("spend_threshold", v.amount),
    ("currency", v.currency),
    ("reward_tokens", v.amount),
    parse=receipt,
    proof=proofs.CASHBACK_SETTINGS,
)
CASHBACK_SETTINGS = read("/cashback-settings", ("currency", v.currency), parse=model(CashbackSettings))
PROCESS_CASHBACK = write(
    "/process-cashback",
    ("customer_ref", v.customer_ref),
    ("spent_amount", v.amount),
    ("currency", v.currency),
    parse=receipt,
    proof=proofs.CASHBACK,
)
CASHBACK_PROGRESS = read(
    "/cashback-progress", ("customer_ref", v.customer_ref), ("currency", v.currency), parse=model(CashbackProgress)
)


class CashbackEndpoints(Caller):
    async def set_cashback(
        self, spend_threshold: Amount, currency: str, reward_tokens: Amount, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Reward ``reward_tokens`` each time a customer's spend crosses ``spend_threshold``."""
        return await self._call(
            SET_CASHBACK,
            spend_threshold=spend_threshold,
            currency=currency,
            reward_tokens=reward_tokens,
            idempotency_key=idempotency_key,
        )

    async def cashback_settings(self, currency: str) -> CashbackSettings:
        """The programme for ``currency``."""
        return await self._call(CASHBACK_SETTINGS, currency=currency)

    async def process_cashback(
        self, customer_ref: str, spent_amount: Amount, currency: str, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Add a purchase to the customer's progress (EventNotFound when no programme)."""
        return await self._call(
            PROCESS_CASHBACK,
            customer_ref=customer_ref,
            spent_amount=spent_amount,
            currency=currency,
            idempotency_key=idempotency_key,
        )

    async def cashback_progress(self, customer_ref: str, currency: str) -> CashbackProgress:
        """The customer's spend towards the next reward."""
        return await self._call(CASHBACK_PROGRESS, customer_ref=customer_ref, currency=currency)
