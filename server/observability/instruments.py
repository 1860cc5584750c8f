"""The guard's OpenTelemetry metrics: every instrument in one place, recorded through one small class.

Names follow the OpenTelemetry conventions (dot-separated, UCUM units); the Prometheus names
the exporter derives from them are in the README's "Metrics" section. Attributes are the
span attributes' ``smallguard.*`` keys, and only ever take values from a bounded set (loaded
model names and versions, decisions, reason codes, verifier names, statuses): a caller's
request cannot create a new series.

Without a meter provider the instruments come from OpenTelemetry's no-op meter, so the
guard runs the same whether or not metrics are exported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, NoOpMeterProvider, Observation

from smallguard.server.domain.predictions import PredictOutcome

if TYPE_CHECKING:
    from smallguard.server.observability.drift import DriftMonitor
    from smallguard.server.observability.feedback.collector import FeedbackSummary

MODEL = "smallguard.model.name"
VERSION = "smallguard.model.version"
DECISION = "smallguard.decision"
REASON = "smallguard.reason"
VERIFIER = "smallguard.verifier.name"
STATUS = "smallguard.verifier.status"
ERROR_TYPE = "error.type"
FEEDBACK_OUTCOME = "smallguard.feedback.outcome"
DRIFT_SIGNAL = "smallguard.drift.signal"
NO_REASON = "NONE"

# A classifier's top-1 calibrated probability is at least 1/K, mostly above 0.5; the
# interesting part (is it at the threshold, is it drifting towards it) is near 1.
CONFIDENCE_BUCKETS = (0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
# A Predict on a small ONNX model takes a few milliseconds; the tail reaches the verifier budget.
DURATION_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


def _package_version() -> str:
    try:
        return version("smallguard")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
        return ""


class GuardMetrics:
    """The guard's instruments. ``GuardMetrics()`` records nothing; pass a meter (or use
    ``from_provider``) to record into it."""

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter or NoOpMeterProvider().get_meter("smallguard")
        self._predictions = meter.create_counter(
            "smallguard.predictions", unit="{prediction}",
            description="Predictions by model, decision and primary (first) reason code, NONE when there was none")
        self._reasons = meter.create_counter(
            "smallguard.prediction.reasons", unit="{prediction}",
            description="Predictions that carried each reason code (counted once per prediction and code)")
        self._verifier_outcomes = meter.create_counter(
            "smallguard.verifier.outcomes", unit="{outcome}",
            description="Verifier results by model, verifier and status (passed, failed, error, skipped)")
        self._confidence = meter.create_histogram(
            "smallguard.confidence", unit="1", description="Calibrated confidence of each prediction",
            explicit_bucket_boundaries_advisory=CONFIDENCE_BUCKETS)
        self._duration = meter.create_histogram(
            "smallguard.predict.duration", unit="s",
            description="Time to validate, run, calibrate, verify and decide one prediction",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self._in_flight = meter.create_up_down_counter(
            "smallguard.predict.active_requests", unit="{request}", description="Predictions being computed now")
        self._errors = meter.create_counter(
            "smallguard.predict.errors", unit="{request}",
            description="Predict requests rejected with a gRPC status, by status code name")
        self._feedback = meter.create_counter(
            "smallguard.feedback.received", unit="{feedback}",
            description="Feedback calls by outcome: matched, duplicate, unknown_request, expired, invalid, conflict")
        self._meter = meter

    @classmethod
    def from_provider(cls, provider: MeterProvider | None) -> GuardMetrics:
        if provider is None:
            return cls()
        return cls(provider.get_meter("smallguard", _package_version()))

    @contextmanager
    def in_flight(self, model: str, model_version: str, count: int = 1) -> Iterator[None]:
        """Count ``count`` predictions as in flight for the duration of the block, however it ends."""
        attributes = {MODEL: model, VERSION: model_version}
        self._in_flight.add(count, attributes)
        try:
            yield
        finally:
            self._in_flight.add(-count, attributes)

    def record_prediction(self, outcome: PredictOutcome, duration_s: float) -> None:
        model = {MODEL: outcome.model, VERSION: outcome.model_version}
        decision = outcome.decision.name
        codes = [reason.code.value for reason in outcome.reasons]
        self._predictions.add(1, {**model, DECISION: decision, REASON: codes[0] if codes else NO_REASON})
        # Once per distinct code: two failed verifiers make one VERIFIER_FAILED prediction, so
        # reasons/predictions is the fraction of predictions that carried the code.
        for code in dict.fromkeys(codes):
            self._reasons.add(1, {**model, DECISION: decision, REASON: code})
        for verifier in outcome.verifiers:
            self._verifier_outcomes.add(1, {**model, VERIFIER: verifier.name, STATUS: verifier.status.value})
        self._confidence.record(outcome.confidence, model)
        self._duration.record(duration_s, {**model, DECISION: decision})

    def watch_feedback(self, source: Callable[[], Iterable[FeedbackSummary]]) -> None:
        """Register the feedback gauges: they read ``source()`` (one summary per model) whenever metrics are
        collected. Called once, by whoever assembles the guard."""
        for name, unit, read, description in _FEEDBACK_GAUGES:
            self._meter.create_observable_gauge(name, callbacks=[_observe(source, read)], unit=unit,
                                                description=description)

    def record_feedback(self, outcome: str, model: str = "", model_version: str = "") -> None:
        """One Feedback call; the model only when the request id matched a recorded prediction."""
        attributes = {FEEDBACK_OUTCOME: outcome}
        if model:
            attributes.update({MODEL: model, VERSION: model_version})
        self._feedback.add(1, attributes)

    def watch_drift(self, monitors: Iterable[DriftMonitor]) -> None:
        """Register the drift gauges over ``monitors``, read whenever metrics are collected. Called once, by
        whoever assembles the guard."""
        monitors = tuple(monitors)

        def scores(_options: CallbackOptions) -> list[Observation]:
            """Each signal's score, evaluated now; none while a model has fewer than min_samples predictions."""
            return [Observation(s.score, {MODEL: m.model, VERSION: m.version, DRIFT_SIGNAL: s.signal})
                    for m in monitors for s in m.snapshot().scores]

        def limits(_options: CallbackOptions) -> list[Observation]:
            return [Observation(limit, {MODEL: m.model, VERSION: m.version, DRIFT_SIGNAL: signal})
                    for m in monitors for signal, limit in m.limits()]

        self._meter.create_observable_gauge(
            "smallguard.drift.score", callbacks=[scores], unit="1",
            description="Drift of the model's recent predictions from its reference profile, by signal: PSI for "
                        "confidence and inputs, live minus reference share for escalation_rate and abstention_rate")
        self._meter.create_observable_gauge(
            "smallguard.drift.limit", callbacks=[limits], unit="1",
            description="The bundle's limit for each drift signal; a score past it marks the model drifted")

    def record_error(self, status_code_name: str) -> None:
        """A Predict the server answered with an error status (INVALID_ARGUMENT, NOT_FOUND, INTERNAL)."""
        self._errors.add(1, {ERROR_TYPE: status_code_name})


