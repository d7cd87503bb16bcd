"""The one cattrs converter: API JSON into result models, and models and ledger entries back into JSON-ready data."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import cattrs

from ._validate import MAX_AMOUNT, MAX_DECIMALS, MAX_INTEGER, decimal_places
from ._validate import shown as _shown

__all__ = ["MAX_READ_PLACES", "converter", "to_bool", "to_datetime", "to_decimal", "to_int"]

MAX_READ_PLACES = 2 * MAX_DECIMALS
"""The most decimal places a number read from the API may have (36); with ``MAX_AMOUNT``
as the largest magnitude, every difference the guard takes of two of them is exact."""


def to_decimal(value: Any, _: Any = None) -> Decimal:
    """Exact decimal from a decimal string or JSON number (never via binary float maths),
    within the range of token amounts: at most ``MAX_AMOUNT`` in magnitude and at most
    ``MAX_READ_PLACES`` decimal places. Anything else is no amount (``ValueError``)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(f"not an amount: {_shown(value)}")
    if isinstance(value, int) and abs(value) > MAX_INTEGER:
        raise ValueError(f"not an amount, too large: {_shown(value)}")
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {_shown(value)}") from None
    if not result.is_finite():
        raise ValueError(f"not a finite amount: {_shown(value)}")
    if result.copy_abs() > MAX_AMOUNT or decimal_places(result) > MAX_READ_PLACES:
        raise ValueError(f"an amount out of range: {_shown(value)}")
    return result


def to_int(value: Any, _: Any = None) -> int:
    """Integer from an int or an integer string ("3600")."""
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int) and abs(value) <= MAX_INTEGER:
        return value
    if isinstance(value, str | float | Decimal):
        number = to_decimal(value)
        if number == number.to_integral_value():
            return int(number)
    raise ValueError(f"not an integer: {_shown(value)}")


def to_bool(value: Any, _: Any = None) -> bool:
    """Boolean from true/false, "true"/"false" or 0/1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"not a boolean: {value!r}")


def to_datetime(value: Any, _: Any = None) -> datetime | None:
    """Aware UTC datetime from Unix seconds or ISO 8601; "0", 0 and null mean none."""
    if value is None or value == "" or value == 0 or value == "0":
        return None
    if isinstance(value, str) and not value.strip().lstrip("-").replace(".", "", 1).isdigit():
        if len(value) > 64:  # no ISO 8601 time is longer
            raise ValueError(f"not a time: {_shown(value)}")
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    seconds = to_decimal(value)
    try:
        return datetime.fromtimestamp(float(seconds), tz=UTC)
    except (OverflowError, OSError, ValueError):  # past what a datetime can hold (year 9999)
        raise ValueError(f"not a time: {_shown(value)}") from None


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(Decimal, to_decimal)
    conv.register_structure_hook(int, to_int)
    conv.register_structure_hook(bool, to_bool)
    conv.register_structure_hook(str, lambda v, _: v if isinstance(v, str) else str(v))
    conv.register_structure_hook(datetime, lambda v, _: _require(to_datetime(v)))
    conv.register_structure_hook_func(lambda t: t == (datetime | None), to_datetime)
    conv.register_structure_hook_func(
        lambda t: t == (Decimal | None), lambda v, _: None if v is None else to_decimal(v)
    )
    conv.register_structure_hook_func(lambda t: t == (int | None), lambda v, _: None if v is None else to_int(v))
    # Plain notation: str() would write 0.000000000000000000 as "0E-18", which few readers expect.
    conv.register_unstructure_hook(Decimal, lambda d: format(d, "f"))
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())
    return conv


def _require(value: datetime | None) -> datetime:
    if value is None:
        raise ValueError("timestamp is missing")
    return value


converter = _make_converter()
