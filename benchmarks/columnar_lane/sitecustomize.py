"""An experiment, not a serving path: what a batch path that builds almost no Python object per item would
cost at the server. It answers the design question of issue #9's batch target with a measurement.

With ``SG_COLUMNAR=1`` and this folder on ``PYTHONPATH``, a `smallguard serve` started in that environment
imports this module at start-up (Python's ``sitecustomize``), and ``PredictBatch`` calls for the shipped
digits model with stacked inputs and no items go through ``columnar_batch``; every other call takes the
server's own path. Compare it with the server as it is, in alternating rounds:

    make bench-ab ARGS="--kind stacked --in-flight 4 --rounds 4 \\
        --b-env SG_COLUMNAR=1 --b-env PYTHONPATH=benchmarks/columnar_lane"

(add ``--b-env SG_COLUMNAR_NOLOG=1`` to leave the decision log out, ``--b-env SG_COLUMNAR_RESPONSE=items`` for
the response as the server builds it today, an entry per item filled field by field, ``--b-env
SG_COLUMNAR_VERIFY=sdk`` for the verifiers run over the SDK's `Prediction` objects). It does the work the
server does for such a batch, over arrays: the request decoded, the input's range checked with two
reductions, one model run, calibration and top k for every row at once, `label-allowed` (every item SKIPPED:
the requests carry no context), the decision by one comparison, each low-confidence item's reason, drift fed
the batch as one entry, a request id per item, the metrics' tallies per batch and their two histograms per
item, the batch's decision-log entry (each item's JSON details and input hash, as the server writes them) and a
response
in columns: packed numbers and repeated strings, which protobuf fills in C (carried as unknown fields of
`PredictBatchResponse`, with an empty result per item so that the load generator counts the items).

It is named ``sitecustomize`` to be loaded at start-up: on ``PYTHONPATH`` it hides any other ``sitecustomize``
(a distribution's, a coverage hook), so it belongs there only for a measure. What it leaves out, which the real
thing would need: any other model, verifier or context, tiers, traces, and
the items' own request ids and contexts. ``tests/benchmarks/test_columnar_lane.py`` checks that its decisions,
decision-log rows and per-item responses are the server's for the same batches, so that what it measures is
the same work.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from typing import Any

import numpy as np
import orjson

_MODEL, _VERSION = "digits", "1.0.0"
_SKIPPED = "the request context has no 'allowed_labels'"
_VERIFIERS = orjson.dumps([{"name": "label-allowed", "status": "skipped", "message": _SKIPPED}]).decode()
_HEADER = b"pixels|float32|(64,)|"  # the input hash's header (decision_log._tensor_header)
_LABELS = tuple(str(digit) for digit in range(10))


def columnar_batch(service: Any, raw: bytes, log_decisions: bool = True, columns: bool = True,
                   sdk_verifiers: bool = False) -> Any | None:
    """The response to an encoded stacked digits batch, or None when the batch is not one this lane serves.
    ``columns`` False: the response as the server builds it today, an entry per item. ``sdk_verifiers``: the
    bundle's verifiers run as the server runs them, over the SDK's `Prediction` objects (one per item, with its
    top k), instead of the lane's one answer for a batch without context."""
    from smallguard.server.calibration import logits_from_probabilities
    from smallguard.server.core.request_ids import new_request_id
    from smallguard.server.domain.predictions import Decision
    from smallguard.v1 import guard_pb2 as pb

    request = pb.PredictBatchRequest.FromString(raw)
    if request.model != _MODEL or request.items or len(request.inputs) != 1:
        return None
    started = time.perf_counter()
    guard = service._guard
    model = guard._loaded.repository.get(_MODEL, "")
    tensor = request.inputs[0]
    count = tensor.shape[0] if len(tensor.shape) == 2 else 0
    if (tensor.name, tensor.dtype, list(tensor.shape), len(tensor.raw_contents)) != (
            "pixels", pb.FLOAT32, [count, 64], count * 64 * 4) or count < 1:
        return None  # anything else, and every error, the server's own path answers
    pixels = np.frombuffer(tensor.raw_contents, dtype="<f4").reshape(count, 64)
    if not (pixels.min() >= 0.0 and pixels.max() <= 16.0):  # a bad row: the server's path names it
        return None
    head = model.head
    scores = np.asarray(model.onnx.run({"pixels": pixels}), dtype=np.float64).reshape(count, -1)
    calibrated = head._calibrator.probabilities(logits_from_probabilities(scores))
    top = np.argsort(-calibrated, axis=1, kind="stable")[:, :head._top_k]
    rows = np.arange(count)
    confidences, raws = calibrated[rows, top[:, 0]].tolist(), scores[rows, top[:, 0]].tolist()
    threshold = model.threshold
    answered = (calibrated[rows, top[:, 0]] >= threshold).tolist()
    labels = [head._labels[i] for i in top[:, 0].tolist()]
    if sdk_verifiers and not _verified_by_the_sdk(guard, model, calibrated, top, labels):
        return None
    reasons = [None if ok else f"confidence {c:.4f} is below the threshold {threshold:.4f}"
               for c, ok in zip(confidences, answered, strict=True)]
    decisions = [Decision.ANSWER if ok else Decision.ABSTAIN for ok in answered]
    if model.drift is not None:
        model.drift._queue((pixels,), confidences, [d - 1 for d in decisions])
    ids = [new_request_id() for _ in range(count)]
    _record_metrics(guard._metrics, decisions, reasons, confidences, (time.perf_counter() - started) / count)
    if log_decisions and guard._decisions is not None:
        _log(guard._decisions, ids, decisions, confidences, raws, threshold, labels, reasons, pixels)
    if not columns:
        return _items(pb, ids, decisions, confidences, raws, threshold, labels, reasons, calibrated, top)
    response = pb.PredictBatchResponse()
    add = response.results.add
    for _ in range(count):
        add().response.SetInParent()
    numbers = pb.TensorContents()
    numbers.double_contents.extend(confidences)
    numbers.double_contents.extend(raws)
    numbers.double_contents.extend(calibrated[rows[:, None], top].ravel().tolist())
    numbers.int32_contents.extend([d._value_ for d in decisions])
    numbers.int32_contents.extend(top.ravel().tolist())
    strings = pb.ModelInfo()
    strings.labels.extend(ids)
    strings.labels.extend(labels)
    strings.fields.extend([r for r in reasons if r is not None])
    response.MergeFromString(_field(90, numbers.SerializeToString()) + _field(91, strings.SerializeToString()))
    return response


