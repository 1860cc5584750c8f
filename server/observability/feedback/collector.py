"""Ground-truth feedback: match it to a recorded prediction, judge it, tally answered ones per model.

Protocol-neutral like the guard. Whether a prediction was right is ``domain.judge``'s answer; on
the wire an empty true value means the document has no such field.

Feedback is idempotent per request id: the same truth sent again (a retry) is answered as
before, marked a duplicate and not counted twice; a different truth for a request that already
has feedback is a conflict (ALREADY_EXISTS) and the first truth stands.

Only the model's own ANSWERed predictions enter the accuracy tally: the calibrated confidence is a
promise about what the caller was allowed to use. An answer from an escalation tier is another
model's (with another calibration, or none), so it is judged but not tallied against this one's.
Feedback on abstained or escalated predictions is matched and judged all the same (the response
says whether the model was right).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from smallguard.server.domain.bundle_spec import BundleSpec, FeedbackPolicy
from smallguard.server.domain.errors import (
    FeedbackConflictError,
    InvalidInputError,
    ModelNotFoundError,
    RequestNotFoundError,
    echoed,
)
from smallguard.server.domain.judge import judge
from smallguard.server.domain.predictions import Decision, PredictOutcome
from smallguard.server.observability.feedback.record import PredictionRecord, Recorded, Truth, Verdict
from smallguard.server.observability.feedback.stats import AccuracyCheck, check_accuracy
from smallguard.server.observability.instruments import GuardMetrics


@dataclass(frozen=True, slots=True)
class FeedbackCall:
    request_id: str
    model: str = ""  # optional: the model the caller believes served the request
    label: str = ""  # a classifier's true label
    fields: Mapping[str, str] | None = None  # an extractor's true fields ("" for absent)


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    request_id: str
    model: str
    version: str
    decision: Decision
    correct: bool
    wrong_fields: tuple[str, ...]
    counted: bool  # entered the accuracy tally (an answered prediction, first feedback)
    duplicate: bool  # the same truth was already recorded


@dataclass(frozen=True, slots=True)
class FeedbackSummary:
    """A model's observed against estimated accuracy, as GetModel and the gauges show it."""

    model: str
    version: str
    policy: FeedbackPolicy
    accuracy: AccuracyCheck  # the prediction (a classifier's label, an extractor's document)
    fields: tuple[tuple[str, AccuracyCheck], ...]  # an extractor's fields, each against its own confidence
    matched: int  # feedback matched since start, whatever the decision

    @property
    def explanation(self) -> str:
        p = self.policy
        return self.accuracy.explain(p.tolerance, p.alpha, p.min_labelled)


@dataclass(frozen=True, slots=True)
class _Scored:
    correct: bool
    confidence: float
    fields: tuple[tuple[str, bool, float], ...]


class _Tally:
    """The last ``window`` labelled answered predictions of one model."""

    def __init__(self, window: int) -> None:
        self.scored: deque[_Scored] = deque(maxlen=window)
        self.matched = 0


