"""Ground-truth feedback: match it to a recorded prediction, judge it, tally answered ones per model.

Protocol-neutral like the guard. A classifier's prediction is right when its label is the true
label; an extractor's field is right when its value equals the true value exactly (an empty
true value means the document has no such field, and then only a missing field is right), and
the document is right when every field is.

Feedback is idempotent per request id: the same truth sent again (a retry) is answered as
before, marked a duplicate and not counted twice; a different truth for a request that already
has feedback is a conflict (ALREADY_EXISTS) and the first truth stands.

Only ANSWERed predictions enter the accuracy tally: the calibrated confidence is a promise about
what the caller was allowed to use. Feedback on abstained or escalated predictions is matched
and judged all the same (the response says whether the model was right).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from smallguard.server.bundle import BundleSpec, FeedbackPolicy
from smallguard.server.errors import FeedbackConflictError, InvalidInputError, RequestNotFoundError
from smallguard.server.feedback_record import PredictionRecord, Recorded, Truth, Verdict
from smallguard.server.feedback_stats import AccuracyCheck, check_accuracy
from smallguard.server.metrics import GuardMetrics
from smallguard.server.repository import ModelRepository
from smallguard.server.types import Decision, PredictOutcome
from smallguard.verifiers import ModelKind

DEFAULT_CAPACITY = 50_000
DEFAULT_MAX_AGE_S = 86_400.0


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

    def __init__(self, repository: ModelRepository, metrics: GuardMetrics | None = None,
                 record: PredictionRecord | None = None) -> None:
        self._repository = repository
        self._metrics = GuardMetrics() if metrics is None else metrics
        self.record = PredictionRecord(DEFAULT_CAPACITY, DEFAULT_MAX_AGE_S) if record is None else record
        self._lock = threading.Lock()
        self._tallies = {model.spec.name: _Tally(model.spec.feedback.window) for model in repository}
        self._metrics.watch_feedback(self.summaries)

    def remember(self, outcome: PredictOutcome) -> None:
        """Keep a prediction so that feedback can find it by request id."""
        prediction = outcome.prediction
        self.record.add(Recorded(
            request_id=outcome.request_id, model=outcome.model, version=outcome.model_version,
            kind=prediction.kind, decision=outcome.decision, confidence=outcome.confidence,
            label=prediction.label,
            fields={name: (f.value, f.confidence) for name, f in prediction.fields.items()},
            at=self.record.now()))

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
            raise InvalidInputError("request_id", "required: the request_id of the PredictResponse being judged")
        try:
            verdict = _judge(entry, call, self._repository.get(entry.model).spec)
            earlier = self.record.settle(entry, verdict)
        except (InvalidInputError, RequestNotFoundError) as exc:
            outcome = "invalid" if isinstance(exc, InvalidInputError) else "expired"
            self._metrics.record_feedback(outcome, entry.model, entry.version)
            raise
        if earlier is not None and earlier.truth != verdict.truth:
            self._metrics.record_feedback("conflict", entry.model, entry.version)
            raise FeedbackConflictError(f"request_id {call.request_id!r}: feedback was already recorded with "
                                        f"{_describe(earlier.truth)}; the first truth stands")
        counted = earlier is None and entry.decision is Decision.ANSWER
        if earlier is None:
            self._count(entry, verdict, counted)
        self._metrics.record_feedback("matched" if earlier is None else "duplicate", entry.model, entry.version)
        return FeedbackResult(entry.request_id, entry.model, entry.version, entry.decision, verdict.correct,
                              verdict.wrong_fields, counted, duplicate=earlier is not None)

    def summary(self, model: str) -> FeedbackSummary:
        """The model's feedback summary; ModelNotFoundError for an unknown model."""
        spec = self._repository.get(model).spec
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
        return [self.summary(model.spec.name) for model in self._repository]

    def _count(self, entry: Recorded, verdict: Verdict, counted: bool) -> None:
        spec = self._repository.get(entry.model).spec
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
        raise InvalidInputError("model", f"request {entry.request_id!r} was served by model {entry.model!r}, "
                                         f"not {call.model!r}; expected {entry.model!r} or an empty model")
    if entry.kind is ModelKind.CLASSIFIER:
        if call.fields:
            raise InvalidInputError("fields", f"model {entry.model!r} is a classifier: give the true label, not fields")
        if call.label not in spec.labels:
            raise InvalidInputError("label", f"{call.label!r} is not a label of model {entry.model!r}; expected one "
                                             f"of {', '.join(spec.labels)}")
        return Verdict(call.label, call.label == entry.label)
    if call.label:
        raise InvalidInputError("label", f"model {entry.model!r} is an extractor: give the true fields, not a label")
    truth = dict(call.fields or {})
    unknown = sorted(set(truth) - set(spec.fields))
    if unknown:
        raise InvalidInputError(f"fields[{unknown[0]}]", f"model {entry.model!r} has no such field; expected "
                                                        f"fields {', '.join(spec.fields)}")
    missing = [name for name in spec.fields if name not in truth]
    if missing:
        raise InvalidInputError("fields", f"missing {', '.join(missing)}: give every field of model "
                                          f"{entry.model!r} (an empty value for one the document does not have)")
    wrong = tuple(name for name in spec.fields if (entry.fields.get(name, (None, 0.0))[0] or "") != truth[name])
    return Verdict(tuple((name, truth[name]) for name in spec.fields), not wrong, wrong)


def _describe(truth: Truth) -> str:
    if isinstance(truth, str):
        return f"label {truth!r}"
    return "fields " + ", ".join(f"{name}={value!r}" for name, value in truth)
