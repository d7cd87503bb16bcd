"""The HTTP boundary: one pooled aiohttp session, one request at a time, no retries.

Everything above this module deals in ``Response`` objects and SDK exceptions; nothing
above it touches aiohttp.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import platform
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs
import yarl

from ._config import ApiKey
from ._errors import ConfigurationError, MalformedResponse, ShakescoError, TransportError, TransportTimeout
from ._retry import parse_retry_after
from ._wire import WireValue, encode_body, encode_query

__all__ = ["Response", "Transport", "user_agent"]

log = logging.getLogger("shakesco_async")


# A caller's session may carry middlewares (aiohttp 3.12+) that send a request again, as
# the retry middleware of aiohttp's own cookbook does on a 5xx: behind the guard's back,
# that is a write applied twice. The SDK's requests run without them.
_NO_MIDDLEWARES: dict[str, Any] = {"middlewares": ()} if hasattr(aiohttp, "ClientMiddlewareType") else {}
# Before 3.12, a session made with base_url= asserts that every URL is relative to it.
_BASE_URL_ASSERTS = tuple(int(part) for part in aiohttp.__version__.split(".")[:2]) < (3, 12)
_POOL = 100  # connections of the SDK's own session
_UNLIMITED = 1 << 30  # a pool without a limit never makes a request wait


def _slots(session: aiohttp.ClientSession) -> int:
    """Requests that may be under way at once without waiting in aiohttp's pool."""
    connector = session.connector
    limits = [n for n in (connector.limit, connector.limit_per_host) if n] if connector is not None else []
    return min(limits, default=_UNLIMITED)


def _budget(seconds: float) -> aiohttp.ClientTimeout:
    """The whole exchange within ``seconds``; the connection, a little sooner.

    A timeout that strikes before the connection is made (DNS, TCP or TLS handshake,
    aiohttp's pool) is then aiohttp's connect timeout, which proves nothing was sent,
    rather than the total one, which proves nothing. No rounding of either deadline to
    whole seconds (aiohttp's default above 5 s), which could put them in either order.
    """
    return aiohttp.ClientTimeout(total=seconds, connect=seconds - _margin(seconds), ceil_threshold=math.inf)


def _margin(seconds: float) -> float:
    """5% of a timeout, at most a second: how much sooner a connection must be made, and
    the least a request queued for one must have left to be sent at all."""
    return min(seconds * 0.05, 1.0)


_SECRET_MIN = 8


def user_agent(version: str) -> str:
    return f"shakesco-async/{version} python/{platform.python_version()} aiohttp/{aiohttp.__version__}"


class _Pool:
    """The connections one client's transports share (a client and its ``with_options``
    copies): the session, the gate on its connections, URLs already built."""

    __slots__ = ("closed", "gate", "owns_session", "session", "texts", "urls")

    def __init__(self, session: aiohttp.ClientSession | None) -> None:
        self.session = session
        self.gate: asyncio.Semaphore | None = None
        self.owns_session = session is None
        self.closed = False
        self.urls: dict[str, yarl.URL] = {}
        self.texts: dict[str, str] = {}  # the same, encoded, for a query to follow


@attrs.frozen
class Response:
    """An HTTP answer, whatever its status."""

    status: int
    text: str
    retry_after: float | None = None
    request_id: str | None = None