def _verified_by_the_sdk(guard: Any, model: Any, calibrated: np.ndarray, top: np.ndarray, labels: list[str]) -> bool:
    """Whether every item's verifiers, run on its own `Prediction` as the server runs them, were SKIPPED (what the
    lane answers); the work is what such a lane would do without a verifier API over columns."""
    from smallguard.verifiers import LabelScore, ModelKind, Prediction

    kind, names = ModelKind.CLASSIFIER, model.head._labels
    predictions = [Prediction(kind, label, row[order[0]], tuple([LabelScore(names[i], row[i]) for i in order]))
                   for label, row, order in zip(labels, calibrated.tolist(), top.tolist(), strict=True)]
    outcomes = guard._runner.run_many(model.verifiers, predictions, [{}] * len(predictions),
                                      model.spec.policy.verifier_timeout_ms)
    return all(o.status._value_ == "skipped" and o.message == _SKIPPED for item in outcomes for o in item)


def _items(pb: Any, ids: list[str], decisions: list[Any], confidences: list[float], raws: list[float],
           threshold: float, labels: list[str], reasons: list[str | None], calibrated: np.ndarray,
           top: np.ndarray) -> Any:
    """The response as the server builds it today, an entry per item filled field by field, from the columns."""
    response = pb.PredictBatchResponse()
    add = response.results.add
    for i, request_id in enumerate(ids):
        item = add().response
        item.request_id, item.model, item.model_version = request_id, _MODEL, _VERSION
        item.decision = decisions[i]._value_
        item.confidence, item.raw_confidence, item.threshold = confidences[i], raws[i], threshold
        item.answered_by = _MODEL
        answer = item.classification
        answer.label, answer.probability = labels[i], confidences[i]
        scores = answer.top_k.add
        for j, probability in zip(top[i].tolist(), calibrated[i, top[i]].tolist(), strict=True):
            scores(label=_LABELS[j], probability=probability)
        if reasons[i] is not None:
            item.reasons.add(code=pb.Reason.LOW_CONFIDENCE, verifier="", message=reasons[i])
        item.verifiers.add(name="label-allowed", use="label-allowed", status=pb.VerifierResult.SKIPPED,
                           message=_SKIPPED, on_fail=pb.ESCALATE, duration_ms=0.001)
    return response


