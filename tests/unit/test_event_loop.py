"""The suite runs on the event loop SHAKESCO_TEST_LOOP names (CI runs it on each it knows)."""

from __future__ import annotations

import asyncio

from tests.conftest import LOOP


async def test_the_tests_run_on_the_loop_asked_for() -> None:
    loop = asyncio.get_running_loop()
    module = type(loop).__module__.split(".")[0]
    assert module == ("asyncio" if LOOP == "eager" else LOOP)
    assert (loop.get_task_factory() is not None) == (LOOP == "eager")
