"""shakesco-async: the asyncio SDK for the Shakesco Tokens API, with at-most-once writes."""

from __future__ import annotations

from . import _logs
from ._client import ShakescoClient
from ._errors import (
    APIError,
    BadRequest,
    ConfigurationError,
    Conflict,
    DailyCapExceeded,
    EventAlreadyClaimed,
    EventNotFound,
    FeeLimitExceeded,
    Forbidden,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidParameters,
    LeaseLost,
    LedgerError,
    MalformedResponse,
    NotFound,
    NothingClaimable,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    ShakescoError,
    StakeAlreadyUnlocked,
    TokensNotExpired,
    TransactionFailed,
    TransportError,
    TransportTimeout,
    Unauthorized,
    ValidationError,
)
from ._instrumentation import Event as InstrumentationEvent
from ._instrumentation import get_hooks as get_instrumentation_hooks
from ._instrumentation import set_hooks as set_instrumentation_hooks
from ._models import (
    CashbackProgress,
    CashbackSettings,
    DailyCapSettings,
    DailyEarnings,
    EventDetails,
    HappyHour,
    Link,
    Receipt,
    StakeInfo,
    StakingRate,
    TierThresholds,
    TokenInfo,
    UserInfo,
    UserTier,
    VestingInfo,
)
from ._reconcile import ReconcileSummary
from ._staged import NotApplied, StagedWrites
from ._version import VERSION as __version__
from .guard import GuardSettings
from .guard._outcome import ReconcileOutcome
from .ledger import EntryState, Ledger, LedgerEntry, SQLiteLedger

__all__ = [
    "APIError",
    "BadRequest",
    "CashbackProgress",
    "CashbackSettings",
    "ConfigurationError",
    "Conflict",
    "DailyCapExceeded",
    "DailyCapSettings",
    "DailyEarnings",
    "EntryState",
    "EventAlreadyClaimed",
    "EventDetails",
    "EventNotFound",
    "FeeLimitExceeded",
    "Forbidden",
    "GuardSettings",
    "HappyHour",
    "IdempotencyConflict",
    "InstrumentationEvent",
    "InsufficientBalance",
    "InvalidParameters",
    "Ledger",
    "LedgerEntry",
    "LeaseLost",
    "LedgerError",
    "Link",
    "MalformedResponse",
    "NotFound",
    "NotApplied",
    "NothingClaimable",
    "OutcomeUnknown",
    "RateLimited",
    "Receipt",
    "ReconcileOutcome",
    "ReconcileSummary",
    "SQLiteLedger",
    "ServerError",
    "ShakescoClient",
    "StagedWrites",
    "ShakescoError",
    "StakeAlreadyUnlocked",
    "StakeInfo",
    "StakingRate",
    "TierThresholds",
    "TokenInfo",
    "TokensNotExpired",
    "TransactionFailed",
    "TransportError",
    "TransportTimeout",
    "Unauthorized",
    "UserInfo",
    "UserTier",
    "ValidationError",
    "VestingInfo",
    "__version__",
    "get_instrumentation_hooks",
    "set_instrumentation_hooks",
]

_logs.setup_from_env()
