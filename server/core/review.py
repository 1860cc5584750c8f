"""The human review queue: the last escalation tier, where a person answers what no model could.

A bundle whose ``escalation:`` ends in ``kind: review`` sends a request the other tiers could not answer
to the queue: the cascade opens a case holding the input, the answer the caller got, the reasons, the
verifier results and every tier's answer. A reviewer claims it under a lease (a reviewer who walks away
returns it to the queue when the lease expires), then resolves it with the truth, which is recorded as
Feedback on the request (so accuracy tallies count reviewed cases), or dismisses it.

The case lives in the store, so any worker or replica serves the queue, and a caller may wait for the
answer (``wait``) on another connection than the one that predicted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.errors import CaseNotFoundError, CaseStateError, InvalidInputError, echoed, printable
from smallguard.server.domain.judge import judge
from smallguard.server.domain.predictions import (
    Decision,
    PredictCall,
    PredictOutcome,
    Reason,
    ReasonCode,
    TierOutcome,
)
from smallguard.server.domain.tier_spec import ReviewTarget, TierSpec
from smallguard.server.observability.feedback import Feedback, FeedbackCall, FeedbackResult
from smallguard.server.observability.instruments import GuardMetrics
from smallguard.server.store.review_cases import CLAIMED, DISMISSED, OPEN, RESOLVED, STATES, CaseRow, ReviewCases
from smallguard.verifiers import Prediction

POLL_S = 0.25  # how often a waiting caller's case is read again
MAX_LIST = 1000
_LINE_BREAKS = "\n\r\t"  # a note may have lines


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Cases per (model, state), and when each model's oldest open case was opened."""

    counts: Mapping[tuple[str, str], int]
    oldest_open: Mapping[str, float]  # model -> opened_at of its oldest open case


