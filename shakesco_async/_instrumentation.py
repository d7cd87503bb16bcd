"""What a guarded write tells the outside world: log lines naming the write and its phase,
an OpenTelemetry span per write with its phases as events (when ``opentelemetry`` is
installed: the ``otel`` extra), and metrics hooks, which do nothing until some are set.

The write a phase belongs to travels in a context variable, so the guard's code reports
a phase without passing anything around, and a log line or span event always says which
write it was for.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from ._errors import APIError, OutcomeUnknown

__all__ = ["Event", "Hook", "get_hooks", "in_doubt", "phase", "set_hooks", "verified", "write"]

log = logging.getLogger("shakesco_async.guard")

try:  # the otel extra
    from opentelemetry import trace as _otel
except ImportError:  # pragma: no cover - depends on what is installed
    _otel = None  # type: ignore[assignment]


@attrs.frozen
class Event:
    """One thing worth counting.

    ``kind`` is ``"write"`` (``outcome``: applied, replayed, refused, in_doubt, error),
    ``"verification"`` (``outcome``: the verdict read back: applied, not_applied,
    unreadable, unexplained) or ``"in_doubt"`` (an entry recorded in doubt; ``detail``
    says why). ``seconds`` is how long a write took.
    """

    kind: str
    operation: str
    idempotency_key: str
    outcome: str
    seconds: float = 0.0
    detail: str = ""


Hook = Callable[[Event], None]
_hooks: tuple[Hook, ...] = ()
# (operation, key, whether a span records its phases): the write under way, if any.
_current: contextvars.ContextVar[tuple[str, str, bool] | None] = contextvars.ContextVar("shakesco_write", default=None)


def set_hooks(hooks: Sequence[Hook]) -> None:
    """Call each of ``hooks`` with every ``Event`` (e.g. to feed Prometheus or StatsD
    counters); ``set_hooks([])`` turns them off. A hook that raises is logged, never the
    caller's problem."""
    global _hooks
    _hooks = tuple(hooks)


def get_hooks() -> tuple[Hook, ...]:
    """The hooks set with ``set_hooks``."""
    return _hooks


def _emit(event: Event) -> None:
    for hook in _hooks:
        try:
            hook(event)
        except Exception:
            log.exception("a shakesco_async instrumentation hook failed")


def _outcome(result: object, error: BaseException | None) -> str:
    if error is None:
        return "replayed" if getattr(result, "replayed", False) else "applied"
    if isinstance(error, OutcomeUnknown):
        return "in_doubt"
    if isinstance(error, APIError) and 400 <= error.status < 500:
        return "refused"
    return "error"


class _Write:
    """The write under way; ``result`` is set by the caller once it has one."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: object = None


def write(operation: str, key: str) -> contextlib.AbstractContextManager[_Write]:
    """The span of one guarded write, from its call to its outcome."""
    if not _hooks and not _tracing():
        return _Bare(operation, key)  # every write makes one: nothing to report, the least work
    return _spanned(operation, key)


def _tracing() -> bool:
    """Whether spans would be recorded: OpenTelemetry is installed and an SDK's tracer
    provider is set (the API's own, before one is, makes spans that record nothing)."""
    if _otel is None:
        return False
    return not isinstance(_otel.get_tracer_provider(), _otel.ProxyTracerProvider | _otel.NoOpTracerProvider)


class _Bare(contextlib.AbstractContextManager[_Write]):
    """``write`` with no hooks and no tracing: only the write under way, for ``phase``'s
    debug log lines."""

    __slots__ = ("_current", "_token")

    def __init__(self, operation: str, key: str) -> None:
        self._token = _current.set((operation, key, False))
        self._current = _Write()

    def __enter__(self) -> _Write:
        return self._current

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)


@contextlib.contextmanager
def _spanned(operation: str, key: str) -> Iterator[_Write]:
    token = _current.set((operation, key, _otel is not None))
    started = time.perf_counter()
    current = _Write()
    span_context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if _otel is not None:
        span_context = _otel.get_tracer("shakesco_async").start_as_current_span(
            f"shakesco {operation}", attributes={"shakesco.operation": operation, "shakesco.idempotency_key": key}
        )
    error: BaseException | None = None
    outcome = "error"
    try:
        with span_context:
            try:
                yield current
            except BaseException as exc:
                error = exc
                raise
            finally:
                outcome = _outcome(current.result, error)
                if _otel is not None:
                    _otel.get_current_span().set_attribute("shakesco.outcome", outcome)
    finally:
        _current.reset(token)
        if _hooks:
            _emit(Event("write", operation, key, outcome, time.perf_counter() - started))


def phase(name: str, **attributes: str | int | float | bool) -> None:
    """The write under way reached ``name`` (intent recorded, sending, answered...)."""
    current = _current.get()
    if current is None:
        return
    if log.isEnabledFor(logging.DEBUG):
        extra = "".join(f" {k}={v}" for k, v in attributes.items())
        log.debug("write %s %s: %s%s", current[0], current[1], name, extra)
    if current[2]:
        _otel.get_current_span().add_event(name, attributes)


def verified(operation: str, key: str, verdict: str, reason: str = "") -> None:
    """A verification read back ``verdict``."""
    phase("verified", verdict=verdict)
    if _hooks:
        _emit(Event("verification", operation, key, verdict, detail=reason))


def in_doubt(operation: str, key: str, reason: str) -> None:
    """An entry was recorded in doubt."""
    if _hooks:
        _emit(Event("in_doubt", operation, key, "in_doubt", detail=reason))
