"""Ground-truth feedback: match it to a logged decision, judge it, tally answered ones per model.

Protocol-neutral like the guard. Whether a prediction was right is ``domain.judge``'s answer; on
the wire an empty true value means the document has no such field.

Decisions and feedback live in the store, so any worker or replica matches any request id and the
tallies count every worker's feedback. A decision reaches the store a flush interval after its
response (the decision log writes off the request path): a feedback that finds nothing has this
process's buffer written when the decision is in it, and otherwise waits two flush intervals for the
other processes' before it says "unknown" (at most two such waits at once, so that ids nobody made
cannot tie up the request threads).

Feedback is idempotent per request id: the same truth sent again (a retry) is answered as
before, marked a duplicate and not counted twice; a different truth for a request that already
has feedback is a conflict (ALREADY_EXISTS) and the first truth stands. The store decides which came
first (one feedback row per decision), so the rule holds across processes. A feedback is written
before it is acknowledged.

Only the model's own ANSWERed predictions enter the accuracy tally: the calibrated confidence is a
promise about what the caller was allowed to use. An answer from an escalation tier is another
model's (with another calibration, or none), so it is judged but not tallied against this one's.
Feedback on abstained or escalated predictions is matched and judged all the same (the response
says whether the model was right).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from smallguard.server.domain.bundle_spec import BundleSpec, FeedbackPolicy
from smallguard.server.domain.errors import (
    FeedbackConflictError,
    InvalidInputError,
    ModelNotFoundError,
    RequestNotFoundError,
    StoreError,
    echoed,
)
from smallguard.server.domain.judge import judge
from smallguard.server.domain.predictions import Decision
from smallguard.server.observability.feedback.stats import AccuracyCheck, check_accuracy
from smallguard.server.observability.instruments import GuardMetrics
from smallguard.server.store import DecisionLog, FeedbackRow, Store, StoredDecision

log = logging.getLogger(__name__)

# a classifier's true label, or an extractor's true fields (name -> value, "" for absent)
Truth = str | tuple[tuple[str, str], ...]
SUMMARY_TTL_S = 1.0  # a tally read from the store serves GetModel and the gauges this long
MAX_WAITING = 2  # Feedback calls that may wait at once for another process's decision to be written
OWN_FLUSH_S = 2.0  # at most this long for this process's buffer to be written; past it the id is not found


@dataclass(frozen=True, slots=True)
class FeedbackCall:
    request_id: str
    model: str = ""  # optional: the model the caller believes served the request
    label: str = ""  # a classifier's true label
    fields: Mapping[str, str] | None = None  # an extractor's true fields ("" for absent)
    source: str = "api"  # or "review": a person's resolution of a review case


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
    matched: int  # feedback recorded for this model version, whatever the decision
    unavailable: str = ""  # why the store could not be read (the figures are then the last ones read, or none)

    @property
    def explanation(self) -> str:
        p = self.policy
        verdict = self.accuracy.explain(p.tolerance, p.alpha, p.min_labelled)
        return f"{verdict} (not current: {self.unavailable})" if self.unavailable else verdict


@dataclass(frozen=True, slots=True)
class _Verdict:
    truth: Truth
    correct: bool
    wrong_fields: tuple[str, ...] = ()


class Feedback:
    """The Feedback call and the per-model accuracy summaries, over the store."""

    def __init__(self, specs: Mapping[str, BundleSpec], metrics: GuardMetrics, store: Store,
                 decisions: DecisionLog, wait_s: float | None = None) -> None:
        self._specs = dict(specs)
        self._metrics = metrics
        self._store = store
        self._decisions = decisions
        # How long a feedback that finds nothing waits for another process's decision log (it writes every flush
        # interval), and how many may wait at once: ids nobody made must not tie up the request threads.
        self._wait_s = 2 * decisions.flush_interval_s + 0.05 if wait_s is None else wait_s
        self._waiters = threading.Semaphore(MAX_WAITING)
        self._lock = threading.Lock()
        self._summaries: dict[str, tuple[float, FeedbackSummary]] = {}  # model -> (read at, summary)

    def submit(self, call: FeedbackCall) -> FeedbackResult:
        """Judge ``call`` against its decision and record it. Raises RequestNotFoundError, InvalidInputError,
        FeedbackConflictError or StoreError; counts every call by outcome."""
        if not call.request_id:
            self._metrics.record_feedback("invalid")
            raise InvalidInputError("required: the request_id of the PredictResponse being judged", "request_id")
        try:
            entry = self._find(call.request_id)
        except RequestNotFoundError:
            self._metrics.record_feedback("unknown_request")
            raise
        except StoreError:
            self._metrics.record_feedback("store_error")
            raise
        try:
            spec = self._spec(entry.model)
            verdict = _judge(entry, call, spec)
            row = _row(entry, verdict, spec, call.source)
            earlier = self._store.add_feedback(entry, row, time.time())
        except LookupError:
            self._metrics.record_feedback("expired", entry.model, entry.version)
            raise RequestNotFoundError("the decision was removed by the store's retention (--store-retention-days) "
                                       "while this feedback was judged", call.request_id, expired=True) from None
        except (InvalidInputError, ModelNotFoundError) as exc:
            self._metrics.record_feedback("invalid", entry.model, entry.version)
            raise exc from None
        except StoreError:
            self._metrics.record_feedback("store_error", entry.model, entry.version)
            raise
        if earlier is not None and earlier.truth != verdict.truth:
            self._metrics.record_feedback("conflict", entry.model, entry.version)
            raise FeedbackConflictError(f"request_id {echoed(call.request_id)}: feedback was already recorded with "
                                        f"{_describe(earlier.truth)}; the first truth stands")
        if earlier is None:
            with self._lock:
                self._summaries.pop(entry.model, None)  # this process's reads see its own feedback at once
        self._metrics.record_feedback("matched" if earlier is None else "duplicate", entry.model, entry.version)
        return FeedbackResult(entry.request_id, entry.model, entry.version, Decision[entry.decision],
                              verdict.correct, verdict.wrong_fields, row.counted and earlier is None,
                              duplicate=earlier is not None)

    def _find(self, request_id: str) -> StoredDecision:
        entry = self._store.first_decision(request_id)
        if entry is not None:
            return entry
        if self._decisions.holds(request_id):  # made here, not written yet: write it now
            self._decisions.flush(OWN_FLUSH_S)
        elif self._waiters.acquire(blocking=False):  # perhaps another process's, written within a flush or two
            try:
                time.sleep(self._wait_s)
            finally:
                self._waiters.release()
        entry = self._store.first_decision(request_id)
        if entry is not None:
            return entry
        raise RequestNotFoundError(f"no decision with this id in the store {self._store.where}; expected the "
                                   "request_id of a PredictResponse (decisions are kept for --store-retention-days)",
                                   request_id, expired=False)

    def summary(self, model: str) -> FeedbackSummary:
        """The model's feedback summary, at most SUMMARY_TTL_S old; ModelNotFoundError for an unknown model."""
        spec = self._spec(model)
        now = time.monotonic()
        with self._lock:
            cached = self._summaries.get(spec.name)
        if cached is not None and now - cached[0] < SUMMARY_TTL_S:
            return cached[1]
        try:
            scored, matched = self._store.tally(spec.name, spec.version, spec.feedback.window)
        except StoreError as error:
            stale = cached[1] if cached is not None else _summarise(spec, [], 0)
            return replace(stale, unavailable=str(error))
        summary = _summarise(spec, scored, matched)
        with self._lock:
            self._summaries[spec.name] = (now, summary)
        return summary

    def update_specs(self, specs: Mapping[str, BundleSpec]) -> None:
        """Judge against these bundles from now on (the models a reload brought)."""
        self._specs = dict(specs)
        with self._lock:
            self._summaries.clear()

    def summaries(self) -> list[FeedbackSummary]:
        return [self.summary(name) for name in sorted(self._specs)]

    def _spec(self, model: str) -> BundleSpec:
        spec = self._specs.get(model)
        if spec is None:
            raise ModelNotFoundError(f"no model named {echoed(model)}; loaded models: {', '.join(sorted(self._specs))}")
        return spec


