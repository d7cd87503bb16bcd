"""A client made before the process forks (``gunicorn --preload``, a prefork worker pool)
and first used in the children: each child is a process of its own to the ledger."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from shakesco_async.sandbox import Sandbox
from tests.conftest import ClientFactory
from tests.support.ledgers import LedgerSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
async def test_two_children_of_one_client_do_not_both_send_one_job(
    make_client: ClientFactory, sandbox: Sandbox, ledger_spec: LedgerSpec
) -> None:
    await make_client().set_event_details("visit", 10, False)  # repeatable: the API takes every claim
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.guard._forked",
        sandbox.base_url,
        sandbox.api_key,
        *ledger_spec.argv(),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    # The second child found the first's write in flight, on a customer it could not lease.
    # That write is open (it will be applied), so the second hears "pending", not "not applied".
    assert out.decode().split() == ["refused", "OutcomeUnknown", "sent"], err.decode()
    assert len(sandbox.applied_writes("/claim-tokens")) == 1
