"""Unit-test set-up: aioresponses with the aiohttp version we run on."""

from __future__ import annotations

import inspect
from typing import Any

import aiohttp
import pytest


class _SentRequest:
    """What aiohttp >= 3.14 asks of the writer of a request that has been sent."""

    output_size = 0


@pytest.fixture(autouse=True)
def _aioresponses_on_aiohttp_314(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioresponses 0.7.x builds ClientResponse without the `stream_writer` argument that
    # aiohttp 3.14 made required (pnuckowski/aioresponses#289). Supply one for mocked answers.
    original = aiohttp.ClientResponse.__init__
    if "stream_writer" in inspect.signature(original).parameters:

        def init(self: aiohttp.ClientResponse, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", _SentRequest())
            original(self, *args, **kwargs)

        monkeypatch.setattr(aiohttp.ClientResponse, "__init__", init)
