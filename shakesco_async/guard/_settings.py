"""Knobs of the write guard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs

from .._errors import ConfigurationError
from .._validate import seconds

__all__ = ["GuardSettings"]


def _seconds(*, positive: bool = False) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """A finite number of seconds, not negative: an infinite lease would outlive a crash for ever."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        seconds(attribute.name, value, positive=positive)

    return check


@attrs.frozen
class GuardSettings:
    """How the write guard trades speed for certainty.

    - ``synchronous``: "FULL" (default) makes each ledger commit survive power loss.
      "NORMAL" survives process crashes but a power cut may lose the last commits,
      and with them the record that a write was about to be sent.
    - ``verify_delay``: seconds to wait after an unknown outcome before reading state
      back, so that a request still being processed by the API lands first.
    - ``lease_ttl``: seconds a customer lease outlives a crashed process the ledger cannot
      see exit (PostgreSQL's locks, and SQLite's leases on Linux, end with it); by default
      long enough for a write with all its retries and verification reads. It must be
      longer than the client's ``timeout`` plus ``verify_delay``: a lease that lapses
      while a write is in flight lets another process judge it, or send it again.
    - ``lease_wait``: how long a write waits for another process's lease on its
      customer before giving up (default: ``lease_ttl`` plus a margin).
    - ``event_ttl``: seconds an event's one-time flag, read once, is trusted. A claim of a
      one-time event then needs no pre-send read (``/has-claimed-event`` settles it);
      verification reads the flag again. 0 reads customer state before every claim.
    """

    synchronous: Literal["FULL", "NORMAL"] = attrs.field(
        default="FULL", validator=attrs.validators.in_(("FULL", "NORMAL"))
    )
    verify_delay: float = attrs.field(default=1.0, validator=_seconds())
    lease_ttl: float | None = attrs.field(default=None, validator=attrs.validators.optional(_seconds(positive=True)))
    lease_wait: float | None = attrs.field(default=None, validator=attrs.validators.optional(_seconds()))
    event_ttl: float = attrs.field(default=60.0, validator=_seconds())

    def check(self, timeout: float) -> None:
        """Refuse settings under which a lease could lapse while its write is in flight."""
        if self.lease_ttl is not None and not self.lease_slack(timeout, 0) > 0:
            raise ConfigurationError(
                f"lease_ttl ({self.lease_ttl:g} s) must be longer than the client's timeout plus"
                f" verify_delay ({timeout:g} + {self.verify_delay:g} s), or another process may judge"
                " a write while it is still in flight"
            )

    def resolved_lease_ttl(self, timeout: float, max_retries: int) -> float:
        """``lease_ttl``, or by default one sized for a client's timeout and retries."""
        if self.lease_ttl is not None:
            return self.lease_ttl
        # Each attempt: the send, the verify delay and a few verification reads.
        return (timeout * 4 + self.verify_delay) * (max_retries + 1) + 10.0

    def lease_slack(self, timeout: float, max_retries: int) -> float:
        """How long a lease may have run when its request leaves and still outlast it, the
        wait before verifying included."""
        return self.resolved_lease_ttl(timeout, max_retries) - timeout - self.verify_delay

    def resolved_lease_wait(self, timeout: float, max_retries: int) -> float:
        """``lease_wait``, or by default as long as a lease can last, and five seconds."""
        if self.lease_wait is not None:
            return self.lease_wait
        return self.resolved_lease_ttl(timeout, max_retries) + 5.0
