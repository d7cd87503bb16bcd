"""The sandbox's HTTP face: routing, authentication, parameter checks, faults, the applied log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import socket
import struct
from collections.abc import Callable
from decimal import Decimal, InvalidOperation, localcontext
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from ._faults import FaultMode, FaultRule
from ._state import Business, Refusal, invalid

if TYPE_CHECKING:
    from ._server import Sandbox

__all__ = ["ROUTES", "AppliedWrite", "make_app"]


@attrs.frozen
class AppliedWrite:
    """One write the sandbox applied (whatever the client saw afterwards)."""

    endpoint: str
    body: dict[str, Any]
    tx_hash: str | None
    at: float
    idempotency_key: str | None
    api_key: str = attrs.field(repr=False)


# -- parameter kinds ------------------------------------------------------------------------
def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > 256:
        raise invalid()
    return v


def _number(v: Any) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise invalid()
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise invalid() from None
    exponent = d.as_tuple().exponent
    if not d.is_finite() or (isinstance(exponent, int) and exponent < -18 and d != round(d, 18)):
        raise invalid()
    return d


def _positive(v: Any) -> Decimal:
    d = _number(v)
    if d <= 0:
        raise invalid()
    return d


def _non_negative(v: Any) -> Decimal:
    d = _number(v)
    if d < 0:
        raise invalid()
    return d


def _seconds(v: Any) -> int:
    if isinstance(v, bool):
        raise invalid()
    if isinstance(v, int) and v >= 0:
        return v
    if isinstance(v, str) and re.fullmatch(r"[0-9]{1,78}", v):  # ASCII digits: "²".isdigit() too
        return int(v)
    raise invalid()


def _index(v: Any) -> int:
    return _seconds(v)


def _currency(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Z]{3}", v):
        raise invalid()
    return v


def _flag(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return bool(v == "true")
    raise invalid()


Kind = Callable[[Any], Any]
C, E = ("customer_ref", _text), ("event_name", _text)
# path -> (is write, fields); the handler is the Business method named after the path.
ROUTES: dict[str, tuple[bool, tuple[tuple[str, Kind], ...]]] = {
    "/claim-tokens": (True, (E, C)),
    "/redeem-tokens": (True, (C, ("amount", _positive))),
    "/expire-tokens": (True, (C,)),
    "/claim-pending-rewards": (True, (C,)),
    "/transfer-tokens": (True, (("from_customer_ref", _text), ("to_customer_ref", _text), ("amount", _positive))),
    "/upgrade-to-shakesco": (True, (C, ("amount", _positive))),
    "/receive-from-shakesco": (True, (C, ("amount", _positive))),
    "/set-staking-rate": (True, (("base_duration", _seconds), ("base_reward_percent", _non_negative))),
    "/create-stake": (True, (C, ("amount", _positive), ("lock_duration", _seconds))),
    "/unstake": (True, (C, ("stake_index", _index))),
    "/prune-inactive-stakes": (True, (C,)),
    "/stake-info": (False, (C, ("stake_index", _index))),
    "/stake-count": (False, (C,)),
    "/stake-rewards": (False, (C, ("stake_index", _index))),
    "/staking-rate": (False, ()),
    "/calculate-staking-reward": (False, (("duration", _seconds),)),
    "/create-vesting-grant": (
        True,
        (
            C,
            ("total_amount", _positive),
            ("vesting_duration", _seconds),
            ("cliff_duration", _seconds),
            ("cliff_percent", _non_negative),
        ),
    ),
    "/claim-vested-tokens": (True, (C,)),
    "/cancel-vesting": (True, (C,)),
    "/vesting-info": (False, (C,)),
    "/vested-amount": (False, (C,)),
    "/set-happy-hour": (True, (("duration", _seconds), ("multiplier", _positive))),
    "/end-happy-hour": (True, ()),
    "/happy-hour": (False, ()),
    "/set-daily-cap": (True, (("cap_amount", _positive),)),
    "/remove-daily-cap": (True, ()),
    "/daily-cap-settings": (False, ()),
    "/daily-earnings": (False, (C,)),
    "/set-tiers": (True, (("bronze", _non_negative), ("silver", _non_negative), ("gold", _non_negative))),
    "/tier-thresholds": (False, ()),
    "/user-tier": (False, (C,)),
    "/set-voting-ratio": (True, (("tokens_per_vote", _non_negative),)),
    "/voting-power": (False, (C,)),
    "/set-cashback": (True, (("spend_threshold", _positive), ("currency", _currency), ("reward_tokens", _positive))),
    "/cashback-settings": (False, (("currency", _currency),)),
    "/process-cashback": (True, (C, ("spent_amount", _positive), ("currency", _currency))),
    "/cashback-progress": (False, (C, ("currency", _currency))),
    "/balance": (False, (C,)),
    "/user-info": (False, (C,)),
    "/total-earned": (False, (C,)),
    "/total-spent": (False, (C,)),
    "/has-claimed-event": (False, (C, E)),
    "/last-activity": (False, (C,)),
    "/is-expired": (False, (C,)),
    "/event-allocation": (False, (E,)),
    "/set-event-details": (True, (E, ("allocation", _positive), ("should_not_claim_twice", _flag))),
    "/event-details": (False, (E,)),
    "/event-counter": (False, ()),
    "/event-by-index": (False, (("index", _index),)),
    "/token-info": (False, ()),
}


def _error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"error": message}, status=status, headers=headers)


def _cut(request: web.Request, *, reset: bool) -> web.Response:
    """Close the connection without an answer; with ``reset``, as a TCP reset."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if reset and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort() if reset else transport.close()
    return web.Response(status=200)  # never reaches the client: the transport is gone