class ReviewQueue:
    """The review cases in the store, and the feedback their resolutions become."""

    def __init__(self, cases: ReviewCases, feedback: Feedback, specs: Mapping[str, BundleSpec],
                 metrics: GuardMetrics, clock: Callable[[], float] = time.time) -> None:
        self._cases = cases
        self._feedback = feedback
        self._metrics = metrics
        self._specs = dict(specs)
        self._clock = clock

    def update_specs(self, specs: Mapping[str, BundleSpec]) -> None:
        """The bundles loaded now (after a reload): their labels, fields and leases."""
        self._specs = dict(specs)

    # ------------------------------------------------------------------------------ the cascade's side

    def open(self, call: PredictCall, outcome: PredictOutcome, entries: Sequence[TierOutcome]) -> int:
        """A case for ``call``, with what the caller got (``outcome``) and every tier's answer; its id."""
        reasons = [r for e in entries for r in e.reasons]
        details = {
            "input": self._input(outcome.model, call),
            "prediction": _prediction(outcome.prediction, outcome.confidence),
            "reasons": [_reason(r) for r in reasons],
            "verifiers": [{"name": v.name, "use": v.use, "status": v.status.value, "message": v.message,
                           "on_fail": v.on_fail.name} for v in outcome.verifiers],
            "tiers": [{"name": e.name, "kind": e.kind, "decision": e.decision.name, "calibrated": e.calibrated,
                       "confidence": e.confidence, "cost": e.cost, "latency_ms": e.latency_ms,
                       "reasons": [_reason(r) for r in e.reasons],
                       "prediction": None if e.prediction is None else _prediction(e.prediction, e.confidence)}
                      for e in entries],
        }
        return self._cases.open(request_id=outcome.request_id, model=outcome.model, version=outcome.model_version,
                                kind=outcome.prediction.kind.value,
                                reason=reasons[0].code.value if reasons else ReasonCode.LOW_CONFIDENCE.value,
                                details=details, now=self._clock())

    # ------------------------------------------------------------------------------ the reviewers' side

    def list(self, state: str = OPEN, model: str = "", reason: str = "", limit: int = 50,
             after_id: int = 0) -> list[CaseRow]:
        state = (state or OPEN).lower()
        if state not in STATES:
            raise InvalidInputError(f"{echoed(state)} is no case state; expected one of "
                                    f"{', '.join(s.upper() for s in STATES)}", "state")
        if not 0 <= limit <= MAX_LIST:
            raise InvalidInputError(f"{limit}: expected 1 to {MAX_LIST} (0: the default, 50)", "limit")
        printable(model, "model")  # compared with stored text: a NUL is the caller's mistake, not the store's
        printable(reason, "reason")
        return self._cases.queue(self._clock(), state=state, model=model, reason=reason.upper(),
                                 limit=limit or 50, after_id=after_id)

    def counts(self) -> QueueCounts:
        raw = self._cases.counts(self._clock())
        return QueueCounts({key: count for key, (count, _) in raw.items()},
                           {model: oldest for (model, state), (_, oldest) in raw.items() if state == OPEN})

    def get(self, case_id: int) -> CaseRow:
        case = self._cases.get(case_id, self._clock())
        if case is None:
            raise CaseNotFoundError("no review case with this id", f"case {case_id}")
        return case

    def claim(self, case_id: int, reviewer: str) -> CaseRow:
        """Claim an open case for ``reviewer`` (a claim of one's own is renewed)."""
        _require_reviewer(reviewer)
        case = self.get(case_id)
        lease = self._lease(case.model)
        if not self._cases.claim(case_id, reviewer, lease, self._clock()):
            raise self._why_not(self.get(case_id), reviewer)
        return self.get(case_id)

    def resolve(self, case_id: int, reviewer: str, label: str = "", fields: Mapping[str, str] | None = None,
                note: str = "") -> tuple[CaseRow, FeedbackResult]:
        """Close a case ``reviewer`` holds with the truth, recorded as Feedback on its request first (a truth
        that does not fit the model is refused before anything changes)."""
        _require_reviewer(reviewer)
        printable(note, "note", _LINE_BREAKS)
        case = self.get(case_id)
        if case.state != CLAIMED or case.claimed_by != reviewer:
            raise self._why_not(case, reviewer)
        result = self._feedback.submit(FeedbackCall(case.request_id, case.model, label, dict(fields or {}) or None,
                                                    source="review"))
        truth: Any = label if label else dict(fields or {})
        if not self._cases.close(case_id, reviewer, RESOLVED, self._clock(), truth=truth, note=note):
            raise self._why_not(self.get(case_id), reviewer)
        closed = self.get(case_id)
        self._metrics.record_review(closed.model, closed.version, RESOLVED, (closed.closed_at or 0) - closed.opened_at,
                                    self._agreement(closed, truth))
        return closed, result

    def dismiss(self, case_id: int, reviewer: str, note: str = "") -> CaseRow:
        _require_reviewer(reviewer)
        printable(note, "note", _LINE_BREAKS)
        if not self._cases.close(case_id, reviewer, DISMISSED, self._clock(), note=note):
            raise self._why_not(self.get(case_id), reviewer)
        closed = self.get(case_id)
        self._metrics.record_review(closed.model, closed.version, DISMISSED, (closed.closed_at or 0) - closed.opened_at)
        return closed

    def wait(self, request_id: str, deadline: float | None, active: Callable[[], bool]) -> Iterator[CaseRow]:
        """The request's case now, then at every change, until it is closed, ``deadline`` (time.monotonic)
        passes or ``active()`` turns false."""
        case = self._cases.for_request(request_id, self._clock())
        if case is None:
            raise CaseNotFoundError("no review case was opened for this request", f"request_id {echoed(request_id)}")
        yield case
        seen = (case.state, case.claimed_by, case.lease_until)
        while case.state not in (RESOLVED, DISMISSED):
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or not active():
                return
            time.sleep(POLL_S if left is None else min(POLL_S, left))
            case = self.get(case.id)
            if (case.state, case.claimed_by, case.lease_until) != seen:
                seen = (case.state, case.claimed_by, case.lease_until)
                yield case

    def _input(self, model: str, call: PredictCall) -> dict[str, Any]:
        """The request as a labelled-data record keys it (``smallguard calibrate``'s format: each input by name,
        tensors flat), and its context: what export-labels writes back with the reviewer's truth."""
        spec = self._specs.get(model)
        if call.tensors:
            record: dict[str, Any] = {t.name: t.values.ravel().tolist() for t in call.tensors}
        else:
            text_input = next((i.name for i in spec.inputs if i.kind == "text"), "text") if spec else "text"
            record = {text_input: call.text}
        return {"record": record, "context": dict(call.context), "text": call.text}

    def _agreement(self, case: CaseRow, truth: Any) -> list[tuple[str, bool]]:
        """Whether each tier that gave an answer gave the reviewer's truth."""
        spec = self._specs.get(case.model)
        if spec is None:
            return []
        agreed = []
        for tier in case.details.get("tiers", []):
            given = tier.get("prediction")
            if given is None:
                continue
            predicted: Any = given["label"] if not spec.is_extractor else {
                name: value for name, (value, _confidence) in given["fields"].items()}
            agreed.append((tier["name"], judge(spec, predicted, truth).correct))
        return agreed

    def _lease(self, model: str) -> float:
        spec = self._specs.get(model)
        for tier in () if spec is None else spec.escalation:
            if isinstance(tier.target, ReviewTarget):
                return tier.target.lease_seconds
        return ReviewTarget().lease_seconds

    def _why_not(self, case: CaseRow, reviewer: str) -> CaseStateError:
        where = f"case {case.id}"
        if case.state in (RESOLVED, DISMISSED):
            return CaseStateError(f"already {case.state} by {case.closed_by!r}", where)
        if case.state == CLAIMED and case.claimed_by != reviewer:
            left = (case.lease_until or 0) - self._clock()
            return CaseStateError(f"claimed by {case.claimed_by!r} for another {max(left, 0):.0f}s; pick another "
                                  "case, or wait for the lease to expire", where)
        return CaseStateError(f"not claimed by {reviewer!r} (or the lease expired): claim it first", where)


