"""The decision log: every Predict outcome written to the store off the request path.

A request appends its decision to a bounded in-memory buffer; a writer thread wakes every
``flush_interval_s`` and writes what piled up, and what comes meanwhile, until the buffer is empty. So a slow
or absent database never slows Predict.

A batch's decisions become one entry as they are appended: each item's values (strings and numbers), its
details still objects, encoded as one JSON document by one orjson call, which the store keeps as one row
(and an index entry per item whose id does not name the batch: ``batch_records``). What the buffer
holds lives until the writer takes it, and a batch's calls and outcomes held that long are thousands of
objects that every young-generation collection walks; its entry is a few strings. A single Predict's
decision is made a row by the writer: building it on the request path cost 7% more CPU per request at 64
in flight (2026-12-04).
What the buffer costs, stated in the README:

- while the store is down the buffer fills (``capacity`` decisions) and then new decisions are dropped
  and counted (``dropped``); the writer keeps retrying and writes the buffer when the store is back;
- decisions still in the buffer when the process is killed (SIGKILL, a crash) are lost: at most one
  flush interval's worth in normal operation. A clean stop (SIGTERM) writes them first.

Nothing in the buffer was acknowledged to anyone as stored: Feedback, which is, writes synchronously.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from smallguard.server.domain.errors import StoreError
from smallguard.server.domain.predictions import (
    BatchOutcome,
    PredictCall,
    PredictOutcome,
    Reason,
    TensorInput,
    TierOutcome,
    VerifierOutcome,
)
from smallguard.server.store.batch_records import DecisionBatch, items_document
from smallguard.server.store.records import Store
from smallguard.verifiers import ExtractedField, ModelKind

log = logging.getLogger(__name__)

INPUT_POLICIES = ("none", "hash", "full")
WRITER_THREAD = "sg-decision-log"  # the writer's name in the OS: top -H, /proc/PID/task/*/comm, the benchmark
_PURGE_EVERY_S = 600.0
_FIRST_PURGE_S = 60.0


class DecisionLog:
    """A bounded buffer of decisions and the thread that writes it to ``store``.

    Listeners given to ``subscribe`` hear every change between a store that takes writes and one that fails.
    """

    def __init__(self, store: Store, *, capacity: int = 10_000, flush_interval_s: float = 0.05,
                 batch_rows: int = 1000, retention_days: float = 30.0) -> None:
        if capacity < 1 or flush_interval_s <= 0 or batch_rows < 1 or retention_days <= 0:
            raise ValueError("capacity and batch_rows must be >= 1, flush_interval_s and retention_days > 0")
        self.store = store
        self.capacity, self.flush_interval_s, self.batch_rows = capacity, flush_interval_s, batch_rows
        self.retention_s = retention_days * 86_400.0
        self._listeners: list[Callable[[bool, str], None]] = []
        # (sequence number, its row, what the writer builds it from, or a batch's decisions)
        self._pending: deque[tuple[int, _Entry]] = deque()  # None: no row could be made
        self._held = 0  # decisions in the buffer (a batch entry holds many)
        self._seq = itertools.count(1)
        self._last = 0  # the sequence number of the last entry appended (under _appending)
        self._appending = threading.Lock()
        self._written = 0  # the highest sequence number written (entries are written in order)
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._stopping = False
        # decisions not written: the buffer was full (the store slow or down), no row could be made of them, or
        # the store refused their row
        self.dropped = 0
        self.written_rows = 0
        self.failed_writes = 0
        self.up = True
        self.reason = ""
        self._purged_at = time.monotonic() - _PURGE_EVERY_S + _FIRST_PURGE_S  # the first purge a minute after start
        self._thread = threading.Thread(target=self._run, name="smallguard-decision-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ the request path

    def append(self, call: PredictCall | None, outcome: PredictOutcome, inputs: str) -> None:
        """Queue one decision; ``inputs`` (none, hash or full) says how much of the call's input is kept."""
        with self._appending:  # numbered and queued in one step: the buffer stays in order (flush relies on it)
            if self._held >= self.capacity:
                self.dropped += 1
                return
            self._held += 1
            self._last = next(self._seq)
            self._pending.append((self._last, _Unbuilt(call, outcome, inputs, time.time())))

    def append_many(self, decisions: Sequence[tuple[PredictCall | None, PredictOutcome]], inputs: str) -> None:
        """Queue a batch's decisions (all of one model), in order, at one time, as one entry that the store
        keeps as one row (``batch_records``); those past the buffer's capacity are dropped and counted, as is
        one that cannot be made the batch's row (logged)."""
        at = time.time()
        room = self.capacity - self._held  # nothing built for decisions with no room (checked again below)
        shared: dict[int, list[dict[str, str]]] = {}
        kept = [(outcome, item) for call, outcome in decisions[:max(room, 0)]
                if (item := _item(call, outcome, inputs, shared)) is not None]
        self._queue(len(decisions), _batch(kept, at) if kept else None, lambda room: _batch(kept[:room], at))

    def append_batch(self, batch: DecisionBatch) -> None:
        """Queue ``batch``, built elsewhere, whole: dropped and counted when the buffer has no room for all of it."""
        self._queue(len(batch.request_ids), batch, lambda room: None)

    def append_stacked(self, outcome: BatchOutcome, tensors: Sequence[TensorInput], inputs: str,
                       caller: str) -> None:
        """``append_many`` for a batch given as columns, whose items' tensors are ``tensors``' rows (row i is item
        i's): the same entry, built without a call or an outcome per item."""
        at = time.time()
        count = min(len(outcome.request_ids), max(self.capacity - self._held, 0))
        shared: dict[int, list[dict[str, str]]] = {}
        made: dict[tuple[int, int], dict[str, Any]] = {}  # items with the same reasons and verifier outcomes
        threshold, trace_id = float(outcome.threshold), outcome.trace_id
        try:
            rows = []
            for request_id, decision, confidence, raw_confidence, prediction, reasons, verifiers, logged in zip(
                    outcome.request_ids[:count], outcome.decisions, outcome.confidences, outcome.raw_confidences,
                    outcome.predictions, outcome.reasons, outcome.verifiers, _stacked_inputs(tensors, inputs, count),
                    strict=False):  # the first ``count`` items: those the buffer has room for
                details = made.get((id(reasons), id(verifiers)))
                if details is None:
                    details = made[id(reasons), id(verifiers)] = _details_of({}, reasons, verifiers, caller, (),
                                                                             shared)
                rows.append([request_id, decision._name_, "", float(confidence), float(raw_confidence), threshold,
                             prediction.label, details, 0.0, trace_id, *logged])
            batch = DecisionBatch(outcome.model, outcome.model_version, ModelKind.CLASSIFIER._value_,
                                  tuple(outcome.request_ids[:count]), items_document(rows), at,
                                  outcome.key) if count else None
        except Exception:
            log.exception("decision log: the decisions of a batch (requests %r to %r) could not be made a row; they "
                          "are dropped", outcome.request_ids[0], outcome.request_ids[-1])
            batch = None
        self._queue(len(outcome.request_ids), batch, lambda room: batch._replace(  # type: ignore[union-attr]
            request_ids=batch.request_ids[:room], items=items_document(rows[:room])))

    def _queue(self, given: int, batch: DecisionBatch | None,
               trimmed: Callable[[int], DecisionBatch | None]) -> None:
        """Queue ``batch``, built for ``given`` decisions (some may have been left out already), numbered in one
        step with the others. When others came meanwhile and it no longer fits, ``trimmed(room)`` is what does
        (room > 0). Every decision of the ``given`` not queued is counted as dropped."""
        with self._appending:
            room = max(self.capacity - self._held, 0)
            if batch is not None and len(batch.request_ids) > room:
                batch = trimmed(room) if room else None
            size = 0 if batch is None else len(batch.request_ids)
            self.dropped += given - size
            if batch is not None:
                self._held += size
                self._last = next(self._seq)
                self._pending.append((self._last, batch))

    # ------------------------------------------------------------------------------ control

    def subscribe(self, listener: Callable[[bool, str], None]) -> None:
        """Call ``listener(up, reason)`` whenever the store starts or stops taking the log's writes."""
        self._listeners.append(listener)

    def holds(self, request_id: str) -> bool:
        """Whether a decision for ``request_id`` is buffered here, not yet written (a scan: only feedback that
        found nothing asks)."""
        for _, entry in list(self._pending):
            kind = type(entry)
            if (entry is not None and (request_id in entry.request_ids if kind is DecisionBatch else
                                       (entry.outcome.request_id if kind is _Unbuilt else entry[0]) == request_id)):
                return True
        return False

    @property
    def pending(self) -> int:
        """The decisions in the buffer, not yet written."""
        return self._held

    def flush(self, timeout_s: float) -> bool:
        """Wait until every decision appended before this call is written; False if that took longer."""
        target = self._last  # the last entry appended before this call
        if target <= self._written:
            return True
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        with self._done:
            while self._written < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._done.wait(left)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered (within ``timeout_s``), then stop the writer."""
        self.flush(timeout_s)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._pending:
            log.warning("decision log: %d decisions were not written before the stop (the store %s: %s)",
                        self._held, self.store.where, self.reason or "too slow")

    # ------------------------------------------------------------------------------ the writer

    def _run(self) -> None:
        _name_os_thread(WRITER_THREAD)
        backoff = self.flush_interval_s
        while not self._stopping:
            self._wake.wait(backoff if not self.up else self.flush_interval_s)
            self._wake.clear()
            while self._pending:
                batch = self._taken(len(self._pending))
                entries = self._rows_of(batch)
                held = sum(len(entry.request_ids) if type(entry) is DecisionBatch else 1 for _, entry in batch)
                try:
                    written = self._write(entries)
                except StoreError as error:  # an outage: the same rows are sent again when the store is back
                    self.failed_writes += 1
                    self._health(False, str(error))
                    backoff = min(max(backoff * 2, 0.1), 2.0)
                    break
                except Exception:  # a fault of the log's own must not stop it: drop the batch, say so
                    log.exception("decision log: a batch of %d decisions could not be written", held)
                    written = 0
                for _ in batch:
                    self._pending.popleft()
                with self._appending:  # request threads count their drops under it too
                    self.dropped += held - written
                    self._held -= held
                self.written_rows += written
                backoff = self.flush_interval_s
                if written:
                    self._health(True, "")
                with self._done:
                    self._written = batch[-1][0]
                    self._done.notify_all()
                self._purge()  # here too: under steady load the buffer may never be empty between writes
            self._purge()

    def _taken(self, most: int) -> list[tuple[int, _Entry]]:
        """The buffer's first entries, at most ``most`` of them, up to ``batch_rows`` decisions (at least one)."""
        taken, decisions = [], 0
        for entry in itertools.islice(self._pending, most):
            size = len(entry[1].request_ids) if type(entry[1]) is DecisionBatch else 1
            if taken and decisions + size > self.batch_rows:
                break
            taken.append(entry)
            decisions += size
        return taken

    def _rows_of(self, batch: list[tuple[int, _Entry]]) -> list[tuple[Any, ...] | DecisionBatch]:
        """The batch's rows. A single Predict's decision is made a row here, once: the row replaces it in the
        buffer, so a write that fails and is sent again sends the same rows (and a decision that cannot be made
        a row is logged once, and stays in the buffer as None until its batch leaves it)."""
        rows = []
        for position, (sequence, entry) in enumerate(batch):
            if type(entry) is _Unbuilt:
                entry = _row(*entry)
                self._pending[position] = (sequence, entry)  # only this thread takes from the left of the buffer
            if entry is not None:
                rows.append(entry)
        return rows

    def _write(self, entries: list[tuple[Any, ...] | DecisionBatch]) -> int:
        """Write ``entries``; how many decisions were written. When the store refuses them (a value a column
        cannot hold: not an outage, so sending them again would fail again), each entry is written alone and
        those it refuses are dropped and logged. StoreError: an outage, nothing written."""
        if not entries:
            return 0
        total = sum(len(entry.request_ids) if type(entry) is DecisionBatch else 1 for entry in entries)
        try:
            self.store.write_decisions(entries)
            return total
        except StoreError as error:
            if not error.refused:
                raise
        refused = self.store.write_each_decision(entries)
        for request_id in refused:
            log.error("decision log: the store refused the decision of request %r; it is dropped", request_id)
        return total - len(refused)

    def _health(self, up: bool, reason: str) -> None:
        if up != self.up:
            if up:
                log.info("decision log: the store %s takes writes again", self.store.where)
            else:
                log.error("decision log: %s; decisions are kept in memory (up to %d) and written when it is back",
                          reason, self.capacity)
            self.up, self.reason = up, reason
            for listener in self._listeners:
                listener(up, reason)

    def _purge(self) -> None:
        now = time.monotonic()
        if now - self._purged_at < _PURGE_EVERY_S or not self.up:
            return
        self._purged_at = now
        try:
            removed = self.store.purge(time.time() - self.retention_s)
        except StoreError as error:
            log.warning("decision log: retention purge failed: %s", error)
            return
        if removed:
            log.info("decision log: removed %d decisions and batches older than %g days", removed,
                     self.retention_s / 86_400)


