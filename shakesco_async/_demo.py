"""The README's demo: the client against an in-process sandbox, including a lost answer."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ._client import ShakescoClient
from .guard import GuardSettings
from .sandbox import Sandbox

__all__ = ["run_demo"]


def _say(text: str = "") -> None:
    print(text, flush=True)


async def run_demo() -> int:
    """Award, redeem, lose a response on purpose, and show the guard proving what happened."""
    with tempfile.TemporaryDirectory() as workdir:
        async with Sandbox() as sandbox:
            ledger = Path(workdir) / "demo-ledger.sqlite3"
            _say(f"Sandbox Tokens API on {sandbox.base_url} (demo key, nothing leaves this machine)")
            # The sandbox answers in milliseconds: a 1 s timeout keeps the waits below short.
            async with ShakescoClient(
                sandbox.api_key,
                base_url=sandbox.base_url,
                ledger=ledger,
                timeout=1.0,
                guard=GuardSettings(verify_delay=0.2),
            ) as client:
                await client.set_event_details("signup", 50, True)
                await client.set_event_details("purchase", "12.5", False)
                _say("Configured events: signup (50, one-time), purchase (12.5)")

                first = await client.claim_tokens("signup", "alice", idempotency_key="signup:alice")
                _say(f"alice claims signup          -> tx {first.tx_hash}")
                await client.claim_tokens("purchase", "bob", idempotency_key="order:1000")
                await client.redeem_tokens("alice", "20", idempotency_key="coffee:alice:1")
                _say(
                    f"bob earns 12.5; alice redeems 20 -> alice {await client.balance('alice')}, "
                    f"bob {await client.balance('bob')}"
                )

                again = await client.claim_tokens("signup", "alice", idempotency_key="signup:alice")
                _say(f"same key again               -> replayed={again.replayed}, nothing sent")

                _say()
                _say("Now the API applies alice's next purchase but the connection drops before the answer.")
                sandbox.faults.add("drop_after_commit", endpoint="/claim-tokens", count=1)
                before = await client.balance("alice")
                receipt = await client.claim_tokens("purchase", "alice", idempotency_key="order:1001")
                applied = len(sandbox.applied_writes("/claim-tokens", idempotency_key="order:1001"))
                _say("the guard did not retry blindly: it read total_earned back and found the credit")
                _say(f"receipt: verified={receipt.verified}, tx_hash={receipt.tx_hash} (the answer was lost)")
                _say(f"alice {before} -> {await client.balance('alice')}; times the API applied it: {applied}")

                _say()
                _say("A 502 before anything was applied: the guard reads back at once, and again once the")
                _say("request can no longer land (timeout + verify_delay after it left); then sends it once more.")
                sandbox.faults.add("fail_before_commit", endpoint="/redeem-tokens", count=1)
                receipt = await client.redeem_tokens("alice", 5, idempotency_key="coffee:alice:2")
                applied = len(sandbox.applied_writes("/redeem-tokens", idempotency_key="coffee:alice:2"))
                _say(f"receipt tx {receipt.tx_hash}; times applied: {applied}; alice {await client.balance('alice')}")

                _say()
                _say("A 502 from a gateway while the API carries the redeem out half a second later:")
                sandbox.faults.add("fail_then_commit", endpoint="/redeem-tokens", count=1, delay=0.5)
                receipt = await client.redeem_tokens("alice", 5, idempotency_key="coffee:alice:3")
                applied = len(sandbox.applied_writes("/redeem-tokens", idempotency_key="coffee:alice:3"))
                _say(
                    f"receipt: verified={receipt.verified}; times applied: {applied}"
                    " (sent again at once, it would be 2)"
                )

                counts = {state.value: n for state, n in (await client.ledger.counts()).items() if n}
                _say()
                _say(f"ledger: {counts}")
                double = [w for w in sandbox.applied if w.idempotency_key]
                keys = [w.idempotency_key for w in double]
                ok = len(keys) == len(set(keys))
                _say("every idempotency key applied at most once: " + ("yes" if ok else "NO"))
                return 0 if ok else 1
