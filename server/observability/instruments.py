"""The guard's OpenTelemetry metrics: every instrument in one place, recorded through one small class.

Names follow the OpenTelemetry conventions (dot-separated, UCUM units); the Prometheus names
the exporter derives from them are in the README's "Metrics" section. Attributes are the
span attributes' ``smallguard.*`` keys, and only ever take values from a bounded set (loaded
model names and versions, decisions, reason codes, verifier names, statuses): a caller's
request cannot create a new series.

Without a meter provider nothing is recorded, and the request path skips the metrics entirely.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, NoOpMeterProvider, Observation

from smallguard.server.domain.errors import GuardError
from smallguard.server.domain.predictions import Decision, PredictOutcome, Reason, VerifierOutcome
from smallguard.server.observability.histograms import SCOPE, OwnHistograms, scope_version

if TYPE_CHECKING:
    from smallguard.server.core.review import QueueCounts
    from smallguard.server.observability.drift import DriftMonitor
    from smallguard.server.observability.feedback.collector import FeedbackSummary
    from smallguard.server.store import DecisionLog

MODEL = "smallguard.model.name"
VERSION = "smallguard.model.version"
DECISION = "smallguard.decision"
REASON = "smallguard.reason"
VERIFIER = "smallguard.verifier.name"
STATUS = "smallguard.verifier.status"
ERROR_TYPE = "error.type"
FEEDBACK_OUTCOME = "smallguard.feedback.outcome"
DRIFT_SIGNAL = "smallguard.drift.signal"
TIER = "smallguard.tier.name"
AUTH_REASON = "smallguard.auth.reason"
RPC_METHOD = "rpc.method"
TIER_OUTCOME = "smallguard.tier.outcome"
CASE_STATE = "smallguard.review.state"
CASE_OUTCOME = "smallguard.review.outcome"
AGREED = "smallguard.review.agreed"
REVIEW_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 8 * 3600.0, 24 * 3600.0, 3 * 86400.0, 7 * 86400.0)
NO_REASON = "NONE"

# A classifier's top-1 calibrated probability is at least 1/K, mostly above 0.5; the
# interesting part (is it at the threshold, is it drifting towards it) is near 1.
CONFIDENCE_BUCKETS = (0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
# A tier is a larger model, a remote server or an LLM: milliseconds to tens of seconds.
TIER_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A Predict on a small ONNX model takes a few milliseconds; the tail reaches the verifier budget.
DURATION_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Tally:
    """Counts by attribute values, added to on the request path and read by an observable instrument.

    An increment is a dict update under a lock, far cheaper than a synchronous instrument's
    ``add``; the SDK reads the totals only when metrics are collected."""

    def __init__(self, keys: tuple[str, ...], lock: threading.Lock) -> None:
        self.keys = keys
        self.counts: dict[tuple[str, ...], int] = {}
        self._lock = lock  # the writers' lock: a read must not see the dictionary grow under it

    def observe(self, _options: CallbackOptions) -> list[Observation]:
        with self._lock:
            counts = list(self.counts.items())
        return [Observation(count, dict(zip(self.keys, values, strict=False))) for values, count in counts]


class GuardMetrics:
    """The guard's instruments. ``GuardMetrics()`` records nothing (and costs next to nothing on the
    request path); pass a meter (or use ``from_provider``) to record into it.

    Counters are tallied in plain dictionaries and exposed through observable instruments, read at
    collection time; only the two histograms are recorded per prediction."""

    def __init__(self, meter: Meter | None = None, own_histograms: OwnHistograms | None = None) -> None:
        self.recording = meter is not None
        meter = meter or NoOpMeterProvider().get_meter("smallguard")
        self._lock = threading.Lock()
        lock = self._lock
        self._predictions = _Tally((MODEL, VERSION, DECISION, REASON), lock)
        self._reasons = _Tally((MODEL, VERSION, DECISION, REASON), lock)
        self._verifier_outcomes = _Tally((MODEL, VERSION, VERIFIER, STATUS), lock)
        self._in_flight = _Tally((MODEL, VERSION), lock)
        self._errors = _Tally((ERROR_TYPE,), lock)
        self._feedback = _Tally((FEEDBACK_OUTCOME, MODEL, VERSION), lock)
        self._tier_outcomes = _Tally((MODEL, VERSION, TIER, TIER_OUTCOME), lock)
        self._tier_calls = _Tally((MODEL, VERSION, TIER), lock)
        self._tier_cost = _Tally((MODEL, VERSION, TIER), lock)
        self._refused = _Tally((AUTH_REASON, RPC_METHOD), lock)
        self._reviews = _Tally((MODEL, VERSION, CASE_OUTCOME), lock)
        self._agreement = _Tally((MODEL, VERSION, TIER, AGREED), lock)
        self._served_together = _Tally((MODEL, VERSION), lock)
        for name, tally, unit, description in (
            ("smallguard.predictions", self._predictions, "{prediction}",
             "Predictions by model, decision and primary (first) reason code, NONE when there was none"),
            ("smallguard.prediction.reasons", self._reasons, "{prediction}",
             "Predictions that carried each reason code (counted once per prediction and code)"),
            ("smallguard.verifier.outcomes", self._verifier_outcomes, "{outcome}",
             "Verifier results by model, verifier and status (passed, failed, error, skipped)"),
            ("smallguard.predict.errors", self._errors, "{request}",
             "Predict requests, and PredictBatch calls and items, rejected with a gRPC status, by status code name"),
            ("smallguard.feedback.received", self._feedback, "{feedback}",
             "Feedback calls by outcome: matched, duplicate, unknown_request, expired, invalid, conflict, "
             "store_error"),
            ("smallguard.tier.outcomes", self._tier_outcomes, "{request}",
             "Requests the cascade sent on to each escalation tier, by outcome: answer, declined (the tier's answer "
             "did not stand), error, circuit_open, busy (at its concurrency limit), no_time"),
            ("smallguard.tier.calls", self._tier_calls, "{call}",
             "Calls made to each escalation tier, retries included (what the tier bills)"),
            ("smallguard.auth.refused", self._refused, "{call}",
             "Calls refused for their credentials, by reason (unauthenticated, permission_denied) and RPC"),
            ("smallguard.review.closed", self._reviews, "{case}",
             "Review cases closed, by outcome: resolved (with the truth) or dismissed"),
            ("smallguard.review.agreement", self._agreement, "{case}",
             "Resolved review cases by tier and whether the tier's answer was the reviewer's truth (true, false)"),
            ("smallguard.predict.served_together", self._served_together, "{request}",
             "Predict calls served in one batch with the others that were ready at the same moment"),
            ("smallguard.tier.cost", self._tier_cost, "{cost}",
             "Cost of the calls made to each escalation tier, in the operators' unit (calls x the tier's cost)"),
        ):
            meter.create_observable_counter(name, callbacks=[tally.observe], unit=unit, description=description)
        meter.create_observable_up_down_counter(
            "smallguard.predict.active_requests", callbacks=[self._in_flight.observe], unit="{request}",
            description="Predictions being computed now")
        # The two histograms recorded on every prediction: the guard's own when the reader takes them (own_histograms,
        # the Prometheus endpoint's), else the SDK's
        histogram = _sdk_histogram(meter) if own_histograms is None else own_histograms.histogram
        self._confidence = histogram("smallguard.confidence", "1", "Calibrated confidence of each prediction",
                                     CONFIDENCE_BUCKETS, (MODEL, VERSION))
        self._duration = histogram(
            "smallguard.predict.duration", "s",
            "Time to validate, run, calibrate, verify and decide one prediction (a PredictBatch item: its share of the "
            "call)", DURATION_BUCKETS, (MODEL, VERSION, DECISION))
        self._tier_duration = meter.create_histogram(
            "smallguard.tier.duration", unit="s",
            description="Time each escalation tier took per request, retries and waits included",
            explicit_bucket_boundaries_advisory=TIER_DURATION_BUCKETS)
        self._review_duration = meter.create_histogram(
            "smallguard.review.duration", unit="s",
            description="Time from a review case's opening to its resolution or dismissal",
            explicit_bucket_boundaries_advisory=REVIEW_BUCKETS)
        self._meter = meter

    @classmethod
    def from_provider(cls, provider: MeterProvider | None, own_histograms: OwnHistograms | None = None) -> GuardMetrics:
        """Instruments of ``provider``'s meter; ``own_histograms``: the reader's, when it takes the guard's own."""
        if provider is None:
            return cls()
        return cls(provider.get_meter(SCOPE, scope_version()), own_histograms)

    def in_flight(self, model: str, model_version: str, count: int = 1) -> AbstractContextManager[None]:
        """Count ``count`` predictions as in flight for the duration of the block, however it ends."""
        if not self.recording:
            return _NOTHING
        return _InFlight(self, (model, model_version), count)

    def record_prediction(self, outcome: PredictOutcome, duration_s: float) -> None:
        if not self.recording:
            return
        with self._lock:
            self._count(outcome)
        self._observe(outcome, duration_s)

    def record_predictions(self, outcomes: Sequence[PredictOutcome], duration_s: float) -> None:
        """``record_prediction`` for each of a batch's outcomes, each taking ``duration_s``: one lock for all."""
        if not self.recording:
            return
        with self._lock:
            for outcome in outcomes:
                self._count(outcome)
        for outcome in outcomes:
            self._observe(outcome, duration_s)

    def record_columns(self, model: str, version: str, decisions: Sequence[Decision],
                       reasons: Sequence[Sequence[Reason]], verifiers: Sequence[Sequence[VerifierOutcome]],
                       confidences: Sequence[float], duration_s: float) -> None:
        """``record_predictions`` for a batch given as columns (its items answered by the model: no tiers), each
        item taking ``duration_s``. Items that share their reasons or verifier outcomes (the same objects) are
        counted together."""
        if not self.recording:
            return
        codes_of: dict[int, tuple[Sequence[Reason], list[str]]] = {}
        keys = []
        for decision, items in zip(decisions, reasons, strict=True):
            codes = codes_of.get(id(items))
            if codes is None or codes[0] is not items:
                codes = codes_of[id(items)] = (items, [reason.code._value_ for reason in items])
            keys.append((decision._name_, id(items)))
        shared = Counter(map(id, verifiers))
        outcomes = {id(items): items for items in verifiers}
        with self._lock:
            for (decision, reasons_id), count in Counter(keys).items():
                codes = codes_of[reasons_id][1]
                _bump(self._predictions.counts, (model, version, decision, codes[0] if codes else NO_REASON), count)
                for code in dict.fromkeys(codes):
                    _bump(self._reasons.counts, (model, version, decision, code), count)
            for outcomes_id, count in shared.items():
                for verifier in outcomes[outcomes_id]:
                    _bump(self._verifier_outcomes.counts, (model, version, verifier.name, verifier.status._value_),
                          count)
        self._confidence.record_many((model, version), confidences)
        for decision, count in Counter(decisions).items():
            self._duration.record_many((model, version, decision._name_), itertools.repeat(duration_s, count))

    def _count(self, outcome: PredictOutcome) -> None:
        """Add ``outcome`` to the tallies (the caller holds the lock)."""
        # the enums' _name_ and _value_: .name and .value go through a Python-level descriptor on every call
        model, version, decision = outcome.model, outcome.model_version, outcome.decision._name_
        codes = [reason.code._value_ for reason in outcome.reasons]
        _bump(self._predictions.counts, (model, version, decision, codes[0] if codes else NO_REASON))
        # Once per distinct code: two failed verifiers make one VERIFIER_FAILED prediction, so
        # reasons/predictions is the fraction of predictions that carried the code.
        for code in dict.fromkeys(codes):
            _bump(self._reasons.counts, (model, version, decision, code))
        for verifier in outcome.verifiers:
            _bump(self._verifier_outcomes.counts, (model, version, verifier.name, verifier.status._value_))

    def _observe(self, outcome: PredictOutcome, duration_s: float) -> None:
        # The model's own confidence, also when an escalation tier answered: the histogram watches this model.
        confidence = outcome.tiers[0].confidence if outcome.tiers else outcome.confidence
        self._confidence.record((outcome.model, outcome.model_version), confidence)
        self._duration.record((outcome.model, outcome.model_version, outcome.decision._name_), duration_s)

    def _add(self, tally: _Tally, values: tuple[str, ...], count: int = 1) -> None:
        with self._lock:
            tally.counts[values] = tally.counts.get(values, 0) + count

    def watch_feedback(self, source: Callable[[], Iterable[FeedbackSummary]]) -> None:
        """Register the feedback gauges: they read ``source()`` (one summary per model) whenever metrics are
        collected. Called once, by whoever assembles the guard."""
        for name, unit, read, description in _FEEDBACK_GAUGES:
            self._meter.create_observable_gauge(name, callbacks=[_observe(source, read)], unit=unit,
                                                description=description)

    def watch_decision_log(self, log: DecisionLog) -> None:
        """Register the store's instruments, read from the decision log whenever metrics are collected."""
        for name, read, description in (
            ("smallguard.store.decisions.written", lambda: log.written_rows, "Decisions written to the store"),
            ("smallguard.store.decisions.dropped", lambda: log.dropped,
             "Decisions not logged: the buffer was full while the store was slow or down, or the store refused "
             "the decision's row"),
            ("smallguard.store.write_errors", lambda: log.failed_writes,
             "Decision-log writes the store did not answer (each is retried)"),
        ):
            self._meter.create_observable_counter(name, callbacks=[_constant(read)], unit="{decision}"
                                                  if "decisions" in name else "{write}", description=description)
        self._meter.create_observable_gauge("smallguard.store.up", callbacks=[_constant(lambda: int(log.up))],
                                            unit="1", description="1 while the store takes the decision log's "
                                                                  "writes, 0 while they fail")
        self._meter.create_observable_up_down_counter(
            "smallguard.store.decisions.pending", callbacks=[_constant(lambda: log.pending)], unit="{decision}",
            description="Decisions buffered in memory, not yet written to the store")

    def watch_review_queue(self, counts: Callable[[], QueueCounts]) -> None:
        """Register the review queue's gauges, read from the store whenever metrics are collected (nothing is
        reported while the store cannot be read)."""
        def read() -> QueueCounts | None:
            try:
                return counts()
            except GuardError:
                return None

        def cases(_options: CallbackOptions) -> list[Observation]:
            now = read()
            return [] if now is None else [Observation(n, {MODEL: model, CASE_STATE: state})
                                           for (model, state), n in sorted(now.counts.items())]

        def oldest(_options: CallbackOptions) -> list[Observation]:
            now = read()
            return [] if now is None else [Observation(max(0.0, time.time() - opened), {MODEL: model})
                                           for model, opened in sorted(now.oldest_open.items())]

        self._meter.create_observable_gauge("smallguard.review.cases", callbacks=[cases], unit="{case}",
                                            description="Review cases by model and state (open, claimed, resolved, "
                                                        "dismissed); an expired claim counts as open")
        self._meter.create_observable_gauge("smallguard.review.oldest_open_age", callbacks=[oldest], unit="s",
                                            description="Age of each model's oldest open review case")

    def record_review(self, model: str, model_version: str, outcome: str, seconds: float,
                      agreement: Iterable[tuple[str, bool]] = ()) -> None:
        """A review case closed (``outcome``: resolved or dismissed) ``seconds`` after it opened; for a resolution,
        whether each tier that answered agreed with the reviewer."""
        if not self.recording:
            return
        self._add(self._reviews, (model, model_version, outcome))
        for tier, agreed in agreement:
            self._add(self._agreement, (model, model_version, tier, "true" if agreed else "false"))
        self._review_duration.record(seconds, {MODEL: model, VERSION: model_version, CASE_OUTCOME: outcome})

    def record_served_together(self, model: str, model_version: str, calls: int) -> None:
        """``calls`` Predict calls served in one batch; 0 starts the series of a model that may batch."""
        if self.recording:
            self._add(self._served_together, (model, model_version), calls)

    def record_feedback(self, outcome: str, model: str = "", model_version: str = "") -> None:
        """One Feedback call; the model only when the request id matched a recorded prediction."""
        if self.recording:
            self._add(self._feedback, (outcome, model, model_version) if model else (outcome,))

    def watch_drift(self, monitors: Callable[[], Iterable[DriftMonitor]]) -> None:
        """Register the drift gauges over ``monitors()`` (the models loaded at collection time: a reload changes
        them), read whenever metrics are collected. Called once, by whoever assembles the guard."""
        def scores(_options: CallbackOptions) -> list[Observation]:
            """Each signal's score, evaluated now; none while a model has fewer than min_samples predictions."""
            return [Observation(s.score, {MODEL: m.model, VERSION: m.version, DRIFT_SIGNAL: s.signal})
                    for m in monitors() for s in m.snapshot().scores]

        def limits(_options: CallbackOptions) -> list[Observation]:
            return [Observation(limit, {MODEL: m.model, VERSION: m.version, DRIFT_SIGNAL: signal})
                    for m in monitors() for signal, limit in m.limits()]

        self._meter.create_observable_gauge(
            "smallguard.drift.score", callbacks=[scores], unit="1",
            description="Drift of the model's recent predictions from its reference profile, by signal: PSI for "
                        "confidence and inputs, live minus reference share for escalation_rate and abstention_rate")
        self._meter.create_observable_gauge(
            "smallguard.drift.limit", callbacks=[limits], unit="1",
            description="The bundle's limit for each drift signal; a score past it marks the model drifted")

    def record_tier(self, model: str, model_version: str, tier: str, outcome: str, calls: int, cost: float,
                    duration_s: float | None) -> None:
        """One request's turn at an escalation tier: its outcome, the calls it made, what they cost and how long
        it took (None when the tier was not called)."""
        if not self.recording:
            return
        values = (model, model_version, tier)
        with self._lock:
            _bump(self._tier_outcomes.counts, (*values, outcome))
            if calls:
                self._tier_calls.counts[values] = self._tier_calls.counts.get(values, 0) + calls
                self._tier_cost.counts[values] = self._tier_cost.counts.get(values, 0) + cost
        if duration_s is not None:
            self._tier_duration.record(duration_s, {MODEL: model, VERSION: model_version, TIER: tier})

    def watch_circuits(self, circuits: Callable[[], Iterable[tuple[str, str, str, str]]]) -> None:
        """Register the circuit gauge over ``circuits()``: (model, version, tier, state) of every escalation tier
        loaded at collection time. Called once, by whoever assembles the guard."""
        def states(_options: CallbackOptions) -> list[Observation]:
            return [Observation(1.0 if state == "open" else 0.0, {MODEL: model, VERSION: version, TIER: tier})
                    for model, version, tier, state in circuits()]

        self._meter.create_observable_gauge(
            "smallguard.tier.circuit_open", callbacks=[states], unit="1",
            description="1 while a tier's circuit breaker is open (the tier is not called), else 0")

    def record_refused_call(self, reason: str, rpc: str) -> None:
        if self.recording:
            self._add(self._refused, (reason, rpc.rsplit("/", 1)[-1]))

    def record_error(self, status_code_name: str) -> None:
        """A Predict the server answered with an error status (INVALID_ARGUMENT, NOT_FOUND, INTERNAL)."""
        if self.recording:
            self._add(self._errors, (status_code_name,))