def _name_os_thread(name: str) -> None:
    """Name the calling thread in the OS (Linux; at most 15 bytes), where Python 3.11 names none: the writer's
    CPU time can then be told from the request threads'. Elsewhere, nothing."""
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except Exception:  # a name is a convenience: never a reason for the writer not to run
        log.debug("could not name the thread %s", name, exc_info=True)


_PR_SET_NAME = 15


def decision_row(call: PredictCall | None, outcome: PredictOutcome, inputs: str, at: float) -> tuple[Any, ...]:
    """One decisions row, in ``records.DECISION_COLUMNS`` order: everything that is not looked up is one JSON
    text, encoded once, by orjson (0.6 against 6.7 us with the json module)."""
    prediction = outcome.prediction
    logged, value = _logged_input(call, inputs)
    # _value_ and _name_: the enum's own attributes (.value and .name go through a Python-level descriptor)
    return (outcome.request_id, outcome.model, outcome.model_version, prediction.kind._value_, outcome.decision._name_,
            _answered_by(outcome), float(outcome.confidence), float(outcome.raw_confidence), float(outcome.threshold),
            prediction.label,
            orjson.dumps(_details(call, outcome, {}), option=orjson.OPT_SERIALIZE_NUMPY, default=float).decode(),
            float(outcome.cost), outcome.trace_id, logged, value, at)


