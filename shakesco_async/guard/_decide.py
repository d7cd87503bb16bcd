"""The guard's choices during one write's sends, as a pure function.

``after_attempt`` gets what the driver knows once an attempt has been answered (or not)
and returns the one next step; the driver (``_wrapper``) performs it, learns something
(a verification's verdict) and asks again. No I/O and no clock here: every time arrives
as a number, so the whole of it is tested as a table (``tests/unit/test_decide.py``).

The invariants it keeps:

- A write is sent again only once an attempt is *proven* not applied: refused for now,
  never sent, or verified not applied after it can no longer land.
- A verdict read from the API is acted on only while the lease is still held
  (``Step.confirm``): read while another process wrote the customer, it says nothing.
- Once an attempt's outcome was unknown, a later refusal ("already claimed",
  "insufficient balance") may be that attempt landing late: it is checked against the
  first snapshot before it counts as the write's answer.
"""

from __future__ import annotations

import enum

import attrs

from ..endpoints._proofs import Verdict
from ..ledger._entry import MAYBE_SENT, EntryState
from ._outcome import ReconcileOutcome

__all__ = [
    "Answer",
    "Finish",
    "ReconcileStep",
    "Situation",
    "Step",
    "StepKind",
    "after_attempt",
    "before_attempt",
    "effective_verdict",
    "reconcile_step",
]


class Answer(enum.Enum):
    """What one attempt's request came back with, as far as applying goes."""

    OK = "ok"
    """200: applied, with the API's receipt."""
    REFUSED = "refused"
    """A definitive 4xx: not applied, and the key's final answer."""
    KEY_REFUSED = "key_refused"
    """401/403: the API key was refused, not the write; not applied."""
    NOT_NOW = "not_now"
    """A rate limit: provably not applied, may pass later."""
    NOT_SENT = "not_sent"
    """The request never left (connection refused)."""
    UNKNOWN = "unknown"
    """A 5xx, a redirect, a timeout, a dropped connection, an unreadable body."""


class StepKind(enum.Enum):
    COMMIT = "commit"
    """Record the API's receipt; return it."""
    COMMIT_VERIFIED = "commit_verified"
    """Record it applied, as verified by reading state; return a verified receipt."""
    FAIL = "fail"
    """Record the refusal as the key's answer; raise it."""
    GIVE_UP = "give_up"
    """Record it given up (proven not applied); raise the attempt's error."""
    IN_DOUBT = "in_doubt"
    """Record it in doubt; raise ``OutcomeUnknown``."""
    VERIFY = "verify"
    """Wait ``wait`` seconds, read the state, judge it against the attempt's snapshot."""
    CHECK_REFUSAL = "check_refusal"
    """Judge the state now against the first attempt's snapshot."""
    SEND_AGAIN = "send_again"
    """Wait ``wait`` seconds, then the next attempt."""
    SEND = "send"
    """(Before an attempt) send it."""


@attrs.frozen
class Step:
    kind: StepKind
    wait: float = 0.0
    """Seconds to wait first (VERIFY)."""
    retry_after: float | None = None
    """SEND_AGAIN: the API's Retry-After, else the driver's jittered backoff sets the wait."""
    confirm: bool = False
    """The step rests on a read verdict: confirm the lease is still held before it."""
    late: bool = False
    """Applied by an attempt that had been verified not applied (logged as such)."""
    why: str = ""


@attrs.frozen
class Situation:
    """What the driver knows after attempt number ``attempt`` (1-based)."""

    answer: Answer
    attempt: int
    max_retries: int
    repeatable: bool
    """The write leaves the same state when sent again (configuration, links)."""
    earlier_unknown: bool
    """An earlier attempt of this call had an unknown outcome (it may still land)."""
    verdict: Verdict | None = None
    """The last verification's, for this attempt; None before one was made."""
    left_at: float = 0.0
    """When (monotonic) the attempt's request left."""
    landing: float = 0.0
    """Seconds after it left by which an attempt has landed or never will."""
    now: float = 0.0
    read_at: float = 0.0
    """When the read behind ``verdict`` began."""
    waited: bool = False
    """``verdict`` was read after waiting for the attempt to land (a ``VERIFY`` step
    with ``why``): it is final, even on a clock that did not move meanwhile."""
    verify_delay: float = 0.0
    retry_after: float | None = None
    """The API's Retry-After, with a refusal for now."""


def effective_verdict(verdict: Verdict, repeatable: bool) -> Verdict:
    """A repeatable write whose state cannot be read is simply sent again."""
    return Verdict.NOT_APPLIED if verdict == Verdict.UNREADABLE and repeatable else verdict


def before_attempt(moved: Verdict | None) -> Step:
    """Before sending again after an unknown outcome: ``moved`` is the new snapshot judged
    against the first one (None when not comparable). Moved as the write explains, the
    earlier attempt landed; moved otherwise, nothing can be sent safely."""
    if moved is None or moved == Verdict.NOT_APPLIED:
        return Step(StepKind.SEND)
    if moved == Verdict.APPLIED:
        return Step(StepKind.COMMIT_VERIFIED, confirm=True, late=True)
    return Step(StepKind.IN_DOUBT, confirm=True, late=True)


