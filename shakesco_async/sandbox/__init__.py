"""The sandbox: an in-process fake of the Tokens API with real semantics and fault injection.

Use it in tests (``async with Sandbox() as sandbox``, or the ``shakesco_sandbox`` pytest
fixture) or run it: ``python -m shakesco_async.sandbox --port 8787``.
"""

from __future__ import annotations

from ._app import ROUTES, AppliedWrite
from ._clock import SandboxClock
from ._faults import FaultMode, FaultRule, Faults
from ._server import DEMO_API_KEY, Sandbox
from ._state import Business

__all__ = [
    "DEMO_API_KEY",
    "ROUTES",
    "AppliedWrite",
    "Business",
    "FaultMode",
    "FaultRule",
    "Faults",
    "Sandbox",
    "SandboxClock",
]