def _item(call: PredictCall | None, outcome: PredictOutcome, inputs: str,
          shared: dict[int, list[dict[str, str]]]) -> list[Any] | None:
    """A batch item's row (``batch_records.ITEM_COLUMNS``), the values ``decision_row`` gives, its details still
    an object (the batch encodes them all at once); None (logged) for one that cannot be built."""
    try:
        logged, value = _logged_input(call, inputs)
        return [outcome.request_id, outcome.decision._name_, _answered_by(outcome), float(outcome.confidence),
                float(outcome.raw_confidence), float(outcome.threshold), outcome.prediction.label,
                _details(call, outcome, shared), float(outcome.cost), outcome.trace_id, logged, value]
    except Exception:
        log.exception("decision log: the decision for request %r could not be made a row; it is dropped",
                      outcome.request_id)
        return None


def _batch(items: list[tuple[PredictOutcome, list[Any]]], at: float) -> DecisionBatch:
    first = items[0][0]
    return DecisionBatch(first.model, first.model_version, first.prediction.kind._value_,
                         tuple([row[0] for _, row in items]), items_document([row for _, row in items]), at)


def _answered_by(outcome: PredictOutcome) -> str:
    return outcome.answered_by if outcome.tiers and outcome.answered_by != outcome.model else ""


