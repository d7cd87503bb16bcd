"""Input checks. Each returns the value as it goes on the wire, or raises ValidationError."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ._errors import ValidationError

__all__ = [
    "MAX_AMOUNT",
    "MAX_DECIMALS",
    "MAX_STRING",
    "amount",
    "boolean",
    "currency",
    "customer_ref",
    "decimal_places",
    "duration",
    "event_name",
    "index",
    "lookup",
    "multiplier",
    "non_negative_amount",
    "percent",
    "rate_percent",
    "row_limit",
    "seconds",
    "shown",
    "text",
]

MAX_DECIMALS = 18
MAX_AMOUNT = Decimal(f"{2**256 - 1}E-{MAX_DECIMALS}")
"""The most a token amount can be: a 256-bit integer of units at 18 decimals (~1.16e59)."""
MAX_STRING = 256
MAX_INTEGER = 2**256 - 1
"""The largest index or duration (an unsigned 256-bit integer, like token units)."""
_SHOWN = 40  # characters of a bad value kept in an error message
_DIGITS = re.compile(r"[0-9]{1,78}")  # ASCII only: "²".isdigit() and int("٣") == 3
_CURRENCY = re.compile(r"[A-Z]{3}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Amount = Decimal | int | str | float


def shown(value: Any) -> str:
    """A value as an error message may show it: short, and never an int too long to print
    (Python refuses to write one of over 4,300 digits, with a ValueError of its own)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<a {value.bit_length()}-bit int>"
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def text(name: str, value: Any, limit: int = MAX_STRING) -> str:
    """A non-empty string of at most ``limit`` characters that can travel anywhere: no
    control characters (aiohttp refuses them in a header only once the intent is
    recorded) and no lone surrogates (no UTF-8 for the ledger or the wire)."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(f"{name} must not be empty")
    if len(value) > limit:
        raise ValidationError(f"{name} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise ValidationError(f"{name} must not contain control characters")
    return _encodable(name, value)


def lookup(name: str, value: Any) -> str:
    """A string to look a stored one up by: any text that can be stored (one that ``text``
    refuses is simply not found)."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string, got {type(value).__name__}")
    return _encodable(name, value)


def row_limit(name: str, value: Any) -> int | None:
    """None, or an int of at least 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValidationError(f"{name} must be None or an int of at least 1, got {shown(value)}")
    return value


def _encodable(name: str, value: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{name} is not valid Unicode text (it has a lone surrogate)") from None
    return value


def customer_ref(name: str, value: Any) -> str:
    """A customer reference: any non-empty string, used exactly as given."""
    return text(name, value)


def event_name(name: str, value: Any) -> str:
    """An event name; the API stores them in lowercase."""
    checked = text(name, value)
    if checked != checked.lower():
        raise ValidationError(f"{name} must be lowercase (the API stores event names in lowercase): {checked!r}")
    return checked


def _decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str, float)):
        raise ValidationError(f"{name} must be a Decimal, int or decimal string, got {type(value).__name__}")
    if isinstance(value, str) and not value.isascii():  # Decimal("١٢") is 12: no digits but ASCII ones
        raise ValidationError(f"{name} must be written in ASCII digits, got {shown(value)}")
    if isinstance(value, int) and value.bit_length() > MAX_INTEGER.bit_length():
        raise ValidationError(f"{name} is larger than a token amount can be ({MAX_AMOUNT:.3E}): {shown(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{name} must be finite, got {shown(value)}")
        written = Decimal(repr(value))
        if Decimal.from_float(value) != written:  # explicit: no FloatOperation signal, whatever the context
            raise ValidationError(
                f"{name}={value!r} is not exact as a binary float; pass Decimal({repr(value)!r}) or the string"
            )
        number = written
    else:
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise ValidationError(f"{name} is not a number: {shown(value)}") from None
    if not number.is_finite():
        raise ValidationError(f"{name} must be finite, got {shown(value)}")
    # Exact checks only (no context rounding): "1e1000000000" would otherwise be written
    # out digit by digit on the wire, and long decimals overflow quantize's precision.
    if number.copy_abs() > MAX_AMOUNT:
        raise ValidationError(f"{name} is larger than a token amount can be ({MAX_AMOUNT:.3E}): {shown(value)}")
    if decimal_places(number) > MAX_DECIMALS:
        raise ValidationError(f"{name} has more than {MAX_DECIMALS} decimal places: {shown(value)}")
    return number if number else Decimal(0)  # "0E+1000000000" is zero, written "0"


def decimal_places(number: Decimal) -> int:
    """Decimal places up to the last non-zero digit."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    significant = len(digits)
    while significant and digits[significant - 1] == 0:
        significant -= 1
    if not significant:
        return 0
    return max(0, -(exponent + len(digits) - significant))


