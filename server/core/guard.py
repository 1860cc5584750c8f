"""The Guard: the one object every transport and command calls, and the Predict path, top to bottom.

``predict`` checks the inputs, runs the model's head (model run and calibration), runs every
verifier, applies the decision policy and the drift rule, and records the outcome (metrics, the
feedback record). The other methods answer the rest of the API: what is loaded, feedback on a past
prediction, and the rejections the transport made before a request reached the core.

It knows nothing of gRPC. When the current span records (the transport's server span, while
traces are exported), it annotates it with the ``smallguard.*`` attributes and opens child spans
for the model run and the verifiers, so one trace shows where the time and the decision came
from; when nothing records, it does no span work at all and the trace id is empty.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from smallguard.server.core import batch_steps, stacked_batch
from smallguard.server.core.cascade import Cascade
from smallguard.server.core.coalescing import Coalescer
from smallguard.server.core.inputs import feeds_for
from smallguard.server.core.models import LoadedModel, ModelRepository
from smallguard.server.core.policy import escalate_when_drifted
from smallguard.server.core.request_ids import new_request_id
from smallguard.server.core.review import QueueCounts, ReviewQueue
from smallguard.server.core.verifier_runner import VerifierRunner
from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.errors import DeadlineExpiredError, GuardError, InvalidInputError, ItemFailedError
from smallguard.server.domain.predictions import (
    BatchOutcome,
    Decision,
    HeadResult,
    PredictCall,
    PredictOutcome,
    Reason,
    TensorInput,
    VerifierOutcome,
)
from smallguard.server.domain.tier_spec import TierSpec
from smallguard.server.observability import drift
from smallguard.server.observability.feedback import Feedback, FeedbackCall, FeedbackResult, FeedbackSummary
from smallguard.server.observability.instruments import GuardMetrics
from smallguard.server.store import DecisionLog
from smallguard.server.store.review_cases import CaseRow
from smallguard.verifiers import ModelKind, Status

log = logging.getLogger(__name__)


class FeedbackOffError(GuardError):
    """This guard keeps no record of its predictions (an offline replay), so feedback has nothing to match."""


class ReloadOffError(GuardError):
    """This server was built without a way to load its models again."""


class ReviewOffError(GuardError):
    """This guard keeps no review queue (an offline replay has no store)."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """The models a guard serves and their escalation tiers: replaced whole by a reload, so a request that
    began with one set finishes with it."""

    repository: ModelRepository
    cascades: Mapping[str, Cascade]
    coalescers: Mapping[int, Coalescer[_Item, PredictOutcome]]  # id(model) -> its calls served together


@dataclass(frozen=True, slots=True)
class ModelReport:
    """What GetModel and ListModels show of one model: what is loaded, its drift and its feedback now."""

    model: LoadedModel
    drift: drift.DriftSnapshot
    feedback: FeedbackSummary | None  # None: this guard keeps no feedback record
    tiers: tuple[tuple[TierSpec, str], ...] = ()  # each escalation tier and its circuit's state now


class _Item(NamedTuple):
    """A Predict call as the coalescer passes it: with its trace id, and its span when that records."""

    call: PredictCall
    trace_id: str
    span: trace.Span | None


class Guard:
    """The protocol-neutral facade over the loaded models and everything that watches them.

    Every collaborator is passed in, built by ``smallguard.server.assembly``; ``decisions`` and ``feedback``
    are None for a guard that keeps no record of its predictions (``smallguard evaluate``).
    """

    def __init__(self, repository: ModelRepository, runner: VerifierRunner, metrics: GuardMetrics,
                 feedback: Feedback | None, cascades: Mapping[str, Cascade] | None = None,
                 decisions: DecisionLog | None = None, review: ReviewQueue | None = None) -> None:
        self._runner = runner
        self._metrics = metrics
        self._loaded = self._loaded_set(repository, cascades or {})
        self._feedback = feedback
        self._decisions = decisions
        self._review = review
        self._drift_listeners: list[Callable[[str, bool], None]] = []
        self._retired: list[threading.Timer] = []
        # The installed provider's tracer when there is one by now (as `smallguard serve` installs it), not
        # the API's proxy, which wraps each span in a context manager of its own (2-4 us a span).
        self._tracer = trace.get_tracer("smallguard")

    # ------------------------------------------------------------------------------ Predict

    def predict(self, call: PredictCall) -> PredictOutcome:
        """One prediction, one decision. Raises ModelNotFoundError, InvalidInputError or DeadlineExpiredError."""
        started = time.perf_counter()
        _refuse_if_expired(call.deadline)
        loaded = self._loaded  # one set of models for the whole request, whatever a reload does meanwhile
        model = loaded.repository.get(call.model, call.version)
        with self._metrics.in_flight(model.spec.name, model.spec.version):
            outcome = self._predict(call, model, loaded)
            if outcome.decision is Decision.ESCALATE and model.spec.escalation:
                outcome = self._escalate(call, model, outcome, loaded)
        self._metrics.record_prediction(outcome, time.perf_counter() - started)
        if self._decisions is not None:
            self._decisions.append(call, outcome, model.spec.log_inputs)
        return outcome

    def _predict(self, call: PredictCall, model: LoadedModel, loaded: Loaded) -> PredictOutcome:
        """The small model's outcome (before escalation), served alone or with the calls beside it."""
        span = trace.get_current_span()
        # no span work when nothing exports this trace (span None): only the caller's trace id
        item = _Item(call, _trace_id(span), span if span.is_recording() else None)
        coalescer = loaded.coalescers.get(id(model))
        return coalescer.run(item) if coalescer is not None else self._alone(model, item)

    def _escalate(self, call: PredictCall, model: LoadedModel, outcome: PredictOutcome,
                  loaded: Loaded) -> PredictOutcome:
        """The bundle's escalation tiers, in turn, for a request the small model escalated."""
        cascade = loaded.cascades.get(model.spec.name)
        if cascade is None:  # a guard assembled without tiers (an offline replay that does not call them)
            return outcome
        span = trace.get_current_span()
        if not span.is_recording():
            return cascade.run(call, outcome, None)
        final = cascade.run(call, outcome, span)
        span.set_attributes({  # the decision the caller got; the model's own stays in its tier entry
            "smallguard.decision": final.decision.name,
            "smallguard.reasons": [r.code.value for r in final.reasons],
            "smallguard.answered_by": final.answered_by or final.model,
            "smallguard.cost": final.cost,
        })
        return final

    def _loaded_set(self, repository: ModelRepository, cascades: Mapping[str, Cascade]) -> Loaded:
        """``repository`` and its tiers, with a coalescer for each model whose concurrent calls may be served as
        one batch (``LoadedModel.batches_exactly``); the others' calls are each served alone."""
        record = self._metrics.record_served_together
        coalescers: dict[int, Coalescer[_Item, PredictOutcome]] = {}
        for model in repository:
            if model.batches_exactly:
                spec = model.spec
                coalescers[id(model)] = Coalescer(lambda item, model=model: self._alone(model, item),
                                                  lambda items, model=model: self._all_together(model, items),
                                                  lambda calls, spec=spec: record(spec.name, spec.version, calls))
                record(spec.name, spec.version, 0)  # the series is there before the first batch
        return Loaded(repository, dict(cascades), coalescers)

    def _alone(self, model: LoadedModel, item: _Item) -> PredictOutcome:
        """One call's outcome before escalation, with its spans under the call's own span when it records."""
        call, span = item.call, item.span
        feeds = feeds_for(model.spec.inputs, call)
        if span is None:
            return self._decide(call, model, feeds, model.head.predict(feeds), None, item.trace_id)
        token = None if span is trace.get_current_span() else otel_context.attach(trace.set_span_in_context(span))
        try:  # (another thread's call, served by this one when its batch failed: its spans go under its span)
            with self._tracer.start_as_current_span("smallguard.model.run") as model_span:
                model_span.set_attribute("smallguard.model.name", model.spec.name)
                head = model.head.predict(feeds)
            return self._decide(call, model, feeds, head, span)
        finally:
            if token is not None:
                otel_context.detach(token)

    def _all_together(self, model: LoadedModel, items: Sequence[_Item]) -> list[PredictOutcome | GuardError]:
        """``_alone`` for calls that arrived together: the batch path, each call with its own outcome or error,
        and, for a call whose span records, the spans ``_alone`` gives it, timed by the batch's steps."""
        results: list[PredictOutcome | GuardError] = [ItemFailedError("not served")] * len(items)
        served = batch_steps.fed(model.spec, [(i, item.call) for i, item in enumerate(items)], results)
        run_started = time.time_ns()
        heads = batch_steps.heads(model, [feeds for _, _, feeds in served])
        run_ended = time.time_ns()
        judged = batch_steps.judged(self._runner, model, served, heads, [item.trace_id for item in items],
                                     results)
        judged_at = time.time_ns()
        for i, _, outcome in judged:
            results[i] = outcome
            span = items[i].span
            if span is not None:
                self._spans_of(span, model, outcome, len(served), (run_started, run_ended, judged_at))
        return results

    def _spans_of(self, span: trace.Span, model: LoadedModel, outcome: PredictOutcome, together: int,
                  times: tuple[int, int, int]) -> None:
        """A call's model-run and verifier spans under its own ``span``, spanning the batch's model run and then
        its verifiers and decisions, and the call's attributes on ``span``, as when it is served alone."""
        parent = trace.set_span_in_context(span)
        run = self._tracer.start_span("smallguard.model.run", context=parent, start_time=times[0])
        run.set_attributes({"smallguard.model.name": model.spec.name, "smallguard.batch.size": together})
        run.end(end_time=times[1])
        verify = self._tracer.start_span("smallguard.verifiers.run", context=parent, start_time=times[1])
        verified = _verifier_attributes(outcome.verifiers)
        verify.set_attributes(verified)
        verify.end(end_time=times[2])
        _annotate(span, model, outcome.request_id, outcome.decision._name_, outcome.reasons, outcome.confidence,
                  outcome.raw_confidence, verified)

    def _decide(self, call: PredictCall, model: LoadedModel, feeds: Mapping[str, np.ndarray], head: HeadResult,
                span: trace.Span | None, trace_id: str = "") -> PredictOutcome:
        """Verify, decide, watch for drift and annotate ``span``: everything after the model run of a call served
        alone. With no span (nothing exports this trace) the outcome carries ``trace_id``, the caller's."""
        prediction, confidence = head.prediction, head.confidence
        spec = model.spec
        if span is None:
            outcomes = self._runner.run(model.verifiers, prediction, call.context, spec.policy.verifier_timeout_ms)
        else:
            with self._tracer.start_as_current_span("smallguard.verifiers.run") as verify_span:
                outcomes = self._runner.run(model.verifiers, prediction, call.context,
                                            spec.policy.verifier_timeout_ms)
                verified = _verifier_attributes(outcomes)
                verify_span.set_attributes(verified)
        decision, reasons = batch_steps.policy(model, head, outcomes)
        if model.drift is not None:  # observed before the drift rule: its own escalations are not drift
            model.drift.observe(feeds, confidence, decision)
            if model.drift.escalating:
                decision, reasons = escalate_when_drifted(decision, reasons, model.drift.message)
        request_id = call.request_id or new_request_id()
        if span is not None:
            _annotate(span, model, request_id, decision._name_, reasons, confidence, head.raw_confidence, verified)
            trace_id = _trace_id(span)
        return PredictOutcome(request_id, spec.name, spec.version, decision, prediction, confidence,
                              head.raw_confidence, model.threshold, reasons, outcomes, trace_id)

    def predict_batch(self, model: str, version: str,
                      calls: Sequence[PredictCall | GuardError]) -> list[PredictOutcome | GuardError]:
        """Many predictions for one model: one model run for the items whose inputs fit, then one full
        decision each, in order. An item that cannot be served (given as, or found to be, a GuardError)
        keeps its error and the others are served. Raises ModelNotFoundError for the batch's model."""
        started = time.perf_counter()
        _refuse_if_expired(next((c.deadline for c in calls if isinstance(c, PredictCall)), None))  # one per call
        current = self._loaded
        loaded = current.repository.get(model, version)
        spec = loaded.spec
        results: list[PredictOutcome | GuardError] = list(calls)
        taken: list[tuple[int, PredictCall]] = []
        for i, call in enumerate(calls):
            if isinstance(call, GuardError):
                continue
            if call.model not in ("", spec.name) or call.version not in ("", spec.version):
                results[i] = InvalidInputError(
                    f"{call.model!r} version {call.version!r} is not the batch's model, {spec.name!r} version "
                    f"{spec.version!r}; leave an item's model and version empty, or give the batch's", "model")
                continue
            taken.append((i, call))
        served = batch_steps.fed(spec, taken, results)
        if served:
            with self._metrics.in_flight(spec.name, spec.version, len(served)):
                self._serve_batch(loaded, served, len(calls), results, current)
        elapsed = (time.perf_counter() - started) / max(len(served), 1)  # each item's share of the call
        outcomes = [(call, result) for call, result in zip(calls, results, strict=True)
                    if isinstance(result, PredictOutcome)]
        self._metrics.record_predictions([outcome for _, outcome in outcomes], elapsed)
        if self._decisions is not None:
            self._decisions.append_many([(call if isinstance(call, PredictCall) else None, outcome)
                                         for call, outcome in outcomes], spec.log_inputs)
        return results

    def predict_stacked(self, model: str, version: str, tensors: Sequence[TensorInput], deadline: float | None,
                        caller: str = "", request_ids: Sequence[str] | None = None,
                        contexts: Sequence[Mapping[str, str]] | None = None) -> BatchOutcome | None:
        """A batch whose items' tensors are ``tensors``' rows (row i of each is item i's), served over arrays
        (``core.stacked_batch``), each item decided as ``predict_batch`` would; None when the batch is one to
        serve item by item (then nothing was recorded). ``request_ids`` and ``contexts``: each item's own ("" for
        an id the server makes), when the items have them. Raises ModelNotFoundError or DeadlineExpiredError."""
        started = time.perf_counter()
        _refuse_if_expired(deadline)
        loaded = self._loaded.repository.get(model, version)
        span = trace.get_current_span()
        if span.is_recording():  # the item-by-item path builds the span tree of a traced batch
            return None
        spec = loaded.spec
        count = tensors[0].shape[0] if tensors and tensors[0].shape else 0
        with self._metrics.in_flight(spec.name, spec.version, count):
            outcome = stacked_batch.serve(self._runner, loaded, tensors, _trace_id(span), request_ids, contexts)
        if outcome is None:
            return None
        self._metrics.record_columns(spec.name, spec.version, outcome.decisions, outcome.reasons, outcome.verifiers,
                                     outcome.confidences, (time.perf_counter() - started) / count)
        if self._decisions is not None:
            self._decisions.append_stacked(outcome, tensors, spec.log_inputs, caller)
        return outcome

    def _serve_batch(self, loaded: LoadedModel, served: list[tuple[int, PredictCall, dict[str, np.ndarray]]],
                     size: int, results: list[PredictOutcome | GuardError], current: Loaded) -> None:
        """The model over the served items, then each item's decision into its place in ``results``."""
        spec = loaded.spec
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({"smallguard.model.name": spec.name, "smallguard.model.version": spec.version,
                                 "smallguard.batch.size": size})
            with self._tracer.start_as_current_span("smallguard.model.run") as model_span:
                model_span.set_attributes({"smallguard.model.name": spec.name, "smallguard.batch.size": len(served)})
                heads = batch_steps.heads(loaded, [feeds for _, _, feeds in served])
        else:
            heads = batch_steps.heads(loaded, [feeds for _, _, feeds in served])
        for i, call, outcome in batch_steps.judged(self._runner, loaded, served, heads, [_trace_id(span)] * size,
                                                   results):
            try:
                if outcome.decision is Decision.ESCALATE and spec.escalation:  # item by item, within the deadline
                    outcome = self._escalate(call, loaded, outcome, current)
                results[i] = outcome
            except Exception:
                log.exception("batch item %d of model %s failed", i, spec.name)
                results[i] = ItemFailedError(batch_steps.FAILED_ITEM)

    def record_refused_call(self, reason: str, rpc: str) -> None:
        """Count a call the transport refused before it reached the service (``reason``: unauthenticated or
        permission_denied)."""
        self._metrics.record_refused_call(reason, rpc)

    def reject(self, status: str) -> None:
        """Count a Predict the transport answered with an error status (``status`` names the code)."""
        self._metrics.record_error(status)

    # ------------------------------------------------------------------------------ models

    def model_names(self) -> list[str]:
        return [model.spec.name for model in self._loaded.repository]

    def serves_over_arrays(self, model: str, version: str = "") -> bool:
        """Whether the model's batches may be served over arrays (``predict_stacked``); ModelNotFoundError for an
        unknown model."""
        return stacked_batch.takes(self._loaded.repository.get(model, version))

    def kind(self, model: str, version: str = "") -> ModelKind:
        """What the model is (a classifier or an extractor); ModelNotFoundError for an unknown one."""
        return self._loaded.repository.get(model, version).spec.kind

    def report(self, name: str) -> ModelReport:
        """One model's report; ModelNotFoundError for an unknown name."""
        loaded = self._loaded
        model = loaded.repository.get(name)
        snapshot = model.drift.snapshot() if model.drift is not None else drift.off(model.spec)
        summary = self._feedback.summary(name) if self._feedback is not None else None
        cascade = loaded.cascades.get(name)
        tiers = () if cascade is None else tuple((slot.tier.spec, slot.breaker.state) for slot in cascade.slots)
        return ModelReport(model, snapshot, summary, tiers)

    def reports(self) -> list[ModelReport]:
        return [self.report(name) for name in self.model_names()]

    def on_drift_change(self, listener: Callable[[str, bool], None]) -> None:
        """Call ``listener(model name, drifted)`` whenever a monitored model starts or stops being drifted (the
        models loaded now, and those a reload brings)."""
        self._drift_listeners.append(listener)
        self._subscribe(self._loaded.repository, [listener])

    def _subscribe(self, repository: ModelRepository, listeners: Sequence[Callable[[str, bool], None]]) -> None:
        for model in repository:
            if model.drift is not None:
                for listener in listeners:
                    model.drift.subscribe(lambda snapshot, name=model.spec.name, hear=listener:
                                          hear(name, snapshot.drifted))

    def drift_monitors(self) -> list[drift.DriftMonitor]:
        """The drift monitors of the models loaded now."""
        return [model.drift for model in self._loaded.repository if model.drift is not None]

    def circuits(self) -> list[tuple[str, str, str, str]]:
        """(model, version, tier, circuit state) of every escalation tier loaded now."""
        return [(cascade.model.spec.name, cascade.model.spec.version, slot.tier.spec.name, slot.breaker.state)
                for cascade in self._loaded.cascades.values() for slot in cascade.slots]

    def specs(self) -> dict[str, BundleSpec]:
        """The bundles loaded now, by name."""
        return self._loaded.repository.specs()

    # ------------------------------------------------------------------------------ reloading

    def parts(self) -> tuple[VerifierRunner, GuardMetrics, ReviewQueue | None]:
        """What a reload builds new tiers with: the verifier runner, the metrics and the review queue."""
        return self._runner, self._metrics, self._review

    def replace_models(self, repository: ModelRepository, cascades: Mapping[str, Cascade],
                       retire_after_s: float = 30.0) -> None:
        """Serve ``repository`` from now on. Requests already running finish with the models they began with;
        the old tiers are closed ``retire_after_s`` later, once those requests are long done."""
        old = self._loaded
        specs = repository.specs()
        if self._feedback is not None:
            self._feedback.update_specs(specs)
        if self._review is not None:
            self._review.update_specs(specs)
        self._subscribe(repository, self._drift_listeners)
        self._loaded = self._loaded_set(repository, cascades)
        retire = threading.Timer(retire_after_s, lambda: [cascade.close() for cascade in old.cascades.values()])
        retire.daemon = True
        retire.start()
        self._retired.append(retire)

    # ------------------------------------------------------------------------------ Feedback

    def feedback(self, call: FeedbackCall) -> FeedbackResult:
        """Judge ground truth against the recorded prediction; see ``observability.feedback``."""
        if self._feedback is None:
            raise FeedbackOffError("this guard keeps no record of its predictions")
        return self._feedback.submit(call)

    # ------------------------------------------------------------------------------ the review queue

    @property
    def review(self) -> ReviewQueue:
        """The review queue (cases, claims, resolutions); ReviewOffError when this guard keeps none."""
        if self._review is None:
            raise ReviewOffError("this guard keeps no review queue (it has no store)")
        return self._review

    def list_cases(self, state: str = "", model: str = "", reason: str = "", limit: int = 0,
                   after_id: int = 0) -> tuple[list[CaseRow], QueueCounts]:
        queue = self.review
        return queue.list(state, model, reason, limit, after_id), queue.counts()

    def cascade(self, name: str) -> Cascade | None:
        """The escalation tiers of model ``name`` (None when it has none, or this guard calls none)."""
        return self._loaded.cascades.get(name)

    def on_store_health(self, listener: Callable[[bool, str], None]) -> None:
        """Call ``listener(up, reason)`` whenever the store starts or stops taking the decision log's writes."""
        if self._decisions is not None:
            self._decisions.subscribe(listener)

    def close(self) -> None:
        """Stop the tiers and the verifier threads; write the decisions still buffered, then let the store go."""
        for retire in self._retired:
            retire.cancel()
        for cascade in self._loaded.cascades.values():
            cascade.close()
        self._runner.close()
        if self._decisions is not None:
            self._decisions.close()
            self._decisions.store.close()