def _details(call: PredictCall | None, outcome: PredictOutcome,
             shared: dict[int, list[dict[str, str]]]) -> dict[str, Any]:
    return _details_of(outcome.prediction.fields, outcome.reasons, outcome.verifiers,
                       call.caller if call is not None else "", outcome.tiers, shared)


def _details_of(fields: Mapping[str, ExtractedField], reasons: Sequence[Reason], verifiers: Sequence[VerifierOutcome],
                caller: str, tiers: Sequence[TierOutcome], shared: dict[int, list[dict[str, str]]]) -> dict[str, Any]:
    """What a decision row keeps as JSON. ``shared``: the verifier lists made so far, by the id of the outcomes
    they were made from; a batch's items that share their verifier outcomes share the list."""
    listed = shared.get(id(verifiers))
    if listed is None:
        listed = [{"name": v.name, "status": v.status._value_, "message": v.message} for v in verifiers]
        shared[id(verifiers)] = listed
    details: dict[str, Any] = {
        "fields": {name: [f.value, f.confidence] for name, f in fields.items()},
        "reasons": [{"code": r.code._value_, "verifier": r.verifier, "message": r.message} for r in reasons],
        "verifiers": listed,
    }
    if caller:
        details["caller"] = caller
    if tiers:
        details["tiers"] = [{"name": t.name, "kind": t.kind, "decision": t.decision.name, "confidence": t.confidence,
                             "cost": t.cost, "reasons": [r.code.value for r in t.reasons],
                             "label": None if t.prediction is None else t.prediction.label,
                             "fields": {} if t.prediction is None else {n: f.value
                                                                        for n, f in t.prediction.fields.items()}}
                            for t in tiers]
    return details


