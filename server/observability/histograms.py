"""The per-prediction histograms, aggregated by the guard itself when only the Prometheus endpoint reads them.

The metrics SDK's ``Histogram.record`` cleans and hashes its attributes and walks the reader's views on every call:
about 12 us in a loop, two calls per prediction, 50-70 us of a loaded server's one core per request (a sixth of
it). Here a record is a bisect and a few additions under a lock, and the reader gets the points as the SDK builds
them for that endpoint: cumulative, explicit buckets (a value on a bound counts in the bucket below it), count,
sum, min and max, and no exemplars (the Prometheus exporter drops them). Any other reader (OTLP, console, or a
provider an embedding program passes) has the SDK's own histograms, which follow its temporality and sample
exemplars. ``tests/observability/test_histograms.py`` compares the two endpoints' pages.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ScopeMetrics,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

log = logging.getLogger(__name__)

SCOPE = "smallguard"  # the meter every instrument of the guard belongs to


def scope_version() -> str:
    """The meter's version: the installed distribution's."""
    try:
        return version("smallguard")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
        return ""


@dataclass(slots=True)
class _Cell:
    """One attribute set's running totals."""

    started_ns: int
    counts: list[int]
    count: int = 0
    total: float = 0  # an int zero, as the SDK's: the first float added makes it a float
    low: float = math.inf
    high: float = -math.inf


@dataclass(slots=True)
class OwnHistogram:
    """One explicit-bucket histogram; ``record`` takes the values of ``keys``, in order."""

    name: str
    unit: str
    description: str
    boundaries: tuple[float, ...]
    keys: tuple[str, ...]
    lock: threading.Lock
    cells: dict[tuple[str, ...], _Cell] = field(default_factory=dict)

    def record(self, values: tuple[str, ...], amount: float) -> None:
        self.record_many(values, (amount,))

    def record_many(self, values: tuple[str, ...], amounts: Iterable[float]) -> None:
        """``record`` of each amount in turn, under one lock."""
        with self.lock:
            cell = self.cells.get(values)
            boundaries = self.boundaries
            for amount in amounts:
                if not 0.0 <= amount < math.inf:  # the SDK's rule: a histogram takes finite, non-negative amounts
                    log.warning("Record amount %s is not finite and non-negative on Histogram %s, ignoring "
                                "measurement.", amount, self.name)
                    continue
                if cell is None:  # made by the first amount recorded
                    cell = self.cells[values] = _Cell(time.time_ns(), [0] * (len(boundaries) + 1))
                cell.counts[bisect_left(boundaries, amount)] += 1
                cell.count += 1
                cell.total += amount
                if amount < cell.low:
                    cell.low = amount
                if amount > cell.high:
                    cell.high = amount

    def metric(self, now_ns: int) -> Metric | None:
        """The cumulative points so far; None before the first record (the SDK reports no metric then either)."""
        with self.lock:
            cells = [(values, replace(cell, counts=list(cell.counts))) for values, cell in self.cells.items()]
        if not cells:
            return None
        points = [HistogramDataPoint(attributes=dict(zip(self.keys, values, strict=True)),
                                     start_time_unix_nano=cell.started_ns, time_unix_nano=now_ns, count=cell.count,
                                     sum=cell.total, bucket_counts=tuple(cell.counts), explicit_bounds=self.boundaries,
                                     min=cell.low, max=cell.high, exemplars=[])
                  for values, cell in cells]
        return Metric(self.name, self.description, self.unit,
                      Histogram(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE))


class OwnHistograms:
    """The histograms the guard aggregates itself, and the hand-over of their points to the reader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._histograms: list[OwnHistogram] = []

    def histogram(self, name: str, unit: str, description: str, boundaries: Sequence[float],
                  keys: tuple[str, ...]) -> OwnHistogram:
        """The histogram ``name``, made on first asking; asked again (a second GuardMetrics on the same reader), the
        same one, as the SDK's meter gives one instrument per name: one series per attribute set, not two."""
        for made in self._histograms:
            if made.name == name:
                return made
        made = OwnHistogram(name, unit, description, tuple(boundaries), keys, self._lock)
        self._histograms.append(made)
        return made

    def merged_into(self, data: MetricsData) -> MetricsData:
        """``data`` (what the SDK collected) with these histograms' metrics in the guard's scope.

        That scope is there whenever a histogram has a point: every prediction is also counted by
        ``smallguard.predictions``, an observable counter of the same meter that never goes back to no point."""
        now = time.time_ns()
        metrics = [metric for histogram in self._histograms if (metric := histogram.metric(now)) is not None]
        if not metrics:
            return data
        resources = list(data.resource_metrics)
        for r, resource in enumerate(resources):
            scopes = list(resource.scope_metrics)
            for s, scope in enumerate(scopes):
                if scope.scope.name == SCOPE:
                    scopes[s] = ScopeMetrics(scope.scope, [*scope.metrics, *metrics], scope.schema_url)
                    resources[r] = replace(resource, scope_metrics=scopes)
                    return MetricsData(resources)
        if resources:  # not reached while the invariant above holds; kept so that no point is ever lost
            first = resources[0]
            scope = ScopeMetrics(InstrumentationScope(SCOPE, scope_version()), metrics, "")
            resources[0] = replace(first, scope_metrics=[*first.scope_metrics, scope])
        return MetricsData(resources)
