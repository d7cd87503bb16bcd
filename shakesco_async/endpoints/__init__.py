"""Endpoint groups: each module holds its rows of the API reference and the methods that send them."""

from __future__ import annotations

from ._spec import Endpoint
from .cashback import CashbackEndpoints
from .events import EventEndpoints
from .governance import GovernanceEndpoints
from .promotions import PromotionEndpoints
from .queries import QueryEndpoints
from .rewards import RewardEndpoints
from .staking import StakingEndpoints
from .transfers import TransferEndpoints
from .vesting import VestingEndpoints

__all__ = ["ALL_ENDPOINTS", "ENDPOINTS_BY_PATH", "Endpoint", "EndpointMethods"]


class EndpointMethods(
    RewardEndpoints,
    TransferEndpoints,
    StakingEndpoints,
    VestingEndpoints,
    PromotionEndpoints,
    GovernanceEndpoints,
    CashbackEndpoints,
    QueryEndpoints,
    EventEndpoints,
):
    """Every endpoint of the Tokens API as an async method."""


def _collect() -> tuple[Endpoint[object], ...]:
    from . import cashback, events, governance, promotions, queries, rewards, staking, transfers, vesting

    found: list[Endpoint[object]] = []
    for module in (rewards, transfers, staking, vesting, promotions, governance, cashback, queries, events):
        found.extend(v for v in vars(module).values() if isinstance(v, Endpoint))
    return tuple(found)


ALL_ENDPOINTS = _collect()
ENDPOINTS_BY_PATH = {e.path: e for e in ALL_ENDPOINTS}