class _Unbuilt(NamedTuple):
    """A single Predict's decision as the buffer holds it, until the writer makes it a row."""

    call: PredictCall | None
    outcome: PredictOutcome
    inputs: str
    at: float


_Entry = tuple[Any, ...] | _Unbuilt | DecisionBatch | None  # what the buffer holds for one append


def _row(call: PredictCall | None, outcome: PredictOutcome, inputs: str, at: float) -> tuple[Any, ...] | None:
    """The decision's row; None (logged) for one that cannot be built: the log must not fail the request it
    records."""
    try:
        return decision_row(call, outcome, inputs, at)
    except Exception:
        log.exception("decision log: the decision for request %r could not be made a row; it is dropped",
                      outcome.request_id)
        return None


def _logged_input(call: PredictCall | None, policy: str) -> tuple[str, str | None]:
    if call is None or policy == "none":
        return "none", None
    if policy == "full":
        document: dict[str, Any] = {"text": call.text} if not call.tensors else {"tensors": [
            {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "values": t.values.ravel().tolist()}
            for t in call.tensors]}
        return "full", orjson.dumps(document).decode()
    if not call.tensors:
        return "hash", hashlib.sha256(call.text.encode()).hexdigest()
    digest = hashlib.sha256()
    for t in call.tensors:
        digest.update(_tensor_header(t.name, t.dtype, t.shape))
        values = t.values
        digest.update(values if values.flags.c_contiguous else values.tobytes())  # the same bytes, not copied
    return "hash", digest.hexdigest()


def _stacked_inputs(tensors: Sequence[TensorInput], policy: str, count: int) -> list[tuple[str, str | None]]:
    """``_logged_input`` of each of the first ``count`` items whose tensors are ``tensors``' rows."""
    if policy == "none":
        return [("none", None)] * count
    rows = [(t.name, t.dtype, tuple(t.shape[1:]), t.values.reshape(t.shape[0], -1)) for t in tensors]
    if policy == "full":
        return [("full", orjson.dumps({"tensors": [{"name": name, "dtype": dtype, "shape": list(shape),
                                                    "values": values[i].tolist()}
                                                   for name, dtype, shape, values in rows]}).decode())
                for i in range(count)]
    headers = [(_tensor_header(name, dtype, shape), values) for name, dtype, shape, values in rows]
    logged = []
    for i in range(count):
        digest = hashlib.sha256()
        for header, values in headers:
            digest.update(header)
            digest.update(values[i])  # a row of a C-contiguous array: its bytes, not copied
        logged.append(("hash", digest.hexdigest()))
    return logged


@functools.lru_cache(maxsize=256)
def _tensor_header(name: str, dtype: str, shape: tuple[int, ...]) -> bytes:
    """What a tensor's hash starts with (a model has a few: formatting it for every row cost 0.5 us)."""
    return f"{name}|{dtype}|{shape}|".encode()
