"""Reading an answer's body safely, whatever the server sends: JSON that is too deep, numbers
that are too large or too fine, text that is not JSON. Every failure is ``MalformedResponse``.

The API's bodies are flat objects of a few fields; anything far outside that shape is a
broken or hostile server, and must not crash the caller (a ``RecursionError`` escaping
the guard after a POST would leave its entry looking sent forever).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from ._errors import MalformedResponse

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "MAX_DEPTH", "decode_json"]

DEFAULT_MAX_RESPONSE_BYTES = 1 << 20
"""What a client reads of one answer at the most (1 MiB); more is ``MalformedResponse``."""
MAX_DEPTH = 32
"""The deepest nesting of arrays and objects an answer may have (the API's have one level)."""

# Amounts answered as JSON numbers stay exact (a float keeps ~17 digits, not 18 decimals).
# One decoder: json.loads with options would build a new one for every answer.
_JSON = json.JSONDecoder(parse_float=Decimal)
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings are skipped whole: "[" in one is text


def _too_deep(text: str) -> bool:
    # Cheap first: a body with few brackets cannot nest deeply (every real answer).
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif token in "]}":
            depth -= 1
    return False


def decode_json(text: str, what: str) -> Any:
    """The JSON value of ``text``; ``what`` names the answer in the error."""
    if _too_deep(text):
        raise MalformedResponse(f"{what}: JSON nested deeper than {MAX_DEPTH} levels", text)
    try:
        return _JSON.decode(text)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, or an int over 4,300 digits
        raise MalformedResponse(f"{what}: not a JSON body ({type(exc).__name__})", text) from None
