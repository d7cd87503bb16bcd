"""Client settings from arguments and the environment, checked once at construction."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from typing import overload

import yarl

from ._errors import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LEDGER",
    "ApiKey",
    "resolve_api_key",
    "resolve_base_url",
    "resolve_ledger",
    "resolve_ledger_scope",
]

DEFAULT_BASE_URL = "https://tokens.shakesco.com"
DEFAULT_LEDGER = "shakesco-ledger.sqlite3"
DEFAULT_TIMEOUT = 30.0


class ApiKey:
    """Holds the API key so that it cannot leak through ``repr``, ``str`` or logging."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the Authorization header only."""
        return self._value

    @property
    def fingerprint(self) -> str:
        """A short one-way digest that names the business without exposing the key."""
        return hashlib.sha256(self._value.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"ApiKey(fingerprint={self.fingerprint!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("ApiKey cannot be pickled")


def resolve_api_key(api_key: str | None) -> ApiKey:
    value = api_key if api_key is not None else os.environ.get("SHAKESCO_API_KEY")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigurationError("no API key: pass api_key=... or set SHAKESCO_API_KEY")
    token = value.strip() if isinstance(value, str) else ""
    # It travels in a header: anything else fails at the first request, after an intent is recorded
    if not token or not (token.isascii() and token.isprintable()) or " " in token:
        raise ConfigurationError("the API key must be a single token of printable ASCII, without whitespace")
    return ApiKey(token)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")  # underscores too: containers' service names have them


def _resolvable(host: str) -> bool:
    """An IP address, or a name (``host`` as sent: IDNA, ASCII) of labels a resolver takes."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in host.removesuffix(".").split("."))


def _without_password(raw: str) -> str:
    """``raw`` for an error message, without what may stand before an ``@``: a password."""
    return repr(re.sub(r"//[^/]*@", "//***@", raw))


def resolve_base_url(base_url: str | None) -> yarl.URL:
    raw = base_url or os.environ.get("SHAKESCO_BASE_URL") or DEFAULT_BASE_URL
    if not isinstance(raw, str):
        raise ConfigurationError(f"base_url must be a string, got {type(raw).__name__}")
    try:
        url = yarl.URL(raw.rstrip("/"))
        host = url.host  # decoded from punycode: one that decodes to nothing raises here
    except ValueError as exc:  # a port out of range, a broken IPv6 literal, a host IDNA refuses
        raise ConfigurationError(f"base_url is not a URL ({exc}): {_without_password(raw)}") from None
    if url.scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"base_url must be an https:// URL, got {_without_password(raw)}")
    if not _resolvable(url.raw_host or ""):
        # Else the first request fails, for every write, in the resolver (a UnicodeError
        # aiohttp does not wrap) or as a host that cannot be found.
        raise ConfigurationError(f"base_url's host is not a host name or an IP address: {_without_password(raw)}")
    if url.scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(
            f"refusing plain http:// to {url.host!r}: the API key would travel unencrypted; "
            "use https://, or http:// only for a loopback sandbox"
        )
    if url.user or url.password or url.query_string or url.fragment:
        raise ConfigurationError("base_url must not carry credentials, a query or a fragment")
    return url


def resolve_timeout(timeout: object) -> object:
    """``timeout``, else env ``SHAKESCO_TIMEOUT`` (seconds), else 30 s; checked by the client."""
    if timeout is not None:
        return timeout
    raw = os.environ.get("SHAKESCO_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"SHAKESCO_TIMEOUT must be a number of seconds, got {raw!r}") from None


def resolve_ledger(ledger: object) -> object:
    """``ledger``, else env ``SHAKESCO_LEDGER`` (empty counts as unset), else the default file."""
    return ledger if ledger is not None else os.environ.get("SHAKESCO_LEDGER", "").strip() or DEFAULT_LEDGER


@overload
def resolve_ledger_scope(scope: object, api_key: ApiKey) -> str: ...
@overload
def resolve_ledger_scope(scope: object, api_key: None) -> str | None: ...
@overload
def resolve_ledger_scope(scope: object, api_key: ApiKey | None) -> str | None: ...
def resolve_ledger_scope(scope: object, api_key: ApiKey | None) -> str | None:
    """The name a client's entries are kept under in the ledger: ``scope``, else env
    ``SHAKESCO_LEDGER_SCOPE``, else the API key's fingerprint (None without a key).

    A name of your own survives a rotation of the API key: the new key sees the entries
    and idempotency keys the old one made. It must be the business's alone.
    """
    value = scope if scope is not None else (os.environ.get("SHAKESCO_LEDGER_SCOPE") or None)
    if value is None:
        return None if api_key is None else api_key.fingerprint
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > _MAX_SCOPE
        or not value.isprintable()
        or value == "*"
    ):
        raise ConfigurationError(f"ledger_scope must be a printable name of 1 to {_MAX_SCOPE} characters, not '*'")
    if api_key is not None and value.strip() == api_key.reveal():
        # The scope is written into every ledger row; the key must never be.
        raise ConfigurationError("ledger_scope must not be the API key: pick a name of your own")
    return value


_MAX_SCOPE = 128