def amount(name: str, value: Any) -> Decimal:
    """A token amount: finite, greater than zero, at most 18 decimal places."""
    number = _decimal(name, value)
    if number <= 0:
        raise ValidationError(f"{name} must be greater than zero, got {shown(value)}")
    return number


def non_negative_amount(name: str, value: Any) -> Decimal:
    """An amount that may be zero (tier thresholds, tokens_per_vote where 0 disables)."""
    number = _decimal(name, value)
    if number < 0:
        raise ValidationError(f"{name} must not be negative, got {shown(value)}")
    return number


def percent(name: str, value: Any) -> Decimal:
    """A percentage from 0 to 100 (25 = 25%)."""
    number = non_negative_amount(name, value)
    if number > 100:
        raise ValidationError(f"{name} must be at most 100, got {shown(value)}")
    return number


def rate_percent(name: str, value: Any) -> Decimal:
    """A reward rate in percent (20 = 20%); may exceed 100."""
    return non_negative_amount(name, value)


def multiplier(name: str, value: Any) -> Decimal:
    """A happy-hour multiplier, at least 1."""
    number = _decimal(name, value)
    if number < 1:
        raise ValidationError(f"{name} must be at least 1, got {shown(value)}")
    return number


def seconds(name: str, value: Any, *, positive: bool = False) -> float:
    """A setting in seconds: a finite int or float, not negative (with ``positive``, above 0)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and isinstance(value, int):
        number = abs(value) <= MAX_INTEGER  # math.isfinite(10**400) raises OverflowError
    number = number and math.isfinite(value)
    if not number or value < 0 or (positive and value == 0):
        bound = "positive" if positive else "not negative"
        raise ValidationError(f"{name} must be a finite number of seconds, {bound}; got {shown(value)}")
    return float(value)


def duration(name: str, value: Any) -> str:
    """Whole seconds as an int or timedelta; sent as a string as the API expects."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds != int(seconds):
            raise ValidationError(f"{name} must be whole seconds, got {shown(value)}")
        value = int(seconds)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)  # the wire form, as stored in the ledger
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an int number of seconds or a timedelta, got {shown(value)}")
    return str(_bounded(name, value))


def index(name: str, value: Any) -> int:
    """A 0-based integer index."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an int, got {type(value).__name__}")
    return _bounded(name, value)


def _bounded(name: str, value: int) -> int:
    if value < 0:
        raise ValidationError(f"{name} must not be negative, got {shown(value)}")
    if value > MAX_INTEGER:
        raise ValidationError(f"{name} must be at most 2**256 - 1, got {shown(value)}")
    return value


def currency(name: str, value: Any) -> str:
    """An ISO 4217 style code of three capital letters ("KES", "USD")."""
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise ValidationError(f"{name} must be three capital letters such as 'USD', got {shown(value)}")
    return value


def boolean(name: str, value: Any) -> bool:
    """A real bool (not 0/1 or a string)."""
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be a bool, got {type(value).__name__}")
    return value
