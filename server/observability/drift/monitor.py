"""Live drift: a sliding window of a model's recent predictions against its reference profile.

Signals (the ``smallguard.drift.signal`` attribute of the drift gauges; a small fixed set per model):

- ``confidence``: PSI of the calibrated confidence over the reference's decile bins;
- ``escalation_rate``, ``abstention_rate``: the window's share of ESCALATE (ABSTAIN) decisions minus
  the reference's share; only a rise counts against the limit (a fall shows as a negative score);
- ``input:NAME``: for a tensor input, the mean PSI across its features, each over its own decile bins
  (the mean, not the max: with 64 pixels and a window of a few hundred the max is mostly noise);
- ``input:NAME.length``, ``input:NAME.chars``: for a text input, PSI of its length and of its
  character-class mix.

The cost on the Predict path is one append under a lock: predictions (a Predict's, or a batch's)
wait in a small buffer and are binned together, vectorised, every ``flush_every`` predictions or
``FLUSH_AFTER_S`` (or at once when someone reads the scores), each batch's counts going into a ring
buffer and a running sum (O(features x bins) per prediction, independent of the window). Scores are
computed from the sums after each such batch (for the health status and ``on_drift``) and whenever
someone reads them (metric collection, GetModel). No score
exists before ``min_samples`` predictions. Each server process has its own window.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smallguard.server.domain.bundle_spec import BundleSpec, DriftPolicy
from smallguard.server.domain.predictions import Decision
from smallguard.server.observability.drift.features import char_class_counts, tensor_counts
from smallguard.server.observability.drift.psi import normalise, psi
from smallguard.server.observability.drift.reference import Profile, Reference, load_reference

log = logging.getLogger(__name__)

# Pending predictions are binned and the scores recomputed once FLUSH_EVERY (at most a quarter of the window)
# have piled up, or when a prediction comes and the oldest pending one has waited FLUSH_AFTER_S (a quiet
# model's health follows its next request). Each flush costs about 100 us to score whatever its size, so a
# larger batch costs the request path less: 125 put drift at 5.6 us a prediction where 32 cost 9.1 us
# (digits, in process).
FLUSH_EVERY = 128
FLUSH_AFTER_S = 1.0
_DECISIONS = tuple(Decision)  # index i <-> Decision value i + 1


@dataclass(slots=True)
class _Batch:
    """Predictions waiting to be binned: per input, the examples' values (tensor rows or texts), one array
    when they have one shape, else a list."""

    feeds: dict[str, np.ndarray | list[np.ndarray]]
    confidences: list[float]
    decisions: list[int]  # Decision value - 1

    def __len__(self) -> int:
        return len(self.confidences)


# a batch -> each example's bin per row ([n, rows] of ints), or its counts ([n, features, bins])
Binned = Callable[[_Batch], np.ndarray]
Counted = Callable[[_Batch], np.ndarray]


class State(enum.Enum):
    OFF = "off"  # no reference profile
    WARMING_UP = "warming_up"  # fewer than min_samples predictions in the window
    WITHIN_LIMITS = "within_limits"
    DRIFTED = "drifted"  # at least one score past its limit


@dataclass(frozen=True, slots=True)
class SignalScore:
    signal: str
    score: float
    limit: float

    @property
    def past_limit(self) -> bool:
        return self.score > self.limit


@dataclass(frozen=True, slots=True)
class DriftSnapshot:
    state: State
    message: str
    samples: int
    policy: DriftPolicy
    scores: tuple[SignalScore, ...] = ()
    reference: str = ""

    @property
    def drifted(self) -> bool:
        return self.state is State.DRIFTED


def off(spec: BundleSpec) -> DriftSnapshot:
    """The status of a model without a reference profile."""
    path = spec.folder / spec.drift.reference
    return DriftSnapshot(State.OFF, f"drift is not monitored: {path} does not exist (smallguard calibrate writes it)",
                         0, spec.drift, reference=str(path))


@dataclass(slots=True)
class _Counted:
    """A signal whose examples add counts or weights (characters per class, a pooled tensor's histogram)."""

    count: Counted
    buffer: np.ndarray  # [window, features, bins]
    sums: np.ndarray  # [features, bins]


@dataclass(frozen=True, slots=True)
class _Signal:
    name: str
    limit: float
    # (PSI of every binned row, bin counts, counted sums, samples) -> score
    score: Callable[[np.ndarray, np.ndarray, list[np.ndarray], int], float]


class DriftMonitor:
    """A model's window and scores; safe to call from many request threads at once.

    Most signals put each example into exactly one bin per feature (confidence, decision, a tensor's
    features, a text's length). Those keep, per prediction in the window, one small integer per
    feature row (``_bins``, a ring buffer) and a table of counts per row and bin (``_counts``); a batch
    of predictions adds its bins to the table and takes out those of the predictions it replaces, in
    one ``bincount`` each. The others (``_counted``) keep their per-example counts and a running sum.
    """

    def __init__(self, reference: Reference, spec: BundleSpec) -> None:
        self.model = spec.name
        self.version = spec.version
        self.policy = spec.drift
        self.reference = reference
        self._inputs = spec.inputs
        self._size = self.policy.window
        self._binned: list[tuple[int, int, Binned]] = []  # (first row, rows, how to bin a batch)
        self._counted: list[_Counted] = []
        self._signals: list[_Signal] = []
        self._widest = 0  # bins of the widest binned profile
        self._references: list[tuple[slice, np.ndarray]] = []
        self._build(reference, spec)
        rows = sum(width for _, width, _ in self._binned)
        self._rows = np.arange(rows)
        self._bins = np.zeros((self._size, rows), dtype=np.int8)
        self._counts = np.zeros((rows, self._widest), dtype=np.int64)
        self._expected = np.zeros((rows, self._widest))  # the reference's proportions of each binned row
        for where, proportions in self._references:
            self._expected[where, :proportions.shape[1]] = proportions
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        # predictions waiting to be binned, a Predict's or a batch's at a time: per input, their values with a
        # leading batch dimension; their confidences; their decisions (value - 1)
        self._pending: deque[tuple[tuple[np.ndarray, ...], Sequence[float], Sequence[int]]] = deque()
        self._waiting = 0  # predictions in _pending
        self._pending_lock = threading.Lock()
        self._oldest = 0.0  # time.monotonic() when the oldest pending prediction came
        self.flush_every = max(1, min(FLUSH_EVERY, self._size // 4))  # scored several times per window
        self._input_names = tuple(item.name for item in self._inputs)
        self._next = self._samples = self._taken = self._published = 0
        self._listeners: list[Callable[[DriftSnapshot], None]] = []
        self._snapshot = self._score(0, self._counts, [])

    # -------------------------------------------------------------------------------- set-up

    def _add_binned(self, width: int, bins: int, binned: Binned) -> slice:
        first = sum(w for _, w, _ in self._binned)
        self._binned.append((first, width, binned))
        self._widest = max(self._widest, bins)
        return slice(first, first + width)

    def _psi_binned(self, name: str, profile: Profile, binned: Binned) -> None:
        assert profile.bins is not None
        features, bins = profile.bins.shape
        rows = self._add_binned(features, bins, binned)
        self._references.append((rows, profile.proportions))

        def score(per_row: np.ndarray, _counts: np.ndarray, _counted: list[np.ndarray], _samples: int) -> float:
            return float(np.mean(per_row[rows]))

        self._signals.append(_Signal(name, self.policy.psi_limit, score))

    def _psi_counted(self, name: str, profile: Profile, count: Counted) -> None:
        expected, channel = profile.proportions, len(self._counted)
        self._counted.append(_Counted(count, np.zeros((self._size, *expected.shape), dtype=np.float32),
                                      np.zeros(expected.shape, dtype=np.float64)))

        def score(_per_row: np.ndarray, _counts: np.ndarray, counted: list[np.ndarray], _samples: int) -> float:
            return float(np.mean(psi(expected, normalise(counted[channel]))))

        self._signals.append(_Signal(name, self.policy.psi_limit, score))

    def _build(self, reference: Reference, spec: BundleSpec) -> None:
        confidence = reference.confidence.bins
        assert confidence is not None
        self._psi_binned("confidence", reference.confidence,
                         lambda batch: confidence.scalar_indices(np.asarray(batch.confidences))[:, np.newaxis])
        decisions = self._add_binned(1, len(_DECISIONS),
                                     lambda batch: np.asarray(batch.decisions)[:, np.newaxis]).start
        for decision, signal, limit in ((Decision.ESCALATE, "escalation_rate", self.policy.escalation_rate_limit),
                                        (Decision.ABSTAIN, "abstention_rate", self.policy.abstention_rate_limit)):
            expected, column = reference.rates[decision.name], decision.value - 1

            def rate(_per_row: np.ndarray, counts: np.ndarray, _counted: list[np.ndarray], samples: int,
                     expected: float = expected, column: int = column) -> float:
                return float(counts[decisions, column] / samples - expected)

            self._signals.append(_Signal(signal, limit, rate))
        for item in spec.inputs:
            profile = reference.inputs[item.name]
            if profile.kind == "text":
                length = profile.profiles["length"]
                assert length.bins is not None
                self._psi_binned(f"input:{item.name}.length", length,
                                 lambda batch, name=item.name, bins=length.bins: bins.scalar_indices(
                                     np.array([len(str(text)) for text in batch.feeds[name]], dtype=np.float64)
                                 )[:, np.newaxis])
                self._psi_counted(f"input:{item.name}.chars", profile.profiles["chars"],
                                  lambda batch, name=item.name: np.stack(
                                      [char_class_counts(str(text)) for text in batch.feeds[name]]))
                continue
            values = profile.profiles["values"]
            assert values.bins is not None
            if profile.pooled:
                self._psi_counted(f"input:{item.name}", values,
                                  lambda batch, name=item.name, bins=values.bins: np.stack(
                                      [tensor_counts(bins, True, value) for value in batch.feeds[name]]))
            else:
                self._psi_binned(f"input:{item.name}", values,
                                 lambda batch, name=item.name, bins=values.bins: bins.indices(
                                     np.asarray(batch.feeds[name], dtype=np.float64).reshape(len(batch), -1)))

    # -------------------------------------------------------------------------------- the hot path

    def observe(self, feeds: Mapping[str, np.ndarray], confidence: float, decision: Decision) -> None:
        """Add one prediction (its checked inputs, calibrated confidence and decision before any drift
        override: the monitor must not count its own escalations as drift).

        Queueing it takes a lock held for an append; the thread that finds a full batch bins it, unless
        another thread is already binning, so request threads never wait for the binning."""
        # decision - 1: an IntEnum, no call to the .value descriptor
        self._queue(tuple([feeds[name] for name in self._input_names]), (confidence,), (decision - 1,))

    def observe_many(self, feeds: Sequence[Mapping[str, np.ndarray]], confidences: Sequence[float],
                     decisions: Sequence[Decision]) -> None:
        """``observe`` for each of a batch's predictions, in order, queued as one."""
        try:
            inputs = tuple([np.concatenate([item[name] for item in feeds]) for name in self._input_names])
        except ValueError:  # inputs of several shapes (a variable-shape input), or no prediction
            for item, confidence, decision in zip(feeds, confidences, decisions, strict=True):
                self.observe(item, confidence, decision)
            return
        self._queue(inputs, confidences, [decision - 1 for decision in decisions])

    def observe_stacked(self, feeds: Mapping[str, np.ndarray], confidences: Sequence[float],
                        decisions: Sequence[Decision]) -> None:
        """``observe_many`` for a batch whose feeds hold every prediction's inputs, a row each."""
        self._queue(tuple([feeds[name] for name in self._input_names]), confidences,
                    [decision - 1 for decision in decisions])

    def _queue(self, inputs: tuple[np.ndarray, ...], confidences: Sequence[float], decisions: Sequence[int]) -> None:
        with self._pending_lock:
            first = not self._waiting
            if first:
                self._oldest = time.monotonic()
            self._pending.append((inputs, confidences, decisions))
            self._waiting += len(confidences)
            due = self._waiting >= self.flush_every
        if not due and (first or time.monotonic() - self._oldest < FLUSH_AFTER_S):
            return
        if self._lock.acquire(blocking=False):
            try:
                taken = self._flush()
            finally:
                self._lock.release()
            self._publish(*taken)

    def _flush(self) -> tuple[int, int, np.ndarray, list[np.ndarray]]:
        """Bin the pending predictions into the window (under the lock); return a snapshot's inputs."""
        with self._pending_lock:  # what comes meanwhile waits for the next batch
            entries = list(self._pending)
            self._pending.clear()
            self._waiting = 0
        batch = _Batch({item.name: _joined([inputs[i] for inputs, _, _ in entries])
                        for i, item in enumerate(self._inputs)},
                       [c for _, confidences, _ in entries for c in confidences],
                       [d for _, _, decisions in entries for d in decisions])
        if len(batch):
            new = np.empty((len(batch), len(self._rows)), dtype=np.int8)
            for first, width, binned in self._binned:
                new[:, first:first + width] = binned(batch)
            counted = [channel.count(batch) for channel in self._counted]
            for start in range(0, len(batch), self._size):  # a batch larger than the window: lap by lap
                self._add(new[start:start + self._size], [c[start:start + self._size] for c in counted])
        return self._take()

    def _add(self, new: np.ndarray, counted: list[np.ndarray]) -> None:
        """Put at most one window of binned predictions into the ring, taking out the ones they replace."""
        n = len(new)
        slots = (self._next + np.arange(n)) % self._size
        replaced = slots[max(0, self._size - self._samples):]  # slots that held a prediction before
        cells = self._counts.size
        delta = np.bincount((self._rows * self._widest + new).ravel(), minlength=cells)
        if len(replaced):
            old = self._bins[replaced]
            delta -= np.bincount((self._rows * self._widest + old).ravel(), minlength=cells)
        self._counts += delta.reshape(self._counts.shape)
        self._bins[slots] = new
        for channel, counts in zip(self._counted, counted, strict=True):
            channel.sums -= channel.buffer[replaced].sum(axis=0, dtype=np.float64)
            channel.buffer[slots] = counts
            channel.sums += counts.sum(axis=0, dtype=np.float64)
        lapped = self._next + n >= self._size
        self._next = (self._next + n) % self._size
        if lapped:  # once per lap, re-add the weights from scratch so rounding cannot accumulate
            for channel in self._counted:
                channel.sums = channel.buffer.sum(axis=0, dtype=np.float64)
        self._samples = min(self._samples + n, self._size)

    @property
    def drifted(self) -> bool:
        """As of the last evaluation: at most ``flush_every`` predictions ago, or FLUSH_AFTER_S before the last
        prediction, or the last read."""
        return self._snapshot.state is State.DRIFTED

    @property
    def escalating(self) -> bool:
        """Drifted, and the bundle says ``on_drift: escalate``."""
        return self.policy.on_drift == "escalate" and self._snapshot.state is State.DRIFTED

    @property
    def message(self) -> str:
        return self._snapshot.message

    def limits(self) -> tuple[tuple[str, float], ...]:
        """(signal, limit) for every signal this model is scored on."""
        return tuple((signal.name, signal.limit) for signal in self._signals)

    # -------------------------------------------------------------------------------- scores

    def snapshot(self) -> DriftSnapshot:
        """The scores now (evaluated afresh; listeners hear of a change of state)."""
        with self._lock:
            taken = self._flush()
        return self._publish(*taken)

    def subscribe(self, listener: Callable[[DriftSnapshot], None]) -> None:
        """Call ``listener(snapshot)`` whenever the model becomes drifted or stops being drifted."""
        self._listeners.append(listener)

    def _take(self) -> tuple[int, int, np.ndarray, list[np.ndarray]]:
        self._taken += 1
        return self._taken, self._samples, self._counts.copy(), [channel.sums.copy() for channel in self._counted]

    def _publish(self, sequence: int, samples: int, counts: np.ndarray, counted: list[np.ndarray]) -> DriftSnapshot:
        snapshot = self._score(samples, counts, counted)
        with self._publish_lock:  # in order: a late, older evaluation never overwrites a newer one
            if sequence <= self._published:
                return snapshot
            self._published = sequence
            changed = snapshot.drifted != self._snapshot.drifted
            self._snapshot = snapshot
            if changed:
                log.warning("model %s: %s", self.model, snapshot.message)
                for listener in self._listeners:  # an observer's fault is its own: the prediction is served
                    try:
                        listener(snapshot)
                    except Exception:
                        log.exception("model %s: a drift listener failed", self.model)
        return snapshot

    def _score(self, samples: int, counts: np.ndarray, counted: list[np.ndarray]) -> DriftSnapshot:
        where = str(self.reference.path or "")
        if samples < self.policy.min_samples:
            return DriftSnapshot(State.WARMING_UP, f"{samples} of the {self.policy.min_samples} predictions needed "
                                 "before drift is scored", samples, self.policy, reference=where)
        per_row = psi(self._expected, counts / samples)  # every binned row at once (a row's counts add up to samples)
        scores = tuple(SignalScore(s.name, s.score(per_row, counts, counted, samples), s.limit) for s in self._signals)
        past = [s for s in scores if s.past_limit]
        if past:
            listed = "; ".join(f"{s.signal} {s.score:.3f} > {s.limit:g}" for s in past)
            return DriftSnapshot(State.DRIFTED, f"drifted over the last {samples} predictions: {listed}", samples,
                                 self.policy, scores, where)
        return DriftSnapshot(State.WITHIN_LIMITS, f"every score within its limit over the last {samples} predictions",
                             samples, self.policy, scores, where)


def _joined(arrays: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """Examples from several predictions: one array when they have one shape, else a list of rows."""
    try:
        return np.concatenate(arrays)
    except ValueError:  # a variable-shape input
        return [row for array in arrays for row in array]


def load_monitor(spec: BundleSpec) -> DriftMonitor | None:
    """The bundle's monitor, or None (logged) when it has no reference profile.

    Raises DriftReferenceError naming the file when the reference exists but cannot be used."""
    path: Path = spec.folder / spec.drift.reference
    if not path.is_file():
        log.warning("model %s: %s", spec.name, off(spec).message)
        return None
    return DriftMonitor(load_reference(path, spec), spec)