def make_app(sandbox: Sandbox) -> web.Application:
    """The aiohttp application serving every endpoint of the Tokens API."""

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        route = ROUTES.get(path)
        if route is None:
            return _error(404, "Not found")
        is_write, fields = route
        if request.method != ("POST" if is_write else "GET"):
            return _error(405, "Method not allowed")
        auth = request.headers.get("Authorization", "")
        api_key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        business = sandbox.businesses.get(api_key)
        if business is None:
            return _error(401, "Unauthorized")
        if not business.linked:
            return _error(403, "Caller not authorized")
        rule = sandbox.faults.pick(path, is_write)
        if rule is not None and rule.before_commit:
            return _before_commit(request, rule)
        key = request.headers.get("Idempotency-Key")

        def apply(raw: dict[str, Any]) -> dict[str, Any]:
            params = {name: kind(raw[name]) if name in raw else _missing() for name, kind in fields}
            with localcontext() as ctx:
                ctx.prec = 80  # exact for 18 decimals on any realistic balance
                result = getattr(business, path.strip("/").replace("-", "_"))(**params)
            body: dict[str, Any] = result if isinstance(result, dict) else {}
            if is_write:
                tx_hash = None if body else Business.tx_hash()
                if tx_hash is not None:
                    body = {"tx_hash": tx_hash}
                sandbox.record(AppliedWrite(path, raw, tx_hash, sandbox.clock.now(), key, api_key))
            return body

        try:
            # The body is read first: the client may be gone by the time it is applied.
            raw = await _raw_params(request, is_write)
            if rule is not None and rule.mode == FaultMode.FAIL_THEN_COMMIT:
                late.start(rule, lambda: apply(raw))
                return _error(*rule.answer(), rule.retry_after)
            if rule is not None and rule.mode == FaultMode.COMMIT_LATE:
                await rule.hold()
            body = apply(raw)
        except Refusal as refusal:
            return _error(refusal.status, refusal.message)
        return await _after_commit(request, rule, body)

    late = _Late()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_response_prepare.append(_request_id)
    app.on_cleanup.append(late.cancel)
    return app


class _Late:
    """Writes a ``fail_then_commit`` fault applies after their answer has gone."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, rule: FaultRule, apply: Callable[[], object]) -> None:
        async def later() -> None:
            await rule.hold()
            with contextlib.suppress(Refusal):  # the backend refused it: nothing applied
                apply()

        task = asyncio.create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self, _: web.Application) -> None:
        """At shutdown: a write still held is never applied."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _request_id(_: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Request-Id", f"req_{secrets.token_hex(8)}")


def _missing() -> Any:
    raise invalid()


async def _raw_params(request: web.Request, is_write: bool) -> dict[str, Any]:
    if not is_write:
        return dict(request.query)
    body = await request.read()
    if not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"), parse_float=str, parse_int=int)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past the stack
        raise invalid() from None
    if not isinstance(data, dict):
        raise invalid()
    return data


def _before_commit(request: web.Request, rule: FaultRule) -> web.Response:
    if rule.mode == FaultMode.RESET:
        return _cut(request, reset=True)
    return _error(*rule.answer(), rule.retry_after)  # error, fail_before_commit


async def _after_commit(request: web.Request, rule: FaultRule | None, body: dict[str, Any]) -> web.StreamResponse:
    if rule is None or rule.mode == FaultMode.COMMIT_LATE:
        return web.json_response(body)
    if rule.mode == FaultMode.DROP_AFTER_COMMIT:
        return _cut(request, reset=False)
    if rule.mode == FaultMode.FAIL_AFTER_COMMIT:
        return _error(*rule.answer(), rule.retry_after)
    if rule.mode == FaultMode.GARBAGE:
        return web.Response(status=200, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
    await asyncio.sleep(rule.delay)
    return web.json_response(body)
