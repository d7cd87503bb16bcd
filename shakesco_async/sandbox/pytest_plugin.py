"""pytest plugin (installed as an entry point): the ``shakesco_sandbox`` fixture.

    async def test_award(shakesco_sandbox):
        async with ShakescoClient(shakesco_sandbox.api_key, base_url=shakesco_sandbox.base_url, ...) as client:
            ...

Needs pytest-asyncio, in either mode (or another plugin that runs async fixtures).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ._server import Sandbox

__all__ = ["shakesco_sandbox"]

async_fixture: Callable[[Any], Any]
try:
    # pytest-asyncio's default (strict) mode runs only the async fixtures it made itself.
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # another plugin (anyio's, say) runs plain async fixtures
    async_fixture = pytest.fixture


@async_fixture
async def shakesco_sandbox() -> AsyncIterator[Sandbox]:
    """A fresh sandbox on a free 127.0.0.1 port, stopped after the test."""
    async with Sandbox() as sandbox:
        yield sandbox
