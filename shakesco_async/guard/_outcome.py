"""Turning results and errors into ledger records and back, so replays answer the same."""

from __future__ import annotations

import enum
from typing import Any

from .. import _errors
from .._convert import to_datetime
from .._errors import APIError, RateLimited
from .._models import Link, Receipt
from .._wire import WireValue, decimal_text

__all__ = [
    "ReconcileOutcome",
    "canonical",
    "error_record",
    "is_definitive",
    "raise_recorded",
    "refused_for_now",
    "refuses_credentials",
    "result_from_record",
    "result_record",
]


class ReconcileOutcome(enum.StrEnum):
    """What reconcile did with one entry (or, in a dry run, would do)."""

    COMMITTED = "committed"
    """Verified applied, and recorded so."""
    RESENT = "resent"
    """Proven not applied, sent again (the caller's key) and applied."""
    FAILED = "failed"
    """Sent again, and refused by the API."""
    NOT_APPLIED = "not_applied"
    """Proven not applied, and left for its caller."""
    ABANDONED = "abandoned"
    """Proven not applied, and given up (an SDK-made key)."""
    IN_DOUBT = "in_doubt"
    """The reads could not tell: left for a later pass, or a person."""
    BUSY = "busy"
    """Another process is writing its customers, or its last request may still land."""
    FINAL = "final"
    """Settled meanwhile by another writer."""

    def __repr__(self) -> str:
        # Printed in a summary's counts it reads as the string it equals: {'committed': 1}.
        return repr(self.value)


def canonical(wire: dict[str, WireValue]) -> dict[str, str | int | bool]:
    """Wire values as JSON-native values; ``Endpoint.prepare`` turns them back unchanged."""
    return {k: decimal_text(v) if not isinstance(v, (str, int, bool)) else v for k, v in wire.items()}


def result_record(result: object) -> dict[str, Any]:
    if isinstance(result, Receipt):
        return {"kind": "receipt", "tx_hash": result.tx_hash, "verified": result.verified}
    if isinstance(result, Link):
        return {"kind": "link", "url": result.url, "expires_at": result.expires_at.isoformat()}
    raise TypeError(f"not a write result: {type(result).__name__}")


def result_from_record(record: dict[str, Any], key: str, *, replayed: bool) -> Receipt | Link:
    if record.get("kind") == "link":
        expires = to_datetime(record["expires_at"])
        assert expires is not None
        return Link(url=record["url"], expires_at=expires, idempotency_key=key, replayed=replayed)
    return Receipt(
        tx_hash=record.get("tx_hash"), idempotency_key=key, replayed=replayed, verified=bool(record.get("verified"))
    )


def is_definitive(error: APIError) -> bool:
    """A refusal that proves the write was not applied and will not be by resending now:
    the key's final answer, replayed to every later call with it.

    Not definitive: rate limits other than the daily cap, and refusals of the API key
    (``refuses_credentials``): the write did not apply, and may be sent again later. Nor
    is any answer outside 4xx: a 5xx, or a redirect (a gateway may answer a POST it has
    carried out with a 303), leaves the outcome unknown.
    """
    return 400 <= error.status < 500 and not refused_for_now(error) and not refuses_credentials(error)


def refused_for_now(error: APIError) -> bool:
    """A refusal that proves the write was not applied, but may pass later: a rate limit."""
    return isinstance(error, RateLimited) and not isinstance(error, _errors.DailyCapExceeded)


def refuses_credentials(error: APIError) -> bool:
    """401 or 403: the API key was refused, not the write. The write did not apply, and
    once the key works again the same key sends it (a revoked key, a token not linked yet)."""
    return isinstance(error, _errors.Unauthorized | _errors.Forbidden)


def error_record(error: APIError) -> dict[str, Any]:
    return {
        "class": type(error).__name__,
        "status": error.status,
        "message": error.message,
        "body": error.body,
        "request_id": error.request_id,
    }


def raise_recorded(record: dict[str, Any]) -> None:
    """Raise the error a failed entry recorded, as the same class."""
    cls = getattr(_errors, str(record.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, APIError)):
        cls = APIError
    request_id = record.get("request_id")
    raise cls(
        int(record.get("status", 0)),
        str(record.get("message", "")),
        str(record.get("body", "")),
        request_id=request_id if isinstance(request_id, str) else None,
    )