def _summarise(spec: BundleSpec, scored: list, matched: int) -> FeedbackSummary:
    policy = spec.feedback
    options = {"tolerance": policy.tolerance, "alpha": policy.alpha, "min_labelled": policy.min_labelled}
    accuracy = check_accuracy([s.correct for s in scored], [s.confidence for s in scored], **options)
    fields = []
    for name in spec.fields:
        scores = [next(((right, confidence) for n, right, confidence in s.field_scores if n == name), (False, 0.0))
                  for s in scored]
        fields.append((name, check_accuracy([right for right, _ in scores], [c for _, c in scores], **options)))
    return FeedbackSummary(spec.name, spec.version, policy, accuracy, tuple(fields), matched)


def _row(entry: StoredDecision, verdict: _Verdict, spec: BundleSpec, source: str) -> FeedbackRow:
    wrong = set(verdict.wrong_fields)
    scores = tuple((name, name not in wrong, entry.fields.get(name, (None, 0.0))[1]) for name in spec.fields)
    counted = entry.decision == Decision.ANSWER.name and not entry.answered_by
    return FeedbackRow(verdict.truth, verdict.correct, verdict.wrong_fields, counted, entry.confidence, scores,
                       source)


def _judge(entry: StoredDecision, call: FeedbackCall, spec: BundleSpec) -> _Verdict:
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
        return _Verdict(call.label, judge(spec, entry.label, call.label).correct)
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
    return _Verdict(tuple((name, truth[name]) for name in spec.fields), judgement.correct, judgement.wrong_fields)


def _describe(truth: Truth) -> str:
    if isinstance(truth, str):
        return f"label {echoed(truth)}"
    return "fields " + ", ".join(f"{name}={echoed(value)}" for name, value in truth)
