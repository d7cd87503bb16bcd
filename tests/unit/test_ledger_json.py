"""The ledger's JSON: the same text as json.dumps with sorted keys, so digests never drift."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from shakesco_async.ledger._entry import params_digest
from shakesco_async.ledger._json import canonical_json


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1, 2.5, None, True, False]},
        {"customer_ref": 'é\n"quoted"\\ \u2028 😀', "event_name": "signup"},
        {"outer": {"z": 1, "y": {"x": []}}},
        ["/claim-tokens", {"amount": "1.50"}],
        [],
        {},
        "plain",
        10**30,
        -0.0,
    ],
)
def test_same_text_as_json_dumps(value: Any) -> None:
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("value", [{"a": Decimal("1")}, {"a": object()}, [b"bytes"]])
def test_refuses_what_json_refuses(value: Any) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        canonical_json(value)


def test_digest_of_older_ledgers_still_matches() -> None:
    # Entries written by earlier versions carry this digest; a change would turn every
    # replay of their keys into an IdempotencyConflict.
    params = {"event_name": "signup", "customer_ref": "cust-é1", "amount": "1.5", "flag": True}
    assert params_digest("/claim-tokens", params) == "04de0f1cbfb5480c6263784101dc5d2e18eb06b2516697fcacd50b86ad62bfb0"
