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

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

from opentelemetry.metrics import Meter, MeterProvider, NoOpMeterProvider

from smallguard.server.types import PredictOutcome

MODEL = "smallguard.model.name"
VERSION = "smallguard.model.version"
DECISION = "smallguard.decision"
REASON = "smallguard.reason"
VERIFIER = "smallguard.verifier.name"
STATUS = "smallguard.verifier.status"
ERROR_TYPE = "error.type"
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

    @classmethod
    def from_provider(cls, provider: MeterProvider | None) -> GuardMetrics:
        if provider is None:
            return cls()
        return cls(provider.get_meter("smallguard", _package_version()))

    @contextmanager
    def in_flight(self, model: str, model_version: str) -> Iterator[None]:
        """Count a prediction as in flight for the duration of the block, however it ends."""
        attributes = {MODEL: model, VERSION: model_version}
        self._in_flight.add(1, attributes)
        try:
            yield
        finally:
            self._in_flight.add(-1, attributes)

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

    def record_error(self, status_code_name: str) -> None:
        """A Predict the server answered with an error status (INVALID_ARGUMENT, NOT_FOUND, INTERNAL)."""
        self._errors.add(1, {ERROR_TYPE: status_code_name})
