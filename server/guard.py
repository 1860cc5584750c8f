"""The Predict path, protocol-neutral: validate, run the model, calibrate, verify, decide.

It knows nothing of gRPC. It annotates the current span (the transport's server span, when
there is one) with the ``smallguard.*`` attributes and opens child spans for the model run
and the verifiers, so one trace shows where the time and the decision came from.
"""

from __future__ import annotations

import time
import uuid

from opentelemetry import trace

from smallguard.server.feedback import Feedback
from smallguard.server.inputs import feeds_for
from smallguard.server.metrics import GuardMetrics
from smallguard.server.policy import decide, escalate_when_drifted
from smallguard.server.repository import LoadedModel, ModelRepository
from smallguard.server.types import PredictCall, PredictOutcome
from smallguard.server.verification import VerifierRunner
from smallguard.verifiers import Status

_tracer = trace.get_tracer("smallguard")


class Guard:
    def __init__(self, repository: ModelRepository, runner: VerifierRunner,
                 metrics: GuardMetrics | None = None, feedback: Feedback | None = None) -> None:
        self.repository = repository
        self._runner = runner
        self.metrics = GuardMetrics() if metrics is None else metrics
        # remembers each prediction so that ground truth sent later can be matched to it
        self.feedback = Feedback(repository, self.metrics) if feedback is None else feedback
        self.metrics.watch_drift(lambda: [m.drift for m in repository if m.drift is not None])

    def close(self) -> None:
        self._runner.close()

    def predict(self, call: PredictCall) -> PredictOutcome:
        """One prediction, one decision. Raises ModelNotFoundError or InvalidInputError."""
        started = time.perf_counter()
        model = self.repository.get(call.model, call.version)
        with self.metrics.in_flight(model.spec.name, model.spec.version):
            outcome = self._predict(call, model)
        self.metrics.record_prediction(outcome, time.perf_counter() - started)
        self.feedback.remember(outcome)
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