def after_attempt(s: Situation) -> Step:
    """The next step after an attempt, given what is known so far."""
    if s.answer == Answer.OK:
        return Step(StepKind.COMMIT)
    if s.answer == Answer.REFUSED:
        return _after_refusal(s)
    if s.answer == Answer.KEY_REFUSED:
        return Step(StepKind.GIVE_UP, why="the API refused the key")
    if s.answer in (Answer.NOT_NOW, Answer.NOT_SENT):
        return _again_or_give_up(s, confirm=False)
    return _after_unknown(s)


def _after_refusal(s: Situation) -> Step:
    if not s.earlier_unknown:
        return Step(StepKind.FAIL)
    if s.verdict is None:
        return Step(StepKind.CHECK_REFUSAL)
    if s.verdict == Verdict.NOT_APPLIED:
        return Step(StepKind.FAIL)  # the refusal is the API's own answer: no read needed to act on it
    return _verdict_step(s.verdict, late=True)


def _after_unknown(s: Situation) -> Step:
    if s.verdict is None:
        return Step(StepKind.VERIFY, wait=s.verify_delay)
    if s.verdict == Verdict.APPLIED:
        return _verdict_step(s.verdict, late=False)
    lands_by = s.left_at + s.landing
    if not s.waited and s.read_at < lands_by and not s.repeatable:
        # Not seen applied by a read that began while the attempt could still land: a
        # gateway's 502 or a dropped connection does not mean the API is done with it.
        # Read again once it cannot.
        return Step(StepKind.VERIFY, wait=max(0.0, lands_by - s.now), why="it may still land")
    if s.verdict == Verdict.NOT_APPLIED:
        return _again_or_give_up(s, confirm=True)
    return _verdict_step(s.verdict, late=False)


def _verdict_step(verdict: Verdict, *, late: bool) -> Step:
    if verdict == Verdict.APPLIED:
        return Step(StepKind.COMMIT_VERIFIED, confirm=True, late=late)
    return Step(StepKind.IN_DOUBT, confirm=True, late=late)


def _again_or_give_up(s: Situation, *, confirm: bool) -> Step:
    """Proven not applied: sending again cannot apply it twice, while retries are left."""
    if s.attempt > s.max_retries:
        return Step(StepKind.GIVE_UP, confirm=confirm, why=f"not applied after {s.attempt} attempts")
    return Step(StepKind.SEND_AGAIN, retry_after=s.retry_after, confirm=confirm)


# -- reconcile: one open entry, its customers leased -----------------------------------------
class Finish(enum.Enum):
    REPORT = "report"
    """Record nothing: report ``outcome``."""
    JUDGE = "judge"
    """Read the state back and judge it (then ask again, with the verdict)."""
    RECORD = "record"
    """Record ``state`` (not in a dry run), then report ``outcome``."""
    SEND = "send"
    """Proven not sent, or not applied, and owed: send it through the guard."""


@attrs.frozen
class ReconcileStep:
    kind: Finish
    outcome: ReconcileOutcome | None = None
    detail: str = ""
    state: EntryState | None = None


def reconcile_step(
    *,
    state: EntryState,
    has_snapshot: bool,
    landed: bool,
    verdict: Verdict | None,
    why: str,
    generated: bool,
    resend: str,
    dry_run: bool,
) -> ReconcileStep:
    """What reconcile does next with an open entry: ``landed`` says its last request can no
    longer be on its way; ``verdict`` (and ``why``), the judgement once one was made;
    ``generated``, whether the SDK made its key."""
    if state in MAYBE_SENT:
        if not has_snapshot:
            return ReconcileStep(Finish.REPORT, ReconcileOutcome.IN_DOUBT, why or "no usable snapshot; resolve by hand")
        if not landed:
            return ReconcileStep(Finish.REPORT, ReconcileOutcome.BUSY, "its last request may still be on its way")
        if verdict is None:
            return ReconcileStep(Finish.JUDGE)
        if verdict == Verdict.APPLIED:
            return ReconcileStep(Finish.RECORD, ReconcileOutcome.COMMITTED, "verified applied", EntryState.COMMITTED)
        if verdict != Verdict.NOT_APPLIED:
            return ReconcileStep(Finish.RECORD, ReconcileOutcome.IN_DOUBT, why, EntryState.IN_DOUBT)
    if state == EntryState.STAGED and resend == "none":
        return ReconcileStep(Finish.REPORT, ReconcileOutcome.NOT_APPLIED, "staged; not sent (resend='none')")
    if not (resend == "all" or (resend == "caller" and not generated)):
        # Not sent by this pass: an SDK-made key is given up (its caller may have retried
        # under another); the caller's stays open for the caller, or a pass that sends.
        if generated:
            return ReconcileStep(
                Finish.RECORD, ReconcileOutcome.ABANDONED, "provably not applied", EntryState.ABANDONED
            )
        return ReconcileStep(Finish.RECORD, ReconcileOutcome.NOT_APPLIED, "provably not applied", EntryState.RECORDED)
    if dry_run:
        return ReconcileStep(Finish.REPORT, ReconcileOutcome.RESENT, "provably not applied; would be sent again")
    return ReconcileStep(Finish.SEND)