class ReviewTier:
    """The ``review`` escalation tier: the cascade opens a case in ``queue`` instead of asking for an answer."""

    def __init__(self, spec: TierSpec, queue: ReviewQueue | None) -> None:
        self.spec = spec
        self.queue = queue  # None: a guard that keeps no store (an offline replay): no case is opened

    def ask(self, call: PredictCall, request_id: str, timeout_s: float) -> Any:
        raise AssertionError("the cascade opens a review case; it never asks the review tier for an answer")

    def close(self) -> None:
        """Nothing to release: the queue belongs to the guard."""


def review_entry(spec: TierSpec, case_id: int | None, problem: str = "") -> TierOutcome:
    """The cascade's entry for the review tier: the case opened, or why none was."""
    code = ReasonCode.IN_REVIEW if case_id is not None else ReasonCode.TIER_ERROR
    message = (f"review case {case_id} opened: a person will answer (WaitForReview waits for it)"
               if case_id is not None else f"tier {spec.name} (review): {problem}")
    return TierOutcome(name=spec.name, kind=spec.kind, decision=Decision.ESCALATE, prediction=None, calibrated=False,
                       confidence=0.0, raw_confidence=0.0, threshold=0.0,
                       reasons=(Reason(code, message, spec.name),), verifiers=(), latency_ms=0.0, cost=spec.cost,
                       calls=0 if case_id is None else 1)


def truth_of(case: CaseRow) -> tuple[str, dict[str, str]]:
    """A resolved case's truth as (label, fields)."""
    if isinstance(case.truth, str):
        return case.truth, {}
    return "", {str(k): str(v) for k, v in (case.truth or {}).items()}


def _require_reviewer(reviewer: str) -> None:
    if not reviewer.strip():
        raise InvalidInputError("required: who reviews (a name, or the token's with tokens on)", "reviewer")
    printable(reviewer, "reviewer")


def _prediction(prediction: Prediction, confidence: float) -> dict[str, Any]:
    return {"label": prediction.label, "confidence": confidence,
            "fields": {n: [f.value, f.confidence] for n, f in prediction.fields.items()}}


def _reason(reason: Reason) -> dict[str, str]:
    return {"code": reason.code.value, "verifier": reason.verifier, "message": reason.message}


def input_text(case: CaseRow) -> tuple[str, str]:
    """The case's input as (text, the tensors as JSON: name -> flat values)."""
    given = case.details.get("input", {})
    text = given.get("text", "")
    return text, "" if text else json.dumps(given.get("record", {}))


def labelled_record(case: CaseRow) -> dict[str, Any]:
    """A resolved case as one line of labelled data (what ``smallguard calibrate`` and ``evaluate`` read)."""
    given = case.details.get("input", {})
    record: dict[str, Any] = {**given.get("record", {})}
    if given.get("context"):
        record["context"] = given["context"]
    label, fields = truth_of(case)
    if label:
        record["label"] = label
    else:
        record["fields"] = {name: value or None for name, value in fields.items()}
    record["request_id"], record["review_case"] = case.request_id, case.id
    return record