def _record_metrics(metrics: Any, decisions: list[Any], reasons: list[str | None], confidences: list[float],
                    duration_s: float) -> None:
    if not metrics.recording:
        return
    tally = Counter((d._name_, "NONE" if r is None else "LOW_CONFIDENCE") for d, r in zip(decisions, reasons,
                                                                                       strict=True))
    with metrics._lock:
        for (decision, reason), n in tally.items():
            for counts in (metrics._predictions.counts, *([metrics._reasons.counts] if reason != "NONE" else [])):
                key = (_MODEL, _VERSION, decision, reason)
                counts[key] = counts.get(key, 0) + n
        key = (_MODEL, _VERSION, "label-allowed", "skipped")
        metrics._verifier_outcomes.counts[key] = metrics._verifier_outcomes.counts.get(key, 0) + len(decisions)
    for confidence, decision in zip(confidences, decisions, strict=True):
        metrics._confidence.record((_MODEL, _VERSION), confidence)
        metrics._duration.record((_MODEL, _VERSION, decision._name_), duration_s)


def _log(log: Any, ids: list[str], decisions: list[Any], confidences: list[float], raws: list[float],
         threshold: float, labels: list[str], reasons: list[str | None], pixels: np.ndarray) -> None:
    """The batch's decisions as the server's decision log keeps them (``store.batch_records``): one entry."""
    from smallguard.server.store.batch_records import DecisionBatch, items_document

    at = time.time()
    verifiers = orjson.loads(_VERIFIERS)
    items = []
    for i, request_id in enumerate(ids):
        reason = reasons[i]
        listed = [] if reason is None else [{"code": "LOW_CONFIDENCE", "verifier": "", "message": reason}]
        items.append([request_id, decisions[i]._name_, "", confidences[i], raws[i], threshold, labels[i],
                      {"fields": {}, "reasons": listed, "verifiers": verifiers}, 0.0, "", "hash",
                      hashlib.sha256(_HEADER + pixels[i].tobytes()).hexdigest()])
    log.append_batch(DecisionBatch(_MODEL, _VERSION, "classifier", tuple(ids), items_document(items), at))


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: what an unknown field of the response carries."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _install() -> None:
    from smallguard.server.transport import servicer

    served = servicer.GuardService.PredictBatch
    log_decisions = os.environ.get("SG_COLUMNAR_NOLOG") != "1"
    columns = os.environ.get("SG_COLUMNAR_RESPONSE") != "items"
    sdk_verifiers = os.environ.get("SG_COLUMNAR_VERIFY") == "sdk"

    def predict_batch(self: Any, raw: bytes, context: Any) -> Any:
        response = columnar_batch(self, raw, log_decisions, columns, sdk_verifiers)
        return response if response is not None else served(self, raw, context)

    servicer.GuardService.PredictBatch = predict_batch


if os.environ.get("SG_COLUMNAR") == "1":
    _install()
