"""Rewards: claim, redeem, expire, and the pending-rewards link."""

from __future__ import annotations

from .. import _validate as v
from .._models import Link, Receipt
from . import _proofs as proofs
from ._spec import Caller, link, receipt, write
from ._types import Amount

CLAIM_TOKENS = write(
    "/claim-tokens", ("event_name", v.event_name), ("customer_ref", v.customer_ref), parse=receipt, proof=proofs.CLAIM
)
REDEEM_TOKENS = write(
    "/redeem-tokens", ("customer_ref", v.customer_ref), ("amount", v.amount), parse=receipt, proof=proofs.REDEEM
)
EXPIRE_TOKENS = write("/expire-tokens", ("customer_ref", v.customer_ref), parse=receipt, proof=proofs.EXPIRE)
CLAIM_PENDING_REWARDS = write(
    "/claim-pending-rewards", ("customer_ref", v.customer_ref), parse=link, proof=proofs.REPEATABLE
)


class RewardEndpoints(Caller):
    async def claim_tokens(self, event_name: str, customer_ref: str, *, idempotency_key: str | None = None) -> Receipt:
        """Award an event's allocation (times any happy-hour multiplier) to a customer."""
        return await self._call(
            CLAIM_TOKENS, event_name=event_name, customer_ref=customer_ref, idempotency_key=idempotency_key
        )

    async def redeem_tokens(self, customer_ref: str, amount: Amount, *, idempotency_key: str | None = None) -> Receipt:
        """Spend a customer's tokens; raises InsufficientBalance when they lack them."""
        return await self._call(
            REDEEM_TOKENS, customer_ref=customer_ref, amount=amount, idempotency_key=idempotency_key
        )

    async def expire_tokens(self, customer_ref: str, *, idempotency_key: str | None = None) -> Receipt:
        """Clear an inactive customer's whole balance back to the reserve (irreversible);
        TokensNotExpired while ``is_expired`` is False."""
        return await self._call(EXPIRE_TOKENS, customer_ref=customer_ref, idempotency_key=idempotency_key)

    async def claim_pending_rewards(self, customer_ref: str, *, idempotency_key: str | None = None) -> Link:
        """A link (valid 30 minutes) where the customer claims pending rewards."""
        return await self._call(CLAIM_PENDING_REWARDS, customer_ref=customer_ref, idempotency_key=idempotency_key)
