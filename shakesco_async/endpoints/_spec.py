"""How an endpoint is described: path, method, checked fields, result parser, customers."""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar

import attrs

from .._convert import converter
from .._errors import MalformedResponse, ValidationError
from .._models import Link, Receipt
from .._wire import WireValue
from ._proofs import Verifier

__all__ = ["Caller", "Endpoint", "Field", "link", "model", "read", "receipt", "single", "write"]

R = TypeVar("R")
T = TypeVar("T")
Check = Callable[[str, Any], WireValue]
Rule = Callable[[Mapping[str, WireValue]], None]
"""A check across fields, on their wire forms; raises ValidationError."""
# The docs call tx_hash an audit reference and show non-hex examples ("0xghi789..."): any
# short run of printable ASCII is one; an empty, long or odd value is not an answer.
_TX_HASH = re.compile(r"[\x21-\x7e]{1,256}")


@attrs.frozen
class Field:
    """One request field and the check that turns a Python value into its wire form."""

    name: str
    check: Check


@attrs.frozen
class Endpoint(Generic[R]):
    """One row of the API reference."""

    method: Literal["GET", "POST"]
    path: str
    fields: tuple[Field, ...]
    parse: Callable[[Any], R]
    customers: tuple[str, ...] = ()
    rule: Rule | None = None
    proof: Verifier | None = None
    """A write's verifier: how the guard tells whether it was applied."""

    @property
    def name(self) -> str:
        """The method name: the path with ``-`` turned into ``_``."""
        return self.path.strip("/").replace("-", "_")

    @property
    def is_write(self) -> bool:
        return self.method == "POST"

    def prepare(self, params: Mapping[str, Any]) -> dict[str, WireValue]:
        """Check every field; the result is what goes on the wire, in reference order."""
        unknown = set(params) - {f.name for f in self.fields}
        if unknown:
            raise ValidationError(f"{self.name}() got unexpected fields: {', '.join(sorted(unknown))}")
        wire = {f.name: f.check(f.name, params[f.name]) for f in self.fields}
        if self.rule is not None:
            self.rule(wire)
        return wire


def _endpoint(
    method: Literal["GET", "POST"],
    path: str,
    fields: tuple[tuple[str, Check], ...],
    parse: Callable[[Any], R],
    rule: Rule | None = None,
    proof: Verifier | None = None,
) -> Endpoint[R]:
    customers = tuple(name for name, _ in fields if name.endswith("customer_ref"))
    return Endpoint(method, path, tuple(Field(n, c) for n, c in fields), parse, customers, rule, proof)


def write(
    path: str, *fields: tuple[str, Check], parse: Callable[[Any], R], proof: Verifier, rule: Rule | None = None
) -> Endpoint[R]:
    """A POST endpoint, with the ``proof`` that tells whether it was applied (``_proofs``);
    ``rule`` checks its fields together."""
    return _endpoint("POST", path, fields, parse, rule, proof)


def read(path: str, *fields: tuple[str, Check], parse: Callable[[Any], R]) -> Endpoint[R]:
    """A GET endpoint."""
    return _endpoint("GET", path, fields, parse)


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MalformedResponse(f"expected a JSON object, got {type(data).__name__}")
    return data


def receipt(data: Any) -> Receipt:
    """``{"tx_hash": "0x..."}``; the value is kept as an opaque string."""
    tx_hash = _object(data).get("tx_hash")
    if not isinstance(tx_hash, str) or not _TX_HASH.fullmatch(tx_hash):
        raise MalformedResponse(f"response has no valid tx_hash: {tx_hash!r}")
    return Receipt(tx_hash=tx_hash)


def link(data: Any) -> Link:
    """``{"url": ..., "expires_at": ...}``."""
    return _structure(_object(data), Link)


def _structure(data: Any, cls: type[T]) -> T:
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # cattrs raises several exception types for one bad body
        raise MalformedResponse(f"cannot read {getattr(cls, '__name__', cls)} from response: {exc}") from None


def model(cls: type[T]) -> Callable[[Any], T]:
    """Parse the whole object into ``cls``."""
    return lambda data: _structure(_object(data), cls)


def single(field: str, cls: type[T]) -> Callable[[Any], T]:
    """Parse one field of the object as ``cls`` (the single-value reads)."""

    def parse(data: Any) -> T:
        obj = _object(data)
        if field not in obj:
            raise MalformedResponse(f"response has no {field!r}")
        return _structure(obj[field], cls)

    return parse


class Caller(abc.ABC):
    """What an endpoint group needs from the client: one way to send an endpoint."""

    @abc.abstractmethod
    async def _call(self, endpoint: Endpoint[R], /, *, idempotency_key: str | None = None, **params: Any) -> R:
        """Validate, send (guarded when it is a write) and parse."""
