"""Transfers between customers and migration to and from the Shakesco app."""

from __future__ import annotations

from collections.abc import Mapping

from .. import _validate as v
from .._errors import ValidationError
from .._models import Link, Receipt
from .._wire import WireValue
from . import _proofs as proofs
from ._spec import Caller, link, receipt, write
from ._types import Amount


def _two_customers(wire: Mapping[str, WireValue]) -> None:
    # Both balances are one balance then: no read could tell whether it was applied.
    if wire["from_customer_ref"] == wire["to_customer_ref"]:
        raise ValidationError("transfer_tokens() needs two different customers")


TRANSFER_TOKENS = write(
    "/transfer-tokens",
    ("from_customer_ref", v.customer_ref),
    ("to_customer_ref", v.customer_ref),
    ("amount", v.amount),
    parse=receipt,
    proof=proofs.TRANSFER,
    rule=_two_customers,
)
UPGRADE_TO_SHAKESCO = write(
    "/upgrade-to-shakesco", ("customer_ref", v.customer_ref), ("amount", v.amount), parse=receipt, proof=proofs.UPGRADE
)
RECEIVE_FROM_SHAKESCO = write(
    "/receive-from-shakesco",
    ("customer_ref", v.customer_ref),
    ("amount", v.amount),
    parse=link,
    proof=proofs.REPEATABLE,
)


class TransferEndpoints(Caller):
    async def transfer_tokens(
        self, from_customer_ref: str, to_customer_ref: str, amount: Amount, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Move tokens from one customer to another."""
        return await self._call(
            TRANSFER_TOKENS,
            from_customer_ref=from_customer_ref,
            to_customer_ref=to_customer_ref,
            amount=amount,
            idempotency_key=idempotency_key,
        )

    async def upgrade_to_shakesco(
        self, customer_ref: str, amount: Amount, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Migrate a legacy balance, once per customer (EventAlreadyClaimed the second time)."""
        return await self._call(
            UPGRADE_TO_SHAKESCO, customer_ref=customer_ref, amount=amount, idempotency_key=idempotency_key
        )

    async def receive_from_shakesco(
        self, customer_ref: str, amount: Amount, *, idempotency_key: str | None = None
    ) -> Link:
        """A link (valid 30 minutes) to receive tokens from the Shakesco app."""
        return await self._call(
            RECEIVE_FROM_SHAKESCO, customer_ref=customer_ref, amount=amount, idempotency_key=idempotency_key
        )
