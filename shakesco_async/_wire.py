"""Request encoding: JSON bodies whose amounts are exact decimal numbers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _quote
from urllib.parse import quote as _percent

__all__ = ["WireValue", "decimal_text", "encode_body", "encode_query"]

WireValue = str | int | bool | Decimal


def decimal_text(value: Decimal) -> str:
    """Plain positional notation, no exponent and no binary noise ("100", "1.5")."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _text(value: WireValue) -> str:
    """A value as the API reads it: strings as they are, the rest as JSON writes them."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return decimal_text(value)
    return str(int(value))


def _encode(value: WireValue) -> str:
    # json.dumps per value, without its per-call set-up (every write pays this)
    return _quote(value) if isinstance(value, str) else _text(value)


def encode_body(fields: Mapping[str, WireValue]) -> bytes:
    """A flat JSON object; Decimals become JSON numbers written exactly."""
    parts = (f"{_quote(name)}:{_encode(value)}" for name, value in fields.items())
    return ("{" + ",".join(parts) + "}").encode()


def encode_query(fields: Mapping[str, WireValue]) -> str:
    """A query string in which every character but letters, digits and ``-._~`` is
    percent-encoded as UTF-8, a space as ``%20``.

    Form encoding's ``+`` for a space is read back as a plus by servers that decode
    RFC 3986 only: a verification read of customer "a b" would then read customer
    "a+b", find the write not applied and send it again. ``%20`` means a space to both.
    """
    return "&".join(f"{_query_text(name)}={_query_text(_text(value))}" for name, value in fields.items())


def _query_text(text: str) -> str:
    return text if _UNRESERVED(text) else _percent(text, safe="")


_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*").fullmatch  # most refs and names: nothing to encode