def _refuse_if_expired(deadline: float | None) -> None:
    """Raise DeadlineExpiredError when the caller's deadline has passed: nobody waits for the work any more."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExpiredError("the caller's deadline passed while the request waited for a thread; it was "
                                   "not served (the server is overloaded, or the deadline too short)")


def _trace_id(span: trace.Span) -> str:
    """The trace this call belongs to (the caller's, sampled or not); empty when there is none."""
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


def _verifier_attributes(outcomes: tuple[VerifierOutcome, ...]) -> dict[str, int | list[str]]:
    return {
        "smallguard.verifiers.count": len(outcomes),
        "smallguard.verifiers.failed": [o.name for o in outcomes if o.status is Status.FAILED],
        "smallguard.verifiers.errored": [o.name for o in outcomes if o.status is Status.ERROR],
    }


def _annotate(span: trace.Span, model: LoadedModel, request_id: str, decision: str, reasons: tuple[Reason, ...],
              confidence: float, raw_confidence: float, verified: dict[str, int | list[str]]) -> None:
    """The call's attributes on its server span; ``verified``: its verifier span's (the same failed and errored
    lists, made once)."""
    span.set_attributes({
        "smallguard.model.name": model.spec.name,
        "smallguard.model.version": model.spec.version,
        "smallguard.request_id": request_id,
        "smallguard.decision": decision,
        "smallguard.reasons": [r.code._value_ for r in reasons],
        "smallguard.confidence": confidence,
        "smallguard.confidence.raw": raw_confidence,
        "smallguard.threshold": model.threshold,
        "smallguard.verifiers.failed": verified["smallguard.verifiers.failed"],
        "smallguard.verifiers.errored": verified["smallguard.verifiers.errored"],
    })
