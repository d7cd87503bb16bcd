"""Vesting grants: create, claim, cancel, inspect."""

from __future__ import annotations

from decimal import Decimal

from .. import _validate as v
from .._models import Receipt, VestingInfo
from . import _proofs as proofs
from ._spec import Caller, model, read, receipt, single, write
from ._types import Amount, Duration

CREATE_VESTING_GRANT = write(
    "/create-vesting-grant",
    ("customer_ref", v.customer_ref),
    ("total_amount", v.amount),
    ("vesting_duration", v.duration),
    ("cliff_duration", v.duration),
    ("cliff_percent", v.percent),
    parse=receipt,
    proof=proofs.VESTING_GRANT,
)
CLAIM_VESTED_TOKENS = write(
    "/claim-vested-tokens", ("customer_ref", v.customer_ref), parse=receipt, proof=proofs.CLAIM_VESTED
)
CANCEL_VESTING = write("/cancel-vesting", ("customer_ref", v.customer_ref), parse=receipt, proof=proofs.CANCEL_VESTING)
VESTING_INFO = read("/vesting-info", ("customer_ref", v.customer_ref), parse=model(VestingInfo))
VESTED_AMOUNT = read("/vested-amount", ("customer_ref", v.customer_ref), parse=single("vested_amount", Decimal))


class VestingEndpoints(Caller):
    async def create_vesting_grant(
        self,
        customer_ref: str,
        total_amount: Amount,
        vesting_duration: Duration,
        cliff_duration: Duration,
        cliff_percent: Amount,
        *,
        idempotency_key: str | None = None,
    ) -> Receipt:
        """Grant tokens that vest linearly after a cliff (one active grant per customer)."""
        return await self._call(
            CREATE_VESTING_GRANT,
            customer_ref=customer_ref,
            total_amount=total_amount,
            vesting_duration=vesting_duration,
            cliff_duration=cliff_duration,
            cliff_percent=cliff_percent,
            idempotency_key=idempotency_key,
        )

    async def claim_vested_tokens(self, customer_ref: str, *, idempotency_key: str | None = None) -> Receipt:
        """Credit what has vested so far; NothingClaimable when nothing has."""
        return await self._call(CLAIM_VESTED_TOKENS, customer_ref=customer_ref, idempotency_key=idempotency_key)

    async def cancel_vesting(self, customer_ref: str, *, idempotency_key: str | None = None) -> Receipt:
        """End the grant irreversibly, crediting the vested part."""
        return await self._call(CANCEL_VESTING, customer_ref=customer_ref, idempotency_key=idempotency_key)

    async def vesting_info(self, customer_ref: str) -> VestingInfo:
        """The customer's grant."""
        return await self._call(VESTING_INFO, customer_ref=customer_ref)

    async def vested_amount(self, customer_ref: str) -> Decimal:
        """What ``claim_vested_tokens`` would credit right now (0 without a grant)."""
        return await self._call(VESTED_AMOUNT, customer_ref=customer_ref)
