"""The exception hierarchy: one class per documented API error, plus SDK errors."""

from __future__ import annotations

import json
from typing import Any, ClassVar

_MAX_BODY = 2000

__all__ = [
    "APIError",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "DailyCapExceeded",
    "EventAlreadyClaimed",
    "EventNotFound",
    "FeeLimitExceeded",
    "Forbidden",
    "IdempotencyConflict",
    "InsufficientBalance",
    "InvalidParameters",
    "LeaseLost",
    "LedgerError",
    "MalformedResponse",
    "NotFound",
    "NothingClaimable",
    "OutcomeUnknown",
    "RateLimited",
    "ServerError",
    "ShakescoError",
    "StakeAlreadyUnlocked",
    "TokensNotExpired",
    "TransactionFailed",
    "TransportError",
    "TransportTimeout",
    "Unauthorized",
    "ValidationError",
    "error_from_response",
]


class ShakescoError(Exception):
    """Base class of every error this SDK raises."""


class ConfigurationError(ShakescoError):
    """The client was constructed with missing or unsafe settings."""


class ValidationError(ShakescoError, ValueError):
    """An argument was rejected before anything was sent or recorded."""


class LedgerError(ShakescoError):
    """The local ledger could not be read or written; nothing was sent."""


class LeaseLost(LedgerError):
    """A customer's lease lapsed and another process took it before this write was sent;
    nothing was sent, and the write is given up (a retry with the same key sends it once).
    Where an earlier attempt of the call may still land, the call raises ``OutcomeUnknown``
    instead."""


class IdempotencyConflict(ShakescoError, ValueError):
    """An idempotency key was reused with different parameters."""

    def __init__(self, idempotency_key: str, message: str) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key


class OutcomeUnknown(ShakescoError):
    """A write may or may not have been applied, and the SDK could not prove which yet:
    it is pending. The SDK finishes it, at most once: reconcile (or a call with the same
    key) verifies it and, only if proven not applied, sends it (a key of the caller's) or
    gives it up (an SDK-made key). Show the customer a pending state; never retry under a
    new key."""

    def __init__(self, idempotency_key: str, reason: str) -> None:
        super().__init__(f"outcome of write {idempotency_key!r} is unknown: {reason}")
        self.idempotency_key = idempotency_key
        self.reason = reason


class TransportError(ShakescoError):
    """No HTTP answer came back (connection refused, reset, dropped, timed out).

    ``sent`` is False when the request provably never left this process
    (for example the connection could not be opened), True or None otherwise.
    """

    def __init__(self, message: str, *, sent: bool | None = None) -> None:
        super().__init__(message)
        self.sent = sent


class TransportTimeout(TransportError, TimeoutError):
    """The request timed out before an answer arrived."""


class MalformedResponse(ShakescoError):
    """A 2xx answer whose body could not be parsed into the documented shape."""

    def __init__(self, message: str, body: str = "") -> None:
        super().__init__(message)
        self.body = body[:_MAX_BODY]


class APIError(ShakescoError):
    """The API answered with an error status."""

    status: int
    message: str
    body: str
    default_message: ClassVar[str] = ""

    def __init__(
        self,
        status: int,
        message: str,
        body: str = "",
        retry_after: float | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.body = body
        self.retry_after = retry_after
        self.request_id = request_id
        """The API's id of the request (its ``X-Request-Id`` header), for its support team."""


class BadRequest(APIError):
    """HTTP 400."""


class InvalidParameters(BadRequest):
    """400 Invalid parameters: bad field types or values."""

    default_message = "Invalid parameters"


class InsufficientBalance(BadRequest):
    """400 Insufficient token balance."""

    default_message = "Insufficient token balance"


class NothingClaimable(BadRequest):
    """400 No tokens are claimable (vesting has nothing to claim yet)."""

    default_message = "No tokens are claimable"


class TokensNotExpired(BadRequest):
    """400 Tokens have not expired yet: ``expire_tokens`` before the customer's
    inactivity period ran out (``is_expired`` tells beforehand)."""

    default_message = "Tokens have not expired yet"


class Unauthorized(APIError):
    """401 Unauthorized: missing or invalid API key."""

    default_message = "Unauthorized"


class Forbidden(APIError):
    """403 Caller not authorized: the key is not linked to this token."""

    default_message = "Caller not authorized"


class NotFound(APIError):
    """HTTP 404 other than a missing event."""


class EventNotFound(NotFound):
    """404 Event not found (also: process-cashback with no cashback program)."""

    default_message = "Event not found"


class Conflict(APIError):
    """HTTP 409."""


class EventAlreadyClaimed(Conflict):
    """409 Event already claimed: a normal outcome, not a failure to retry."""

    default_message = "Event already claimed"


class StakeAlreadyUnlocked(Conflict):
    """409 Stake already unlocked."""

    default_message = "Stake already unlocked"


class RateLimited(APIError):
    """HTTP 429."""


class DailyCapExceeded(RateLimited):
    """429 Daily earning cap exceeded: a normal outcome."""

    default_message = "Daily earning cap exceeded"


class FeeLimitExceeded(RateLimited):
    """429 Fee limit exceeded: the business's compute budget is spent; retry later."""

    default_message = "Fee limit exceeded"


class ServerError(APIError):
    """HTTP 5xx other than 502 Transaction failed."""


class TransactionFailed(ServerError):
    """502 Transaction failed: the outcome is unknown until verified."""

    default_message = "Transaction failed"


# (status, message prefix, class): first match wins; the message is matched case-insensitively.
_TABLE: tuple[tuple[int, str, type[APIError]], ...] = (
    (400, "insufficient", InsufficientBalance),
    (400, "no tokens are claimable", NothingClaimable),
    (400, "tokens have not expired", TokensNotExpired),
    (400, "", InvalidParameters),
    (401, "", Unauthorized),
    (403, "", Forbidden),
    (404, "event not found", EventNotFound),
    (404, "", NotFound),
    (409, "stake already unlocked", StakeAlreadyUnlocked),
    (409, "event already claimed", EventAlreadyClaimed),
    (409, "", Conflict),
    (429, "daily", DailyCapExceeded),
    (429, "fee limit", FeeLimitExceeded),
    (429, "", RateLimited),
    (502, "", TransactionFailed),
)


def _message_from_body(body: str) -> str:
    if body.count("[") + body.count("{") > 8:  # no message nests that deep: keep json's recursion away
        return body.strip()[:200]
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return body.strip()[:200]
    if isinstance(data, dict):
        for field in ("error", "message", "detail"):
            value = data.get(field)
            if isinstance(value, str):
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
    if isinstance(data, str):
        return data
    return body.strip()[:200]


def error_from_response(
    status: int, body: str, retry_after: float | None = None, *, request_id: str | None = None
) -> APIError:
    """Map an error answer to the most specific class of the error table."""
    message = _message_from_body(body)
    lowered = message.lower()
    cls: type[APIError] = ServerError if status >= 500 else APIError
    for row_status, prefix, row_cls in _TABLE:
        if row_status == status and lowered.startswith(prefix):
            cls = row_cls
            break
    if not message:
        message = cls.default_message or f"HTTP {status}"
    return cls(status, message, body[:_MAX_BODY], retry_after, request_id=request_id)
