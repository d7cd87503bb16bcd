"""Result models: frozen attrs classes, filled by the converter in ``_convert``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from ._convert import converter

__all__ = [
    "CashbackProgress",
    "CashbackSettings",
    "DailyCapSettings",
    "DailyEarnings",
    "EventDetails",
    "HappyHour",
    "Link",
    "Receipt",
    "StakeInfo",
    "StakingRate",
    "TierThresholds",
    "TokenInfo",
    "UserInfo",
    "UserTier",
    "VestingInfo",
]

_ZERO = Decimal(0)


class _Result:
    """What every result model offers beside its fields."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready data, e.g. to answer a web request with: amounts as
        decimal strings (never floats, which would round them), times in ISO 8601."""
        data: dict[str, Any] = converter.unstructure(self)
        return data


@attrs.frozen
class Receipt(_Result):
    """The result of a write.

    ``tx_hash`` is None when the write was proven applied by reading state back
    after its answer was lost (``verified`` is then True). ``replayed`` is True
    when the receipt came from the ledger for a repeated idempotency key and
    nothing was sent.
    """

    tx_hash: str | None
    idempotency_key: str | None = None
    replayed: bool = False
    verified: bool = False


@attrs.frozen
class Link(_Result):
    """A link the customer opens to finish an action (claim-pending-rewards, receive-from-shakesco)."""

    url: str
    expires_at: datetime
    idempotency_key: str | None = None
    replayed: bool = False


@attrs.frozen
class StakeInfo(_Result):
    """One stake record; an unknown index reads as zeros with ``active=False``."""

    amount: Decimal = _ZERO
    start_time: datetime | None = None
    lock_duration: int = 0
    reward_percent: Decimal = _ZERO
    active: bool = False


@attrs.frozen
class StakingRate(_Result):
    """The base staking rate: a stake locked ``base_duration`` seconds earns
    ``base_reward_percent`` (20 = 20%); ``is_set`` is False until one was set."""

    base_duration: int = 0
    base_reward_percent: Decimal = _ZERO
    is_set: bool = False


@attrs.frozen
class VestingInfo(_Result):
    """The customer's vesting grant (durations in seconds, percentages as 25 = 25%)."""

    total_amount: Decimal = _ZERO
    start_time: datetime | None = None
    cliff_duration: int = 0
    cliff_percent: Decimal = _ZERO
    vesting_duration: int = 0
    claimed: Decimal = _ZERO
    active: bool = False


@attrs.frozen
class HappyHour(_Result):
    """The happy-hour promotion; ``multiplier`` is 1 while inactive."""

    end_time: datetime | None = None
    multiplier: Decimal = Decimal(1)
    is_active: bool = False


@attrs.frozen
class DailyCapSettings(_Result):
    """The daily earning cap per customer; ``is_active`` is False when none is set."""

    cap: Decimal = _ZERO
    is_active: bool = False


@attrs.frozen
class DailyEarnings(_Result):
    """What a customer earned from claims in the current 24-hour window, which began at
    ``last_reset_time`` (None before the first claim) and resets 24 hours after it."""

    earned_today: Decimal = _ZERO
    last_reset_time: datetime | None = None
    cap: Decimal = _ZERO


@attrs.frozen
class TierThresholds(_Result):
    """Available-balance thresholds of the three tiers."""

    bronze: Decimal = _ZERO
    silver: Decimal = _ZERO
    gold: Decimal = _ZERO
    is_active: bool = False


TIERS = ("None", "Bronze", "Silver", "Gold")
"""The tier labels, lowest first."""
# The older docs' numbering, still accepted in answers: 0 None, 3 Bronze, 2 Silver, 1 Gold.
_LEGACY_TIERS = {"0": "None", "3": "Bronze", "2": "Silver", "1": "Gold"}


def _tier_label(value: object) -> str:
    """A tier label as the API writes it; a label of the older numbering is translated,
    and a label this SDK does not know yet is kept as the API sent it."""
    text = str(value).strip()
    if text in _LEGACY_TIERS:
        return _LEGACY_TIERS[text]
    known = {label.lower(): label for label in TIERS}
    return known.get(text.lower(), text)


@attrs.frozen
class UserTier(_Result):
    """A customer's tier: one of ``"None"``, ``"Bronze"``, ``"Silver"``, ``"Gold"``
    (``"None"`` below Bronze or while no tiers are set)."""

    tier: str = attrs.field(default="None", converter=_tier_label)


@attrs.frozen
class CashbackSettings(_Result):
    """The cashback programme for one currency."""

    spend_threshold: Decimal = _ZERO
    spend_threshold_currency: str = ""
    reward_tokens: Decimal = _ZERO
    is_active: bool = False


@attrs.frozen
class CashbackProgress(_Result):
    """A customer's spend towards the next cashback reward."""

    spent: Decimal = _ZERO
    threshold: Decimal = _ZERO
    remaining: Decimal = _ZERO
    currency: str = ""


@attrs.frozen
class UserInfo(_Result):
    """Everything the API knows about one customer."""

    available_balance: Decimal = _ZERO
    each_token_value: Decimal = _ZERO
    each_token_value_in_business: Decimal = _ZERO
    total_staked: Decimal = _ZERO
    total_vested: Decimal = _ZERO
    total_earned: Decimal = _ZERO
    total_spent: Decimal = _ZERO
    tier: str = attrs.field(default="None", converter=_tier_label)
    voting_power: int = 0


@attrs.frozen
class EventDetails(_Result):
    """An event's allocation and whether it can be claimed only once."""

    allocation: Decimal = _ZERO
    should_not_claim_twice: bool = False


@attrs.frozen
class TokenInfo(_Result):
    """Basic facts about the business token; fields beyond name and symbol are inferred."""

    name: str = ""
    symbol: str = ""
    decimals: int | None = None
    total_supply: Decimal | None = None
