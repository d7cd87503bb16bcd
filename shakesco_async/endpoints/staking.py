"""Staking: the rate, stakes, unstaking and pruning."""

from __future__ import annotations

from decimal import Decimal

from .. import _validate as v
from .._models import Receipt, StakeInfo, StakingRate
from . import _proofs as proofs
from ._spec import Caller, model, read, receipt, single, write
from ._types import Amount, Duration

SET_STAKING_RATE = write(
    "/set-staking-rate",
    ("base_duration", v.duration),
    ("base_reward_percent", v.rate_percent),
    parse=receipt,
    proof=proofs.REPEATABLE,
)
CREATE_STAKE = write(
    "/create-stake",
    ("customer_ref", v.customer_ref),
    ("amount", v.amount),
    ("lock_duration", v.duration),
    parse=receipt,
    proof=proofs.STAKE,
)
UNSTAKE = write(
    "/unstake", ("customer_ref", v.customer_ref), ("stake_index", v.index), parse=receipt, proof=proofs.UNSTAKE
)
PRUNE_INACTIVE_STAKES = write(
    "/prune-inactive-stakes", ("customer_ref", v.customer_ref), parse=receipt, proof=proofs.REPEATABLE
)
STAKE_INFO = read("/stake-info", ("customer_ref", v.customer_ref), ("stake_index", v.index), parse=model(StakeInfo))
STAKE_COUNT = read("/stake-count", ("customer_ref", v.customer_ref), parse=single("stake_count", int))
STAKE_REWARDS = read(
    "/stake-rewards", ("customer_ref", v.customer_ref), ("stake_index", v.index), parse=single("rewards", Decimal)
)
STAKING_RATE = read("/staking-rate", parse=model(StakingRate))
CALCULATE_STAKING_REWARD = read(
    "/calculate-staking-reward", ("duration", v.duration), parse=single("reward_percent", Decimal)
)


class StakingEndpoints(Caller):
    async def set_staking_rate(
        self, base_duration: Duration, base_reward_percent: Amount, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Set the reward (percent) earned by a stake locked for ``base_duration`` seconds."""
        return await self._call(
            SET_STAKING_RATE,
            base_duration=base_duration,
            base_reward_percent=base_reward_percent,
            idempotency_key=idempotency_key,
        )

    async def create_stake(
        self, customer_ref: str, amount: Amount, lock_duration: Duration, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Lock part of a customer's balance (at most 50 stake records per customer)."""
        return await self._call(
            CREATE_STAKE,
            customer_ref=customer_ref,
            amount=amount,
            lock_duration=lock_duration,
            idempotency_key=idempotency_key,
        )

    async def unstake(self, customer_ref: str, stake_index: int, *, idempotency_key: str | None = None) -> Receipt:
        """Unlock a stake; early unstaking scales the reward pro rata."""
        return await self._call(
            UNSTAKE, customer_ref=customer_ref, stake_index=stake_index, idempotency_key=idempotency_key
        )

    async def prune_inactive_stakes(self, customer_ref: str, *, idempotency_key: str | None = None) -> Receipt:
        """Drop unlocked stake records; the remaining ones are renumbered."""
        return await self._call(PRUNE_INACTIVE_STAKES, customer_ref=customer_ref, idempotency_key=idempotency_key)

    async def stake_info(self, customer_ref: str, stake_index: int) -> StakeInfo:
        """One stake record (zeros and ``active=False`` for an unknown index)."""
        return await self._call(STAKE_INFO, customer_ref=customer_ref, stake_index=stake_index)

    async def stake_count(self, customer_ref: str) -> int:
        """How many stake records the customer has."""
        return await self._call(STAKE_COUNT, customer_ref=customer_ref)

    async def stake_rewards(self, customer_ref: str, stake_index: int) -> Decimal:
        """Rewards a stake has accrued so far: what unstaking now would pay on top of the
        principal (0 for an unstaked or unknown stake)."""
        return await self._call(STAKE_REWARDS, customer_ref=customer_ref, stake_index=stake_index)

    async def staking_rate(self) -> StakingRate:
        """The base staking rate (``is_set`` is False until ``set_staking_rate``)."""
        return await self._call(STAKING_RATE)

    async def calculate_staking_reward(self, duration: Duration) -> Decimal:
        """The reward percent (5 = 5%) a stake locked ``duration`` seconds would earn."""
        return await self._call(CALCULATE_STAKING_REWARD, duration=duration)
