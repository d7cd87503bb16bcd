"""Request encoding: JSON bodies whose amounts are exact decimal numbers."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _quote

__all__ = ["WireValue", "decimal_text", "encode_body", "encode_query"]

WireValue = str | int | bool | Decimal


def decimal_text(value: Decimal) -> str:
    """Plain positional notation, no exponent and no binary noise ("100", "1.5")."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _encode(value: WireValue) -> str:
    # json.dumps per value, without its per-call set-up (every write pays this)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return decimal_text(value)
    return str(int(value))


def encode_body(fields: Mapping[str, WireValue]) -> bytes:
    """A flat JSON object; Decimals become JSON numbers written exactly."""
    parts = (f"{_quote(name)}:{_encode(value)}" for name, value in fields.items())
    return ("{" + ",".join(parts) + "}").encode()


def encode_query(fields: Mapping[str, WireValue]) -> dict[str, str]:
    """Query parameters as strings."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, Decimal):
            out[name] = decimal_text(value)
        else:
            out[name] = str(value)
    return out
