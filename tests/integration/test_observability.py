"""What an operator sees: SHAKESCO_LOG, errors that name their write and carry the API's
request id, OpenTelemetry spans per guarded write, and metrics hooks."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import shakesco_async as sa
from shakesco_async.sandbox import Sandbox
from tests.conftest import FAST_GUARD, ClientFactory
from tests.support.cli import ROOT

_SCRIPT = """
import asyncio, sys
from shakesco_async import ShakescoClient, GuardSettings
async def main():
    guard = GuardSettings(verify_delay=0.0)
    async with ShakescoClient(sys.argv[1], base_url=sys.argv[2], ledger=sys.argv[3], guard=guard) as client:
        await client.upgrade_to_shakesco("ann", 10, idempotency_key="order:1")
        await client.redeem_tokens("ann", 1, idempotency_key="order:2")
asyncio.run(main())
"""


@pytest.mark.parametrize("level", ["debug", "info", ""])
async def test_shakesco_log_shows_each_write_and_phase_never_the_key(
    sandbox: Sandbox, tmp_path: Path, level: str
) -> None:
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SCRIPT,
        sandbox.api_key,
        sandbox.base_url,
        str(tmp_path / "l.sqlite3"),
        cwd=ROOT,
        env={"SHAKESCO_LOG": level, "PATH": ""},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 0, text
    assert sandbox.api_key not in text
    if level == "debug":
        assert "write /upgrade-to-shakesco order:1: intent recorded" in text
        assert "write /upgrade-to-shakesco order:1: sending attempt=1" in text
        assert "write /redeem-tokens order:2: verified verdict=applied" in text
        assert "aiosqlite" not in text  # only the SDK's own loggers
    if level == "info":
        assert "write /redeem-tokens order:2: outcome unknown" in text and "sending attempt" not in text
    if not level:
        assert text == ""


async def test_a_failed_read_before_sending_names_the_write(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once this is closed
    async with sa.ShakescoClient(
        "sk_x",
        base_url=f"http://127.0.0.1:{closed}",
        ledger=tmp_path / "l.sqlite3",
        timeout=2.0,
        max_retries=0,
        guard=FAST_GUARD,
    ) as client:
        with pytest.raises(sa.TransportError) as info:
            await client.redeem_tokens("ann", 1, idempotency_key="k1")
    message = str(info.value)
    assert message.startswith("/redeem-tokens (key 'k1'): the read before sending failed, nothing was sent:")
    assert "GET /total-spent: cannot connect" in message and info.value.sent is False


async def test_api_errors_carry_the_request_id(client: sa.ShakescoClient, sandbox: Sandbox) -> None:
    with pytest.raises(sa.EventNotFound) as info:
        await client.claim_tokens("nope", "ann", idempotency_key="k")
    first = info.value.request_id
    assert first is not None and first.startswith("req_")
    with pytest.raises(sa.EventNotFound) as again:  # the recorded refusal, replayed
        await client.claim_tokens("nope", "ann", idempotency_key="k")
    assert again.value.request_id == first


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    # As an application that set an SDK's provider (once per process, so patched here).
    original, original_provider = trace.get_tracer, trace.get_tracer_provider
    trace.get_tracer = lambda *args, **kwargs: tracer  # type: ignore[assignment]
    trace.get_tracer_provider = lambda: provider
    try:
        yield exporter
    finally:
        trace.get_tracer, trace.get_tracer_provider = original, original_provider  # type: ignore[assignment]


async def test_each_guarded_write_is_a_span_with_its_phases(
    make_client: ClientFactory, sandbox: Sandbox, spans: InMemorySpanExporter
) -> None:
    client = make_client()
    await client.upgrade_to_shakesco("ann", 10, idempotency_key="o1")
    sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
    await client.redeem_tokens("ann", 1, idempotency_key="o2")
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert set(finished) == {"shakesco /upgrade-to-shakesco", "shakesco /redeem-tokens"}
    redeem = finished["shakesco /redeem-tokens"]
    assert redeem.attributes is not None
    assert redeem.attributes["shakesco.idempotency_key"] == "o2"
    assert redeem.attributes["shakesco.outcome"] == "applied"
    assert [e.name for e in redeem.events] == ["intent recorded", "sending", "verified"]
    assert dict(redeem.events[-1].attributes or {}) == {"verdict": "applied"}


async def test_no_span_is_made_while_no_tracer_provider_is_set(make_client: ClientFactory) -> None:
    """OpenTelemetry's API alone records nothing: a write then makes no span at all (it
    cost ~20 µs a write for nothing)."""
    made: list[object] = []
    original = trace.get_tracer
    trace.get_tracer = lambda *args, **kwargs: made.append(args) or original(*args, **kwargs)  # type: ignore[assignment,func-returns-value]
    try:
        await make_client().upgrade_to_shakesco("ann", 1)
    finally:
        trace.get_tracer = original  # type: ignore[assignment]
    assert made == []


async def test_metrics_hooks_count_writes_verifications_and_doubts(
    make_client: ClientFactory, sandbox: Sandbox
) -> None:
    events: list[sa.InstrumentationEvent] = []

    def broken(_: sa.InstrumentationEvent) -> None:
        raise RuntimeError("a hook's own bug")

    sa.set_instrumentation_hooks([events.append, broken])
    try:
        client = make_client(timeout=0.3)
        await client.upgrade_to_shakesco("ann", 10, idempotency_key="m1")
        await client.upgrade_to_shakesco("ann", 10, idempotency_key="m1")
        with pytest.raises(sa.InsufficientBalance):
            await client.redeem_tokens("ann", 100, idempotency_key="m2")
        sandbox.faults.add("drop_after_commit", endpoint="/redeem-tokens", count=1)
        sandbox.faults.add("error", endpoint="/total-spent", after=1, status=503)
        with pytest.raises(sa.OutcomeUnknown):
            await client.redeem_tokens("ann", 1, idempotency_key="m3")
    finally:
        sa.set_instrumentation_hooks([])
    writes = [(e.idempotency_key, e.outcome) for e in events if e.kind == "write"]
    assert writes == [("m1", "applied"), ("m1", "replayed"), ("m2", "refused"), ("m3", "in_doubt")]
    verdicts = [e.outcome for e in events if e.kind == "verification"]
    assert verdicts and set(verdicts) == {"unreadable"}  # read once, or again once it could no longer land
    assert [e.idempotency_key for e in events if e.kind == "in_doubt"] == ["m3"]
    assert sa.get_instrumentation_hooks() == ()