def _observe(source: Callable[[], Iterable[FeedbackSummary]],
             read: Callable[[FeedbackSummary], float]) -> Callable[[CallbackOptions], list[Observation]]:
    def callback(_options: CallbackOptions) -> list[Observation]:
        return [Observation(read(s), {MODEL: s.model, VERSION: s.version}) for s in source() if s.accuracy.labelled]
    return callback


# Gauges over each model's window of labelled answered predictions (no series before the first label).
_FEEDBACK_GAUGES: tuple[tuple[str, str, Callable[[FeedbackSummary], float], str], ...] = (
    ("smallguard.feedback.accuracy.observed", "1", lambda s: s.accuracy.observed,
     "Share of labelled answered predictions that were right"),
    ("smallguard.feedback.accuracy.estimated", "1", lambda s: s.accuracy.estimated,
     "Mean calibrated confidence of the same predictions: the accuracy the calibration promised"),
    ("smallguard.feedback.accuracy.gap", "1", lambda s: s.accuracy.gap,
     "Observed minus estimated accuracy; negative when the model is overconfident"),
    ("smallguard.feedback.accuracy.observed.lower", "1", lambda s: s.accuracy.low,
     "Lower end of the observed accuracy's (1 - alpha) Wilson interval"),
    ("smallguard.feedback.accuracy.observed.upper", "1", lambda s: s.accuracy.high,
     "Upper end of the observed accuracy's (1 - alpha) Wilson interval"),
    ("smallguard.feedback.labelled", "{prediction}", lambda s: s.accuracy.labelled,
     "Labelled answered predictions in the window the accuracies are computed over"),
    ("smallguard.feedback.calibration.drifted", "1", lambda s: float(s.accuracy.drifted),
     "1 when the gap is significant and beyond the bundle's tolerance (calibration has drifted), else 0"),
)
