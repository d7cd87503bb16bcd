"""Argument types shared by the endpoint groups."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

__all__ = ["Amount", "Duration"]

Amount = Decimal | int | str | float
"""A token amount. Floats only when exact in binary (1.5, not 0.1)."""

Duration = int | timedelta
"""Whole seconds."""
