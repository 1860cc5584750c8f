"""The per-prediction histograms the guard aggregates itself make the same Prometheus page as the SDK's.

Two meter providers, each with a real Prometheus reader on a registry of its own: one with the SDK's histograms,
one with the guard's (what `smallguard serve --metrics-port` has). The same predictions go to both, and the pages
they serve are compared sample by sample: every bucket, count, sum and label.
"""

from __future__ import annotations

import logging
import math

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from smallguard.server.domain.predictions import Decision, PredictOutcome, Reason, ReasonCode
from smallguard.server.observability.histograms import OwnHistograms
from smallguard.server.observability.instruments import CONFIDENCE_BUCKETS, DURATION_BUCKETS, GuardMetrics
from smallguard.server.observability.prometheus_reader import GuardPrometheusReader
from smallguard.server.observability.telemetry import configure_metrics
from smallguard.server.settings import Settings
from smallguard.verifiers import ModelKind, Prediction
from tests.conftest import free_port


def outcome(model: str, decision: Decision, confidence: float) -> PredictOutcome:
    prediction = Prediction(kind=ModelKind.CLASSIFIER, label="7", probability=confidence)
    reasons = () if decision is Decision.ANSWER else (Reason(ReasonCode.LOW_CONFIDENCE, "below the threshold"),)
    return PredictOutcome("id", model, "1.0.0", decision, prediction, confidence, confidence, 0.9, reasons, ())


# Values on the bounds (a bound's value counts in the bucket it closes), between them, past the last and at zero.
RECORDS = [
    *[(outcome("digits", Decision.ANSWER, bound), DURATION_BUCKETS[i % len(DURATION_BUCKETS)])
      for i, bound in enumerate(CONFIDENCE_BUCKETS)],
    (outcome("digits", Decision.ABSTAIN, 0.42), 0.0031),
    (outcome("digits", Decision.ESCALATE, 0.0), 0.0),
    (outcome("digits", Decision.ANSWER, 0.97), 7.5),
    (outcome("invoice-extractor", Decision.ANSWER, 0.995), 0.0004),
    (outcome("invoice-extractor", Decision.ESCALATE, 0.31), 0.02),
]


def page(metrics_for: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the page a Prometheus reader serves after RECORDS (the SDK's histograms, or the guard's)."""
    registry = CollectorRegistry()
    own = OwnHistograms() if metrics_for == "own" else None
    reader = PrometheusMetricReader(registry=registry) if own is None else GuardPrometheusReader(own,
                                                                                                registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    # two sets of instruments on one reader (as two guards on one provider): one series per attribute set
    first, second = GuardMetrics.from_provider(provider, own), GuardMetrics.from_provider(provider, own)
    for i, (recorded, seconds) in enumerate(RECORDS):
        (first if i % 2 else second).record_prediction(recorded, seconds)
    return samples_of(registry, provider)


def samples_of(registry: CollectorRegistry, provider: MeterProvider) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                                          float]:
    text = generate_latest(registry).decode()
    provider.shutdown()
    samples = [((sample.name, tuple(sorted(sample.labels.items()))), sample.value)
               for family in text_string_to_metric_families(text) for sample in family.samples]
    assert len(samples) == len(dict(samples)), "a series appears twice on the page"
    return dict(samples)


@pytest.mark.parametrize("own", [True, False], ids=["own histograms", "sdk histograms"])
def test_a_batch_recorded_at_once_serves_the_page_of_its_predictions_one_by_one(own: bool) -> None:
    def served(at_once: bool) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        registry = CollectorRegistry()
        histograms = OwnHistograms() if own else None
        reader = (GuardPrometheusReader(histograms, registry=registry) if histograms is not None
                  else PrometheusMetricReader(registry=registry))
        provider = MeterProvider(metric_readers=[reader])
        metrics = GuardMetrics.from_provider(provider, histograms)
        batch = [recorded for recorded, _ in RECORDS]
        if at_once:
            metrics.record_predictions(batch, 0.004)
        else:
            for recorded in batch:
                metrics.record_prediction(recorded, 0.004)
        return samples_of(registry, provider)

    at_once = served(True)
    assert at_once == served(False)
    assert sum(value for (name, _), value in at_once.items() if name == "smallguard_predictions_total") == len(RECORDS)


def test_the_guards_histograms_serve_the_page_the_sdks_serve() -> None:
    sdk, own = page("sdk"), page("own")
    assert sdk == own
    buckets = {labels: value for (name, labels), value in own.items() if name == "smallguard_confidence_bucket"}
    assert len(buckets) == 2 * (len(CONFIDENCE_BUCKETS) + 1)  # two models, each bound and +Inf
    digits = {dict(labels)["le"]: value for labels, value in buckets.items()
              if dict(labels)["smallguard_model_name"] == "digits"}
    assert digits["0.1"] == 2  # 0.0 and the bound 0.1 itself
    assert digits["+Inf"] == len(CONFIDENCE_BUCKETS) + 3
    durations = [value for (name, labels), value in own.items() if name == "smallguard_predict_duration_seconds_count"]
    assert sum(durations) == len(RECORDS)


def test_an_amount_the_sdk_refuses_is_refused_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    own = OwnHistograms()
    histogram = own.histogram("smallguard.predict.duration", "s", "time", DURATION_BUCKETS, ("model",))
    with caplog.at_level(logging.WARNING):
        for amount in (-0.001, math.nan, math.inf):
            histogram.record(("digits",), amount)
    assert histogram.metric(0) is None
    assert caplog.text.count("ignoring measurement") == 3
    histogram.record(("digits",), 0.01)
    metric = histogram.metric(0)
    assert metric is not None
    (point,) = metric.data.data_points
    assert (point.count, point.sum, point.min, point.max) == (1, 0.01, 0.01, 0.01)


def test_the_guard_aggregates_them_only_for_the_prometheus_endpoint_alone() -> None:
    alone = configure_metrics(Settings(host="127.0.0.1", metrics_port=free_port()), environ={})
    assert alone is not None and alone.own_histograms is not None
    alone.shutdown()
    both = configure_metrics(Settings(host="127.0.0.1", metrics_port=free_port()),
                             environ={"OTEL_METRICS_EXPORTER": "console"})
    assert both is not None and both.own_histograms is None  # the console exporter gets the SDK's
    both.shutdown()
    reader = InMemoryMetricReader()  # an embedding program's provider: the SDK's histograms, read by its reader
    metrics = GuardMetrics.from_provider(MeterProvider(metric_readers=[reader]))
    metrics.record_prediction(outcome("digits", Decision.ANSWER, 0.97), 0.002)
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert {"smallguard.confidence", "smallguard.predict.duration"} <= names
