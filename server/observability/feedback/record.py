"""The bounded record of recent predictions that feedback is matched against.

Ground truth arrives after the answer (a person reviews the case, the invoice is paid), so the
server keeps what it predicted for each request id: bounded by count (the oldest goes first) and
by age, because memory must not grow with traffic. An id that left the record is remembered for
a while (ids only, as many as the record holds) so that late feedback is told "expired" rather
than "unknown". The record lives in one process: with ``--workers N`` each worker keeps its own.

Thread-safe: Predict threads add while Feedback threads look up and settle.

Memory: a full record holds tens of thousands of entries, and a garbage collector that walks them
all on every full collection stops the server for a long time (long enough, once, to overrun
verifier budgets). So each entry is kept as a flat tuple of strings and numbers, which CPython's
collector stops tracking after it first sees it, and is turned back into a ``Recorded`` only when
feedback asks for it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from smallguard.server.domain.errors import RequestNotFoundError
from smallguard.server.domain.predictions import Decision
from smallguard.verifiers import ModelKind

# field name -> (predicted value or None, calibrated confidence)
PredictedFields = Mapping[str, tuple[str | None, float]]
# a classifier's true label, or an extractor's true fields (name -> value, "" for absent)
Truth = str | tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one feedback said about one prediction."""

    truth: Truth
    correct: bool
    wrong_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Recorded:
    """One prediction as the guard answered it, and the feedback it got (if any)."""

    request_id: str
    model: str
    version: str
    kind: ModelKind
    decision: Decision
    confidence: float
    label: str | None
    fields: PredictedFields
    at: float  # the record's clock when the prediction was made
    verdict: Verdict | None = None
    tier: str = ""  # the escalation tier whose prediction the caller got; "": the model's own


class PredictionRecord:
    """Request id -> Recorded, at most ``capacity`` entries none older than ``max_age_s``."""

    def __init__(self, capacity: int, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1 or max_age_s <= 0:
            raise ValueError(f"capacity must be >= 1 and max_age_s > 0, got {capacity} and {max_age_s}")
        self.capacity, self.max_age_s = capacity, max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple] = OrderedDict()  # request id -> packed entry, oldest first
        self._gone: OrderedDict[str, int] = OrderedDict()  # evicted id -> why (_FULL or _OLD)

    def now(self) -> float:
        return self._clock()

    def add(self, entry: Recorded) -> None:
        """Keep ``entry`` (a repeated request id replaces the older prediction and its feedback)."""
        packed = _pack(entry)
        with self._lock:
            self._entries.pop(entry.request_id, None)
            self._gone.pop(entry.request_id, None)
            self._entries[entry.request_id] = packed
            while len(self._entries) > self.capacity:
                self._evict(_FULL)
            self._expire()

    def get(self, request_id: str) -> Recorded:
        """The prediction made for ``request_id``; RequestNotFoundError says whether it expired."""
        with self._lock:
            self._expire()
            packed = self._entries.get(request_id)
            if packed is None:
                raise self._not_found(request_id)
        return _unpack(packed)

    def settle(self, entry: Recorded, verdict: Verdict) -> Verdict | None:
        """Attach ``verdict`` to ``entry`` unless feedback got there first: then return that feedback's verdict."""
        with self._lock:
            current = self._entries.get(entry.request_id)
            if current is None:
                raise self._not_found(entry.request_id)
            if current[_VERDICT] is not None:
                return _unpack_verdict(current[_VERDICT])
            if current[:_VERDICT] != _pack(entry)[:_VERDICT]:  # a newer prediction took the id meanwhile
                raise RequestNotFoundError("a newer prediction reused this id; send feedback again",
                                           entry.request_id, expired=True)
            self._entries[entry.request_id] = (*current[:_VERDICT], (verdict.truth, verdict.correct,
                                                                       verdict.wrong_fields))
            return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _expire(self) -> None:
        oldest = self._clock() - self.max_age_s
        while self._entries and next(iter(self._entries.values()))[_AT] < oldest:
            self._evict(_OLD)

    def _evict(self, why: int) -> None:
        request_id, _ = self._entries.popitem(last=False)
        self._gone[request_id] = why
        while len(self._gone) > self.capacity:
            self._gone.popitem(last=False)

    def _not_found(self, request_id: str) -> RequestNotFoundError:
        gone = self._gone.get(request_id)
        if gone is not None:
            why = (f"more than {self.capacity} newer predictions came after it (--feedback-capacity)" if gone == _FULL
                   else f"it was older than {self.max_age_s:g}s (--feedback-max-age-seconds)")
            return RequestNotFoundError(f"the prediction has left the record because {why}; feedback must "
                                        "arrive sooner", request_id, expired=True)
        return RequestNotFoundError(f"no prediction with this id in the record (the last {self.capacity} "
                                    "predictions of this server process); expected the request_id of a "
                                    "PredictResponse", request_id, expired=False)


# A packed entry: request_id, model, version, kind, decision, confidence, label, fields, at, tier, verdict; with
# kind and decision as their values, fields as (name, value, confidence) triples, and the verdict as
# (truth, correct, wrong_fields) or None. Strings, numbers and tuples of them only.
_AT, _VERDICT = 8, 10
_FULL, _OLD = 1, 2  # why an id left the record


def _pack(entry: Recorded) -> tuple:
    verdict = entry.verdict
    return (entry.request_id, entry.model, entry.version, entry.kind.value, entry.decision.value, entry.confidence,
            entry.label, tuple((name, value, confidence) for name, (value, confidence) in entry.fields.items()),
            entry.at, entry.tier, None if verdict is None else (verdict.truth, verdict.correct, verdict.wrong_fields))


def _unpack(packed: tuple) -> Recorded:
    request_id, model, version, kind, decision, confidence, label, fields, at, tier, verdict = packed
    return Recorded(request_id, model, version, ModelKind(kind), Decision(decision), confidence, label,
                    {name: (value, field_confidence) for name, value, field_confidence in fields}, at,
                    None if verdict is None else _unpack_verdict(verdict), tier)


def _unpack_verdict(packed: tuple) -> Verdict:
    return Verdict(*packed)

