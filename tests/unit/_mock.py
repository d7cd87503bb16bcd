"""Helpers for aioresponses tests."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from aioresponses import aioresponses

from tests.conftest import UNIT_URL

ANY_READ = re.compile(re.escape(UNIT_URL) + r"/.*")
TX = "0x" + "ab" * 32

# One body that every read the write guard makes can parse: its snapshots see a quiet customer.
QUIET_STATE: dict[str, Any] = {
    "balance": "0",
    "total_earned": "0",
    "total_spent": "0",
    "has_claimed": False,
    "stake_count": "0",
    "active": False,
    "claimed": "0",
    "total_amount": "0",
    "start_time": "0",
    "is_active": False,
    "multiplier": "1",
    "end_time": "0",
    "bronze": "0",
    "silver": "0",
    "gold": "0",
    "spend_threshold": "0",
    "reward_tokens": "0",
    "spent": "0",
    "threshold": "0",
    "remaining": "0",
    "currency": "USD",
    "allocation": "0",
    "should_not_claim_twice": False,
    "is_expired": False,
    "vested_amount": "0",
}


def sent(m: aioresponses, method: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, kwargs) of every request of ``method`` aioresponses saw, in order; the
    query, which the SDK writes into the URL, as kwargs["params"]."""
    calls = []
    for (verb, url), requests in m.requests.items():
        if verb == method:
            calls.extend((url.path, {**call.kwargs, "params": dict(url.query)}) for call in requests)
    return calls


def body_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    data = kwargs["data"]
    parsed: dict[str, Any] = json.loads(data, parse_float=Decimal)
    return parsed
