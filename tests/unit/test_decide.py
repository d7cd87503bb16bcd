"""The guard's decisions, as a table: every write kind, every answer, every verdict.

Each row is the specification of one case, written out by hand: what the guard does next
after an attempt came back with ``answer``, given whether an earlier attempt's outcome
was unknown, the verdict of the last verification (``-``: none made yet), whether that
read began while the attempt could still land, and whether retries are left. The two
last columns are the step for writes that would do harm twice, and for repeatable ones.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import attrs
import pytest

from shakesco_async.endpoints import ALL_ENDPOINTS
from shakesco_async.endpoints._proofs import Verdict, Verifier
from shakesco_async.guard._decide import (
    Answer,
    Finish,
    Situation,
    Step,
    StepKind,
    after_attempt,
    before_attempt,
    effective_verdict,
    reconcile_step,
)
from shakesco_async.guard._outcome import ReconcileOutcome
from shakesco_async.ledger import EntryState

A, V, K = Answer, Verdict, StepKind
ANY = "any"
EARLY, LATE = "early", "late"  # the verdict's read began before / after the attempt could land

# answer     earlier  verdict            read   retries  once-only kinds    repeatable kinds
TABLE: list[tuple[Answer, object, object, object, object, StepKind, StepKind]] = [
    (A.OK, ANY, None, ANY, ANY, K.COMMIT, K.COMMIT),
    # A definitive refusal is the key's answer, unless an earlier attempt may be why.
    (A.REFUSED, False, None, ANY, ANY, K.FAIL, K.FAIL),
    (A.REFUSED, True, None, ANY, ANY, K.CHECK_REFUSAL, K.CHECK_REFUSAL),
    (A.REFUSED, True, V.APPLIED, ANY, ANY, K.COMMIT_VERIFIED, K.COMMIT_VERIFIED),
    (A.REFUSED, True, V.NOT_APPLIED, ANY, ANY, K.FAIL, K.FAIL),
    (A.REFUSED, True, V.UNREADABLE, ANY, ANY, K.IN_DOUBT, K.FAIL),
    (A.REFUSED, True, V.UNEXPLAINED, ANY, ANY, K.IN_DOUBT, K.IN_DOUBT),
    # The API key was refused, not the write: not applied, and no use sending again now.
    (A.KEY_REFUSED, ANY, None, ANY, ANY, K.GIVE_UP, K.GIVE_UP),
    # Provably not applied: sent again while retries are left.
    (A.NOT_NOW, ANY, None, ANY, True, K.SEND_AGAIN, K.SEND_AGAIN),
    (A.NOT_NOW, ANY, None, ANY, False, K.GIVE_UP, K.GIVE_UP),
    (A.NOT_SENT, ANY, None, ANY, True, K.SEND_AGAIN, K.SEND_AGAIN),
    (A.NOT_SENT, ANY, None, ANY, False, K.GIVE_UP, K.GIVE_UP),
    # Unknown: read the state back; trust "not applied" only from a read begun once the
    # attempt could no longer land (a repeatable write is simply sent again).
    (A.UNKNOWN, ANY, None, ANY, ANY, K.VERIFY, K.VERIFY),
    (A.UNKNOWN, ANY, V.APPLIED, ANY, ANY, K.COMMIT_VERIFIED, K.COMMIT_VERIFIED),
    (A.UNKNOWN, ANY, V.NOT_APPLIED, EARLY, ANY, K.VERIFY, None),
    (A.UNKNOWN, ANY, V.NOT_APPLIED, LATE, True, K.SEND_AGAIN, K.SEND_AGAIN),
    (A.UNKNOWN, ANY, V.NOT_APPLIED, LATE, False, K.GIVE_UP, K.GIVE_UP),
    (A.UNKNOWN, ANY, V.NOT_APPLIED, EARLY, True, K.VERIFY, K.SEND_AGAIN),
    (A.UNKNOWN, ANY, V.NOT_APPLIED, EARLY, False, K.VERIFY, K.GIVE_UP),
    (A.UNKNOWN, ANY, V.UNREADABLE, EARLY, True, K.VERIFY, K.SEND_AGAIN),
    (A.UNKNOWN, ANY, V.UNREADABLE, EARLY, False, K.VERIFY, K.GIVE_UP),
    (A.UNKNOWN, ANY, V.UNREADABLE, LATE, True, K.IN_DOUBT, K.SEND_AGAIN),
    (A.UNKNOWN, ANY, V.UNREADABLE, LATE, False, K.IN_DOUBT, K.GIVE_UP),
    (A.UNKNOWN, ANY, V.UNEXPLAINED, EARLY, ANY, K.VERIFY, K.IN_DOUBT),
    (A.UNKNOWN, ANY, V.UNEXPLAINED, LATE, ANY, K.IN_DOUBT, K.IN_DOUBT),
]


class Kind(NamedTuple):
    name: str
    repeatable: bool


def _kinds() -> list[Kind]:
    kinds: list[Kind] = []
    for endpoint in ALL_ENDPOINTS:
        if endpoint.is_write:
            proof = endpoint.proof
            assert isinstance(proof, Verifier), f"{endpoint.path} declares no verifier"
            kinds.append(Kind(endpoint.path, proof.repeatable))
            if proof.one_time is not None:
                kinds.append(Kind(f"{endpoint.path} (one-time event)", proof.one_time.repeatable))
    return kinds


KINDS = _kinds()
TIMES = {"left_at": 100.0, "landing": 5.0}  # the attempt can land until t=105


def _expected(
    answer: Answer, earlier: bool, verdict: Verdict | None, read: str, retries: bool, repeatable: bool
) -> StepKind:
    found = [
        row
        for row in TABLE
        if row[0] == answer
        and row[1] in (ANY, earlier)
        and row[2] == verdict
        and row[3] in (ANY, read)
        and row[4] in (ANY, retries)
        and (row[6] if repeatable else row[5]) is not None
    ]
    assert found, f"no row for {answer}, {earlier}, {verdict}, {read}, {retries}"
    step = found[0][6] if repeatable else found[0][5]
    assert step is not None
    return step


def _cases() -> list[tuple[Kind, Answer, bool, Verdict | None, str, bool]]:
    cases = []
    for kind, answer, earlier, verdict, read, retries in itertools.product(
        KINDS, Answer, (False, True), (None, *Verdict), (EARLY, LATE), (True, False)
    ):
        # A verdict exists only where the guard reads: after an unknown outcome, or to
        # check a refusal that followed one.
        if verdict is not None and not (answer == A.UNKNOWN or (answer == A.REFUSED and earlier)):
            continue
        cases.append((kind, answer, earlier, verdict, read, retries))
    return cases


@pytest.mark.parametrize(("kind", "answer", "earlier", "verdict", "read", "retries"), _cases())
def test_every_kind_answer_and_verdict(
    kind: Kind, answer: Answer, earlier: bool, verdict: Verdict | None, read: str, retries: bool
) -> None:
    situation = Situation(
        answer,
        attempt=2,
        max_retries=3 if retries else 1,
        repeatable=kind.repeatable,
        earlier_unknown=earlier,
        verdict=None if verdict is None else effective_verdict(verdict, kind.repeatable),
        read_at=101.0 if read == EARLY else 105.0,
        now=102.0,
        verify_delay=0.5,
        **TIMES,
    )
    step = after_attempt(situation)
    assert step.kind == _expected(answer, earlier, verdict, read, retries, kind.repeatable)
    # Acting on what a read said needs the lease still held; the API's own answers do not.
    from_a_read = situation.verdict is not None and not (answer == A.REFUSED and situation.verdict == V.NOT_APPLIED)
    if step.kind in (K.COMMIT_VERIFIED, K.IN_DOUBT, K.SEND_AGAIN, K.GIVE_UP):
        assert step.confirm == from_a_read
    if step.kind == K.VERIFY:
        # First after verify_delay; again once the attempt can no longer land (t=105, now 102).
        assert step.wait == (0.5 if verdict is None else 3.0)
    assert step.late == (answer == A.REFUSED and step.kind in (K.COMMIT_VERIFIED, K.IN_DOUBT))


def test_every_kind_is_in_the_table() -> None:
    assert {k.repeatable for k in KINDS} == {True, False}
    assert len([k for k in KINDS if not k.name.endswith("event)")]) == 23


def test_a_rate_limit_passes_its_retry_after_on() -> None:
    step = after_attempt(Situation(A.NOT_NOW, 1, 3, False, False, retry_after=7.0))
    assert step == Step(K.SEND_AGAIN, retry_after=7.0)


@pytest.mark.parametrize(
    ("moved", "expected"),
    [
        (None, Step(K.SEND)),  # not comparable (a one-time claim's, a repeatable write's)
        (V.NOT_APPLIED, Step(K.SEND)),
        (V.APPLIED, Step(K.COMMIT_VERIFIED, confirm=True, late=True)),  # the earlier attempt landed
        (V.UNEXPLAINED, Step(K.IN_DOUBT, confirm=True, late=True)),
        (V.UNREADABLE, Step(K.IN_DOUBT, confirm=True, late=True)),
    ],
)
def test_before_sending_again_the_state_is_compared_with_the_first_snapshot(
    moved: Verdict | None, expected: Step
) -> None:
    assert before_attempt(moved) == expected


@pytest.mark.parametrize("verdict", list(Verdict))
def test_only_a_repeatable_write_turns_unreadable_into_send_again(verdict: Verdict) -> None:
    assert effective_verdict(verdict, False) == verdict
    assert effective_verdict(verdict, True) == (V.NOT_APPLIED if verdict == V.UNREADABLE else verdict)


@pytest.mark.parametrize("verdict", [V.NOT_APPLIED, V.UNREADABLE, V.UNEXPLAINED])
def test_a_verdict_read_after_waiting_for_the_landing_is_final(verdict: Verdict) -> None:
    """Even when the clock says the attempt could still land (a clock that did not move)."""
    situation = Situation(
        A.UNKNOWN, 1, 0, False, False, verdict=verdict, left_at=100.0, landing=5.0, now=101.0, read_at=101.0
    )
    assert after_attempt(situation).kind == K.VERIFY
    waited = after_attempt(attrs.evolve(situation, waited=True)).kind
    assert waited == (K.GIVE_UP if verdict == V.NOT_APPLIED else K.IN_DOUBT)


# -- reconcile: one open entry, leased ---------------------------------------------------------
S, F, R = EntryState, Finish, ReconcileOutcome
Row = tuple[EntryState, bool, bool, Verdict | None, str, str, Finish, ReconcileOutcome | None, EntryState | None]
FIELDS = ("state", "snapshot", "landed", "verdict", "key", "resend", "kind", "outcome", "records")
# state        snapshot landed  verdict         key        resend    → step, outcome, state recorded
RECONCILE: list[
    tuple[EntryState, bool, bool, Verdict | None, str, str, Finish, ReconcileOutcome | None, EntryState | None]
] = [
    # Maybe sent: judged only with a snapshot, and once its last request cannot land.
    (S.SENDING, False, True, None, "caller", "caller", F.REPORT, R.IN_DOUBT, None),
    (S.SENDING, True, False, None, "caller", "caller", F.REPORT, R.BUSY, None),
    (S.SENDING, True, True, None, "caller", "caller", F.JUDGE, None, None),
    (S.IN_DOUBT, True, True, None, "sdk", "none", F.JUDGE, None, None),
    (S.SENDING, True, True, V.APPLIED, "sdk", "none", F.RECORD, R.COMMITTED, S.COMMITTED),
    (S.IN_DOUBT, True, True, V.UNEXPLAINED, "caller", "all", F.RECORD, R.IN_DOUBT, S.IN_DOUBT),
    (S.SENDING, True, True, V.UNREADABLE, "caller", "caller", F.RECORD, R.IN_DOUBT, S.IN_DOUBT),
    # Proven not applied, or never sent: sent if the policy says so, else left or given up.
    (S.SENDING, True, True, V.NOT_APPLIED, "caller", "caller", F.SEND, None, None),
    (S.SENDING, True, True, V.NOT_APPLIED, "sdk", "caller", F.RECORD, R.ABANDONED, S.ABANDONED),
    (S.SENDING, True, True, V.NOT_APPLIED, "sdk", "all", F.SEND, None, None),
    (S.RECORDED, False, True, None, "caller", "caller", F.SEND, None, None),
    (S.RECORDED, False, True, None, "caller", "none", F.RECORD, R.NOT_APPLIED, S.RECORDED),
    (S.RECORDED, False, True, None, "sdk", "caller", F.RECORD, R.ABANDONED, S.ABANDONED),
    (S.RECORDED, False, True, None, "sdk", "all", F.SEND, None, None),
    # Staged: owed whoever made the key (it is recorded as the caller's); never given up here.
    (S.STAGED, False, True, None, "caller", "caller", F.SEND, None, None),
    (S.STAGED, False, True, None, "caller", "none", F.REPORT, R.NOT_APPLIED, None),
]


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(
    ("state", "snapshot", "landed", "verdict", "key", "resend", "kind", "outcome", "records"), RECONCILE
)
def test_reconcile_decides_each_entry_by_the_table(
    state: EntryState,
    snapshot: bool,
    landed: bool,
    verdict: Verdict | None,
    key: str,
    resend: str,
    kind: Finish,
    outcome: ReconcileOutcome | None,
    records: EntryState | None,
    dry_run: bool,
) -> None:
    step = reconcile_step(
        state=state,
        has_snapshot=snapshot,
        landed=landed,
        verdict=verdict,
        why="because",
        generated=key == "sdk",
        resend=resend,
        dry_run=dry_run,
    )
    if dry_run and kind == F.SEND:  # a dry run says what it would do, and sends nothing
        assert (step.kind, step.outcome) == (F.REPORT, R.RESENT)
        return
    assert (step.kind, step.outcome, step.state) == (kind, outcome, records)
