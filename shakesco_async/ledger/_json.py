"""The ledger's one JSON form: sorted keys, no spaces, ASCII; stable, so digests are too."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["canonical_json"]


def _refuse(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
# json.JSONEncoder.encode builds a new C encoder on every call; every write encodes a few
# small records, so one is built here and reused. Same arguments, so the same text.
_make = getattr(json.encoder, "c_make_encoder", None)
_c_encode: Callable[[Any, int], Iterator[str]] | None = (
    None
    if _make is None
    else _make(None, _refuse, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)
)


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON text (what ``json.dumps(sort_keys=True, separators=(",", ":"))`` gives)."""
    if _c_encode is None or isinstance(value, str):
        return _ENCODER.encode(value)
    return "".join(_c_encode(value, 0))
