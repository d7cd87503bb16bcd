"""Every row of the error table maps to its class; error bodies are parsed tolerantly."""

from __future__ import annotations

import pytest
from aioresponses import aioresponses

import shakesco_async as sa
from shakesco_async import APIError, ShakescoClient
from shakesco_async._errors import error_from_response
from tests.conftest import UNIT_URL

ROWS: list[tuple[int, str, type[APIError]]] = [
    (400, "Invalid parameters", sa.InvalidParameters),
    (400, "Insufficient token balance", sa.InsufficientBalance),
    (400, "No tokens are claimable", sa.NothingClaimable),
    (401, "Unauthorized", sa.Unauthorized),
    (403, "Caller not authorized", sa.Forbidden),
    (404, "Event not found", sa.EventNotFound),
    (404, "Not found", sa.NotFound),
    (409, "Event already claimed", sa.EventAlreadyClaimed),
    (409, "Stake already unlocked", sa.StakeAlreadyUnlocked),
    (429, "Daily earning cap exceeded", sa.DailyCapExceeded),
    (429, "Fee limit exceeded", sa.FeeLimitExceeded),
    (502, "Transaction failed", sa.TransactionFailed),
    (500, "Internal server error", sa.ServerError),
    (503, "Service unavailable", sa.ServerError),
]


@pytest.mark.parametrize(("status", "message", "cls"), ROWS, ids=[f"{r[0]}-{r[2].__name__}" for r in ROWS])
async def test_error_rows_raise_their_class(
    unit_client: ShakescoClient, status: int, message: str, cls: type[APIError]
) -> None:
    with aioresponses() as m:
        m.get(f"{UNIT_URL}/event-counter", status=status, payload={"error": message}, repeat=True)
        with pytest.raises(cls) as info:
            await unit_client.event_counter()
    assert type(info.value) is cls
    assert info.value.status == status
    assert info.value.message == message
    assert message in info.value.body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"error": "Insufficient token balance"}', "Insufficient token balance"),
        ('{"message": "Insufficient token balance"}', "Insufficient token balance"),
        ('{"detail": "Insufficient token balance"}', "Insufficient token balance"),
        ('{"error": {"message": "Insufficient token balance"}}', "Insufficient token balance"),
        ("Insufficient token balance", "Insufficient token balance"),
    ],
)
def test_error_bodies_are_read_tolerantly(body: str, message: str) -> None:
    error = error_from_response(400, body)
    assert isinstance(error, sa.InsufficientBalance)
    assert error.message == message


def test_html_from_a_proxy_still_maps_by_status() -> None:
    error = error_from_response(502, "<html><body><h1>502 Bad Gateway</h1></body></html>")
    assert isinstance(error, sa.TransactionFailed)
    assert "502" in str(error)
    empty = error_from_response(401, "")
    assert isinstance(empty, sa.Unauthorized)
    assert empty.message == "Unauthorized"


def test_hierarchy() -> None:
    assert issubclass(sa.ValidationError, ValueError)
    assert issubclass(sa.TransportTimeout, TimeoutError)
    assert issubclass(sa.TransportTimeout, sa.TransportError)
    for _, _, cls in ROWS:
        assert issubclass(cls, sa.APIError)
        assert issubclass(cls, sa.ShakescoError)
    assert issubclass(sa.TransactionFailed, sa.ServerError)
    assert issubclass(sa.OutcomeUnknown, sa.ShakescoError)