class Transport:
    """Sends one request and returns its answer, or raises TransportError."""

    def __init__(
        self,
        base_url: yarl.URL,
        api_key: ApiKey,
        *,
        timeout: float,
        version: str,
        session: aiohttp.ClientSession | None = None,
        max_body: int = 1 << 20,
    ) -> None:
        if session is not None and session.auth is not None:
            # aiohttp refuses every request that has both: fail here, before anything is recorded
            raise ConfigurationError("the session= passed has its own auth; the SDK sends the API key itself")
        if session is not None and _BASE_URL_ASSERTS and getattr(session, "_base_url", None) is not None:
            raise ConfigurationError(
                f"the session= passed was made with base_url=, and aiohttp {aiohttp.__version__} sends nothing"
                " else through it (AssertionError): pass a session without base_url, or use aiohttp 3.12+"
            )
        self._base_url = base_url
        self._api_key = api_key
        self._seconds = timeout
        self._timeout = _budget(timeout)
        self._pool = _Pool(session)
        self._user_agent = user_agent(version)
        self._max_body = max_body

    def with_timeout(self, timeout: float) -> Transport:
        """A transport with another timeout, on this one's connections."""
        other = copy.copy(self)
        other._seconds = timeout
        other._timeout = _budget(timeout)
        return other

    def _get_session(self) -> aiohttp.ClientSession:
        pool = self._pool
        if pool.closed:
            raise TransportError("the client is closed", sent=False)
        if pool.session is None:
            pool.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=_POOL))
        elif pool.session.closed:
            raise TransportError("the HTTP session passed as session= is closed", sent=False)
        if pool.gate is None:
            pool.gate = asyncio.Semaphore(_slots(pool.session))
        return pool.session

    async def send(
        self,
        method: str,
        path: str,
        *,
        fields: Mapping[str, WireValue],
        idempotency_key: str | None = None,
    ) -> Response:
        """One HTTP exchange. ``TransportError.sent`` tells whether the request may have left."""
        session = self._get_session()
        headers = {
            "Authorization": f"Bearer {self._api_key.reveal()}",
            "User-Agent": self._user_agent,
            "Accept": "application/json",
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        urls = self._pool.urls
        url = urls.get(path)
        if url is None:  # building a URL is costly next to a loopback request; paths are few
            url = urls[path] = self._base_url.with_path(self._base_url.path.rstrip("/") + path)
            self._pool.texts[path] = str(url)
        data: bytes | None = None
        if method == "POST":
            headers["Content-Type"] = "application/json"
            data = encode_body(fields)
        elif fields:  # encoded here, not by yarl, which writes a space as "+"
            url = yarl.URL(f"{self._pool.texts[path]}?{encode_query(fields)}", encoded=True)
        started = time.perf_counter()
        timeout = await self._take_slot(method, path, started)
        try:
            # A caller's session may raise for status, follow redirects or retry in its
            # middlewares: every request and answer is ours alone.
            async with session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                raise_for_status=False,
                **_NO_MIDDLEWARES,
            ) as resp:
                # JSON is UTF-8 (RFC 8259): no charset sniffing
                text = (await _read_capped(resp, self._max_body, method, path)).decode("utf-8", errors="replace")
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                request_id = resp.headers.get("X-Request-Id") or resp.headers.get("Request-Id")
        except aiohttp.ConnectionTimeoutError as exc:
            raise TransportTimeout(f"{method} {path}: timed out connecting", sent=False) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TransportTimeout(f"{method} {path}: timed out waiting for the answer", sent=None) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(f"{method} {path}: cannot connect ({exc.os_error})", sent=False) from exc
        except (aiohttp.ClientError, OSError) as exc:
            _scrub(exc)
            raise TransportError(f"{method} {path}: connection lost ({type(exc).__name__})", sent=None) from exc
        except ShakescoError:
            raise  # ours, from reading the answer (a body over the cap)
        except Exception as exc:
            # Anything else aiohttp or the resolver let through (a UnicodeError from a name
            # the resolver refuses, say) is still a failure of this exchange, and where it
            # struck is unknown: the request may have left. Not chained: its text is shown
            # without the key, and its arguments might carry the request's headers.
            shown = self._unechoed(str(exc))[:200]
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {shown}", sent=None) from None
        finally:
            assert self._pool.gate is not None
            self._pool.gate.release()
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.debug("%s %s -> %d in %.1f ms", method, path, status, elapsed_ms)
        return Response(
            status, self._unechoed(text), retry_after, self._unechoed(request_id[:200]) if request_id else None
        )

    def _unechoed(self, answer: str) -> str:
        """``answer`` without the API key: a proxy or a misconfigured API may echo the
        request's headers, and what an answer says goes into errors, logs and the ledger.
        (A key shorter than 8 characters is no real key: its letters are left alone.)"""
        secret = self._api_key.reveal()
        return answer.replace(secret, "***") if len(secret) >= _SECRET_MIN and secret in answer else answer

    async def _take_slot(self, method: str, path: str, started: float) -> aiohttp.ClientTimeout:
        """Wait for one of the pool's connections; returns what is left of the request's timeout.

        aiohttp counts a wait for a pooled connection in the request's timeout, and a
        timeout there looks like one waiting for the answer. Queued here instead, a
        request that never got a connection is known not to have left (``sent=False``):
        under a burst, the guard then sends it again instead of reading back every one.
        """
        gate = self._pool.gate
        assert gate is not None
        if not gate.locked():
            await gate.acquire()  # returns at once: no timer to start
            return self._timeout
        unsent = TransportTimeout(f"{method} {path}: timed out waiting for a free connection", sent=False)
        try:
            async with asyncio.timeout(self._seconds):
                await gate.acquire()
        except TimeoutError:
            raise unsent from None
        left = self._seconds - (time.perf_counter() - started)
        if left < _margin(self._seconds):
            # Sent with a sliver of its timeout, a request would most likely time out once
            # it had left: an unknown outcome, where it is now surely not sent.
            gate.release()
            raise unsent
        return _budget(left)

    async def aclose(self) -> None:
        pool = self._pool
        pool.closed = True
        if pool.session is not None and pool.owns_session:
            await pool.session.close()
        pool.session = None

    def __repr__(self) -> str:
        return f"Transport(base_url={str(self._base_url)!r})"


async def _read_capped(resp: aiohttp.ClientResponse, limit: int, method: str, path: str) -> bytes:
    """The body, read a chunk at a time and never past ``limit`` bytes (after decompression):
    memory stays bounded whatever the server sends. Past it, the connection is closed."""
    length = resp.content_length
    chunks: list[bytes] = []
    total = 0
    if length is None or length <= limit:
        async for chunk in resp.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > limit:
                break
            chunks.append(chunk)
        else:
            return b"".join(chunks)
    resp.close()  # the rest is never read: the connection cannot be reused
    raise MalformedResponse(
        f"{method} {path} answered {resp.status} with a body over the {limit}-byte limit (max_response_bytes)"
    )


def _scrub(exc: BaseException) -> None:
    """Take the API key out of an aiohttp error that keeps the request's headers (in its
    repr and args), so the error can stay chained to ours for debugging."""
    if isinstance(exc, aiohttp.ClientResponseError):
        info = exc.request_info
        kept = info.headers.copy()  # a mutable CIMultiDict (aiohttp's own dependency)
        kept.popall("Authorization", None)
        clean = type(info)(info.url, info.method, type(info.headers)(kept), info.real_url)
        exc.request_info = clean
        exc.args = (clean, *exc.args[1:])