class Feedback:
    """The record of recent predictions, the per-model tallies, and the Feedback call."""

    def __init__(self, specs: Mapping[str, BundleSpec], metrics: GuardMetrics, record: PredictionRecord) -> None:
        self._specs = dict(specs)
        self._metrics = metrics
        self.record = record
        self._lock = threading.Lock()
        self._tallies = {name: _Tally(spec.feedback.window) for name, spec in self._specs.items()}

    def remember(self, outcome: PredictOutcome) -> None:
        """Keep a prediction so that feedback can find it by request id."""
        prediction = outcome.prediction
        self.record.add(Recorded(
            request_id=outcome.request_id, model=outcome.model, version=outcome.model_version,
            kind=prediction.kind, decision=outcome.decision, confidence=outcome.confidence,
            label=prediction.label,
            fields={name: (f.value, f.confidence) for name, f in prediction.fields.items()},
            at=self.record.now(), tier=outcome.answered_by if outcome.tiers and outcome.answered_by != outcome.model
            else ""))

    def submit(self, call: FeedbackCall) -> FeedbackResult:
        """Judge ``call`` against its prediction. Raises RequestNotFoundError, InvalidInputError or
        FeedbackConflictError; counts every call by outcome."""
        try:
            entry = self.record.get(call.request_id) if call.request_id else None
        except RequestNotFoundError as exc:
            self._metrics.record_feedback("expired" if exc.expired else "unknown_request")
            raise
        if entry is None:
            self._metrics.record_feedback("invalid")
            raise InvalidInputError("required: the request_id of the PredictResponse being judged", "request_id")
        try:
            verdict = _judge(entry, call, self._spec(entry.model))
            earlier = self.record.settle(entry, verdict)
        except (InvalidInputError, RequestNotFoundError) as exc:
            outcome = "invalid" if isinstance(exc, InvalidInputError) else "expired"
            self._metrics.record_feedback(outcome, entry.model, entry.version)
            raise
        if earlier is not None and earlier.truth != verdict.truth:
            self._metrics.record_feedback("conflict", entry.model, entry.version)
            raise FeedbackConflictError(f"request_id {echoed(call.request_id)}: feedback was already recorded with "
                                        f"{_describe(earlier.truth)}; the first truth stands")
        counted = earlier is None and entry.decision is Decision.ANSWER and not entry.tier
        if earlier is None:
            self._count(entry, verdict, counted)
        self._metrics.record_feedback("matched" if earlier is None else "duplicate", entry.model, entry.version)
        return FeedbackResult(entry.request_id, entry.model, entry.version, entry.decision, verdict.correct,
                              verdict.wrong_fields, counted, duplicate=earlier is not None)

    def summary(self, model: str) -> FeedbackSummary:
        """The model's feedback summary; ModelNotFoundError for an unknown model."""
        spec = self._spec(model)
        with self._lock:
            tally = self._tallies[spec.name]
            scored, matched = list(tally.scored), tally.matched
        policy = spec.feedback
        options = {"tolerance": policy.tolerance, "alpha": policy.alpha, "min_labelled": policy.min_labelled}
        accuracy = check_accuracy([s.correct for s in scored], [s.confidence for s in scored], **options)
        fields = tuple((name, check_accuracy([s.fields[i][1] for s in scored], [s.fields[i][2] for s in scored],
                                             **options))
                       for i, name in enumerate(spec.fields))
        return FeedbackSummary(spec.name, spec.version, policy, accuracy, fields, matched)

    def summaries(self) -> list[FeedbackSummary]:
        return [self.summary(name) for name in sorted(self._specs)]

    def _spec(self, model: str) -> BundleSpec:
        spec = self._specs.get(model)
        if spec is None:
            raise ModelNotFoundError(f"no model named {echoed(model)}; loaded models: {', '.join(sorted(self._specs))}")
        return spec

    def _count(self, entry: Recorded, verdict: Verdict, counted: bool) -> None:
        spec = self._specs[entry.model]
        wrong = set(verdict.wrong_fields)
        fields = tuple((name, name not in wrong, entry.fields.get(name, (None, 0.0))[1]) for name in spec.fields)
        with self._lock:
            tally = self._tallies[entry.model]
            tally.matched += 1
            if counted:
                tally.scored.append(_Scored(verdict.correct, entry.confidence, fields))


def _judge(entry: Recorded, call: FeedbackCall, spec: BundleSpec) -> Verdict:
    """Is the recorded prediction right? Raises InvalidInputError for a truth that does not fit the model."""
    if call.model and call.model != entry.model:
        raise InvalidInputError(f"request {entry.request_id!r} was served by model {entry.model!r}, "
                                f"not {echoed(call.model)}; expected {entry.model!r} or an empty model", "model")
    if not spec.is_extractor:
        if call.fields:
            raise InvalidInputError(f"model {entry.model!r} is a classifier: give the true label, not fields", "fields")
        if call.label not in spec.labels:
            raise InvalidInputError(f"{echoed(call.label)} is not a label of model {entry.model!r}; expected one "
                                    f"of {', '.join(spec.labels)}", "label")
        return Verdict(call.label, judge(spec, entry.label, call.label).correct)
    if call.label:
        raise InvalidInputError(f"model {entry.model!r} is an extractor: give the true fields, not a label", "label")
    truth = dict(call.fields or {})
    unknown = sorted(set(truth) - set(spec.fields))
    if unknown:
        raise InvalidInputError(f"model {entry.model!r} has no such field; expected "
                                f"fields {', '.join(spec.fields)}", f"fields[{echoed(unknown[0], quoted=False)}]")
    missing = [name for name in spec.fields if name not in truth]
    if missing:
        raise InvalidInputError(f"missing {', '.join(missing)}: give every field of model "
                                f"{entry.model!r} (an empty value for one the document does not have)", "fields")
    predicted = {name: value for name, (value, _confidence) in entry.fields.items()}
    judgement = judge(spec, predicted, {name: truth[name] for name in spec.fields})
    return Verdict(tuple((name, truth[name]) for name in spec.fields), judgement.correct, judgement.wrong_fields)


def _describe(truth: Truth) -> str:
    if isinstance(truth, str):
        return f"label {echoed(truth)}"
    return "fields " + ", ".join(f"{name}={echoed(value)}" for name, value in truth)