class _InFlight(AbstractContextManager[None]):
    """A class rather than a generator-based context manager: this runs on every request."""

    __slots__ = ("_count", "_metrics", "_values")

    def __init__(self, metrics: GuardMetrics, values: tuple[str, ...], count: int) -> None:
        self._metrics, self._values, self._count = metrics, values, count

    def __enter__(self) -> None:
        self._metrics._add(self._metrics._in_flight, self._values, self._count)

    def __exit__(self, *_exc: object) -> None:
        self._metrics._add(self._metrics._in_flight, self._values, -self._count)


_NOTHING = nullcontext()


class _SdkHistogram:
    """An SDK histogram recorded with ``record(values, amount)``, as the guard's own: each attribute set's
    dictionary is built once."""

    __slots__ = ("_attributes", "_instrument", "_keys")

    def __init__(self, instrument: Histogram, keys: tuple[str, ...]) -> None:
        self._instrument, self._keys = instrument, keys
        self._attributes: dict[tuple[str, ...], dict[str, str]] = {}

    def record(self, values: tuple[str, ...], amount: float) -> None:
        attributes = self._attributes.get(values)
        if attributes is None:
            attributes = self._attributes[values] = dict(zip(self._keys, values, strict=True))
        self._instrument.record(amount, attributes)

    def record_many(self, values: tuple[str, ...], amounts: Iterable[float]) -> None:
        for amount in amounts:
            self.record(values, amount)


def _sdk_histogram(meter: Meter) -> Callable[[str, str, str, Sequence[float], tuple[str, ...]], _SdkHistogram]:
    def histogram(name: str, unit: str, description: str, boundaries: Sequence[float],
                  keys: tuple[str, ...]) -> _SdkHistogram:
        return _SdkHistogram(meter.create_histogram(name, unit=unit, description=description,
                                                    explicit_bucket_boundaries_advisory=boundaries), keys)
    return histogram


def _bump(counts: dict[tuple[str, ...], int], values: tuple[str, ...], count: int = 1) -> None:
    counts[values] = counts.get(values, 0) + count


def _constant(read: Callable[[], float]) -> Callable[[CallbackOptions], list[Observation]]:
    """A callback that observes ``read()`` with no attributes."""
    def callback(_options: CallbackOptions) -> list[Observation]:
        return [Observation(read())]
    return callback


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
