"""The Prometheus endpoint's reader: the exporter's own, with the guard's own histograms handed in at each scrape."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import MetricsData

from smallguard.server.observability.histograms import OwnHistograms


class GuardPrometheusReader(PrometheusMetricReader):
    """``PrometheusMetricReader`` (its registry, names and labels), whose collections also carry ``histograms``."""

    def __init__(self, histograms: OwnHistograms, **options: Any) -> None:
        super().__init__(**options)
        self._histograms = histograms

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        if metrics_data is not None:
            metrics_data = self._histograms.merged_into(metrics_data)
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)
