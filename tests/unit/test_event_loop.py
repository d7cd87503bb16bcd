"""The suite runs on the event loop SHAKESCO_TEST_LOOP names (CI runs it on asyncio's and on uvloop)."""

from __future__ import annotations

import asyncio

from tests.conftest import LOOP


async def test_the_tests_run_on_the_loop_asked_for() -> None:
    module = type(asyncio.get_running_loop()).__module__
    assert module.split(".")[0] == LOOP
