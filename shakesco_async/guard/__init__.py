"""The write guard: at-most-once writes, verified before any retry."""

from __future__ import annotations

from ._settings import GuardSettings
from ._verify import VERIFIERS, Judgement, Verdict
from ._wrapper import WriteGuard

__all__ = ["VERIFIERS", "GuardSettings", "Judgement", "Verdict", "WriteGuard"]
