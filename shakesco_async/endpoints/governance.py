"""Governance: tiers and voting power."""

from __future__ import annotations

from .. import _validate as v
from .._models import Receipt, TierThresholds, UserTier
from . import _proofs as proofs
from ._spec import Caller, model, read, receipt, single, write
from ._types import Amount

SET_TIERS = write(
    "/set-tiers",
    ("bronze", v.non_negative_amount),
    ("silver", v.non_negative_amount),
    ("gold", v.non_negative_amount),
    parse=receipt,
    proof=proofs.TIERS,
)
TIER_THRESHOLDS = read("/tier-thresholds", parse=model(TierThresholds))
USER_TIER = read("/user-tier", ("customer_ref", v.customer_ref), parse=model(UserTier))
SET_VOTING_RATIO = write(
    "/set-voting-ratio", ("tokens_per_vote", v.non_negative_amount), parse=receipt, proof=proofs.REPEATABLE
)
VOTING_POWER = read("/voting-power", ("customer_ref", v.customer_ref), parse=single("voting_power", int))


class GovernanceEndpoints(Caller):
    async def set_tiers(
        self, bronze: Amount, silver: Amount, gold: Amount, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Set the available-balance thresholds of the tiers."""
        return await self._call(SET_TIERS, bronze=bronze, silver=silver, gold=gold, idempotency_key=idempotency_key)

    async def tier_thresholds(self) -> TierThresholds:
        """The tier thresholds."""
        return await self._call(TIER_THRESHOLDS)

    async def user_tier(self, customer_ref: str) -> UserTier:
        """A customer's tier."""
        return await self._call(USER_TIER, customer_ref=customer_ref)

    async def set_voting_ratio(self, tokens_per_vote: Amount, *, idempotency_key: str | None = None) -> Receipt:
        """Tokens per vote; 0 disables voting."""
        return await self._call(SET_VOTING_RATIO, tokens_per_vote=tokens_per_vote, idempotency_key=idempotency_key)

    async def voting_power(self, customer_ref: str) -> int:
        """A customer's votes (0 while voting is off)."""
        return await self._call(VOTING_POWER, customer_ref=customer_ref)
