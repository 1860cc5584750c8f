"""The Guard: the one object every transport and command calls, and the Predict path, top to bottom.

``predict`` checks the inputs, runs the model's head (model run and calibration), runs every
verifier, applies the decision policy and the drift rule, and records the outcome (metrics, the
feedback record). The other methods answer the rest of the API: what is loaded, feedback on a past
prediction, and the rejections the transport made before a request reached the core.

It knows nothing of gRPC. It annotates the current span (the transport's server span, when
there is one) with the ``smallguard.*`` attributes and opens child spans for the model run
and the verifiers, so one trace shows where the time and the decision came from.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import trace

from smallguard.server.core.inputs import feeds_for
from smallguard.server.core.models import LoadedModel, ModelRepository
from smallguard.server.core.policy import decide, escalate_when_drifted
from smallguard.server.core.verifier_runner import VerifierRunner
from smallguard.server.domain.errors import GuardError
from smallguard.server.domain.predictions import PredictCall, PredictOutcome
from smallguard.server.observability import drift
from smallguard.server.observability.feedback import Feedback, FeedbackCall, FeedbackResult, FeedbackSummary
from smallguard.server.observability.instruments import GuardMetrics
from smallguard.verifiers import Status

_tracer = trace.get_tracer("smallguard")


class FeedbackOffError(GuardError):
    """This guard keeps no record of its predictions (an offline replay), so feedback has nothing to match."""


@dataclass(frozen=True, slots=True)
class ModelReport:
    """What GetModel and ListModels show of one model: what is loaded, its drift and its feedback now."""

    model: LoadedModel
    drift: drift.DriftSnapshot
    feedback: FeedbackSummary | None  # None: this guard keeps no feedback record


class Guard:
    """The protocol-neutral facade over the loaded models and everything that watches them.

    Every collaborator is passed in, built by ``smallguard.server.assembly``; ``feedback`` is None
    for a guard that keeps no record of its predictions (``smallguard evaluate``).
    """

    def __init__(self, repository: ModelRepository, runner: VerifierRunner, metrics: GuardMetrics,
                 feedback: Feedback | None) -> None:
        self._repository = repository
        self._runner = runner
        self._metrics = metrics
        self._feedback = feedback

    # ------------------------------------------------------------------------------ Predict

    def predict(self, call: PredictCall) -> PredictOutcome:
        """One prediction, one decision. Raises ModelNotFoundError or InvalidInputError."""
        started = time.perf_counter()
        model = self._repository.get(call.model, call.version)
        with self._metrics.in_flight(model.spec.name, model.spec.version):
            outcome = self._predict(call, model)
        self._metrics.record_prediction(outcome, time.perf_counter() - started)
        if self._feedback is not None:
            self._feedback.remember(outcome)
        return outcome

    def _predict(self, call: PredictCall, model: LoadedModel) -> PredictOutcome:
        feeds = feeds_for(model.spec.inputs, call)
        request_id = call.request_id or uuid.uuid4().hex
        span = trace.get_current_span()
        with _tracer.start_as_current_span("smallguard.model.run") as model_span:
            model_span.set_attribute("smallguard.model.name", model.spec.name)
            head = model.head.predict(feeds)
        prediction, confidence, raw_confidence = head.prediction, head.confidence, head.raw_confidence
        with _tracer.start_as_current_span("smallguard.verifiers.run") as verify_span:
            outcomes = self._runner.run(model.verifiers, prediction, call.context,
                                        model.spec.policy.verifier_timeout_ms)
            failed = [o.name for o in outcomes if o.status is Status.FAILED]
            errored = [o.name for o in outcomes if o.status is Status.ERROR]
            verify_span.set_attribute("smallguard.verifiers.count", len(outcomes))
            verify_span.set_attribute("smallguard.verifiers.failed", failed)
            verify_span.set_attribute("smallguard.verifiers.errored", errored)
        decision, reasons = decide(confidence, model.threshold, model.spec.policy.on_low_confidence,
                                   outcomes, calibrated=model.calibration is not None, low_fields=head.low_fields)
        if model.drift is not None:  # observed before the drift rule: its own escalations are not drift
            model.drift.observe(feeds, confidence, decision)
            if model.drift.escalating:
                decision, reasons = escalate_when_drifted(decision, reasons, model.drift.message)
        _annotate(span, model, request_id, decision.name, [r.code.value for r in reasons],
                  confidence, raw_confidence, failed, errored)
        context = span.get_span_context()
        return PredictOutcome(
            request_id=request_id,
            model=model.spec.name,
            model_version=model.spec.version,
            decision=decision,
            prediction=prediction,
            confidence=confidence,
            raw_confidence=raw_confidence,
            threshold=model.threshold,
            reasons=reasons,
            verifiers=outcomes,
            trace_id=trace.format_trace_id(context.trace_id) if context.is_valid else "",
        )

    def reject(self, status: str) -> None:
        """Count a Predict the transport answered with an error status (``status`` names the code)."""
        self._metrics.record_error(status)

    # ------------------------------------------------------------------------------ models

    def model_names(self) -> list[str]:
        return [model.spec.name for model in self._repository]

    def report(self, name: str) -> ModelReport:
        """One model's report; ModelNotFoundError for an unknown name."""
        model = self._repository.get(name)
        snapshot = model.drift.snapshot() if model.drift is not None else drift.off(model.spec)
        summary = self._feedback.summary(name) if self._feedback is not None else None
        return ModelReport(model, snapshot, summary)

    def reports(self) -> list[ModelReport]:
        return [self.report(name) for name in self.model_names()]

    def on_drift_change(self, listener: Callable[[str, bool], None]) -> None:
        """Call ``listener(model name, drifted)`` whenever a monitored model starts or stops being drifted."""
        for model in self._repository:
            if model.drift is not None:
                model.drift.subscribe(lambda snapshot, name=model.spec.name: listener(name, snapshot.drifted))

    # ------------------------------------------------------------------------------ Feedback

    def feedback(self, call: FeedbackCall) -> FeedbackResult:
        """Judge ground truth against the recorded prediction; see ``observability.feedback``."""
        if self._feedback is None:
            raise FeedbackOffError("this guard keeps no record of its predictions")
        return self._feedback.submit(call)

    def close(self) -> None:
        self._runner.close()


def _annotate(span: trace.Span, model: LoadedModel, request_id: str, decision: str, reasons: list[str],
              confidence: float, raw_confidence: float, failed: list[str], errored: list[str]) -> None:
    if not span.is_recording():
        return
    span.set_attributes({
        "smallguard.model.name": model.spec.name,
        "smallguard.model.version": model.spec.version,
        "smallguard.request_id": request_id,
        "smallguard.decision": decision,
        "smallguard.reasons": reasons,
        "smallguard.confidence": confidence,
        "smallguard.confidence.raw": raw_confidence,
        "smallguard.threshold": model.threshold,
        "smallguard.verifiers.failed": failed,
        "smallguard.verifiers.errored": errored,
    })
