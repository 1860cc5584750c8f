"""Predict answers written straight in protobuf's wire format: the bytes upb would serialize, without its messages.

A Predict answer was built field by field in upb messages and then serialized: about 25 calls into upb for a
digits answer, 3.5-4.3 us an item of a batch and 4.1 us a single Predict in process (2026-12-05). The answer
is the same few fields every time, so here it is written as bytes: each string, double and length prefix as
protobuf encodes it, in field-number order, with what a batch's items share (the model, the threshold, one
verifier list per distinct one) encoded once. The servicer hands the bytes to gRPC as they are.

Only answers of the common shape are written here: a classifier's, without escalation tiers. Any other
(an extraction, a cascade's tiers, a batch item's error) is built by ``converters`` in upb and its bytes are
spliced in, so every answer is the same bytes either way. ``tests/transport/test_wire.py`` holds the two to
byte-for-byte equality on generated answers: empty strings and zero doubles left out (and a -0.0 kept),
lengths past one byte of varint, text outside ASCII.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

from smallguard.server.domain.errors import GuardError
from smallguard.server.domain.predictions import BatchOutcome, Decision, PredictOutcome, Reason, VerifierOutcome
from smallguard.server.transport.converters import (
    DECISION_VALUE,
    REASON_VALUE,
    STATUS_VALUE,
    predict_response,
    status_of,
)
from smallguard.v1 import guard_pb2 as pb
from smallguard.verifiers import LabelScore, ModelKind, Prediction

_pack_double = struct.Struct("<d").pack
_KEPT = 4096  # at most this many labels, model names and verifier results are kept encoded (a reload may bring new)
_KEPT_BYTES = 512  # and a verifier result only when it is at most this long: at most 2 MiB kept in all
_labels: dict[str, tuple[bytes, bytes]] = {}  # label -> (a classification's start, a top-k entry's start)
_heads: dict[tuple[str, str], bytes] = {}  # (model, version) -> their fields
_checks: dict[tuple[str, str, object, str, object], bytes] = {}  # a verifier result's fields but its duration

# each field's tag: (field number << 3) | wire type (0: varint, 1: 64-bit, 2: length-delimited)
_REQUEST_ID, _MODEL, _VERSION, _DECISION, _CLASSIFICATION = b"\x0a", b"\x12", b"\x1a", b"\x20", b"\x2a"
_CONFIDENCE, _RAW_CONFIDENCE, _THRESHOLD, _REASONS, _VERIFIERS = b"\x39", b"\x41", b"\x49", b"\x52", b"\x5a"
_TRACE_ID, _ANSWERED_BY = b"\x62", b"\x6a"
_RESULTS = b"\x0a"  # PredictBatchResponse.results, and PredictBatchResult.response: both field 1


def predict_response_bytes(outcome: PredictOutcome) -> bytes:
    """``converters.predict_response(outcome)``, serialized."""
    if outcome.tiers or outcome.prediction.kind is not ModelKind.CLASSIFIER:
        return predict_response(outcome).SerializeToString()
    return _response(outcome.request_id, _head(outcome.model, outcome.model_version),
                     outcome.decision, outcome.prediction, outcome.confidence, outcome.raw_confidence,
                     _tail(outcome.threshold, outcome.reasons, outcome.verifiers, outcome.trace_id,
                           outcome.answered_by or outcome.model))


def batch_results_bytes(results: Sequence[PredictOutcome | GuardError], on_error: Callable[[str], None]) -> bytes:
    """A result per item, serialized: each outcome's answer, or its error, which names its item
    (``items[3].inputs[pixels]: ...``) and whose status code name ``on_error`` hears. Items whose verifiers
    answered them alike share their outcomes' tuples (``VerifierRunner.run_many``): their end is encoded once."""
    parts = []
    tails: dict[tuple[int, int, bytes, str, str], bytes] = {}  # every tuple is held by ``results`` meanwhile
    for index, result in enumerate(results):
        if not isinstance(result, PredictOutcome):
            code = status_of(result).name
            on_error(code)
            parts.append(_length_delimited(_RESULTS, pb.PredictBatchResult(error=pb.ItemError(
                code=code, message=f"items[{index}].{result}")).SerializeToString()))
            continue
        if result.tiers or result.prediction.kind is not ModelKind.CLASSIFIER:
            item = predict_response_bytes(result)
        else:
            answered_by = result.answered_by or result.model
            # the threshold by its bits: 0.0 (left out) and -0.0 (written) are equal as floats
            key = (id(result.reasons), id(result.verifiers), _pack_double(result.threshold), result.trace_id,
                   answered_by)
            tail = tails.get(key)
            if tail is None:
                tail = tails[key] = _tail(result.threshold, result.reasons, result.verifiers, result.trace_id,
                                          answered_by)
            item = _response(result.request_id, _head(result.model, result.model_version), result.decision,
                             result.prediction, result.confidence, result.raw_confidence, tail)
        item = _length_delimited(_RESULTS, item)
        parts.append(_length_delimited(_RESULTS, item))
    return b"".join(parts)


def stacked_results_bytes(outcome: BatchOutcome) -> bytes:
    """The response to a batch served over arrays, a result per item, serialized: each item's answer as
    ``predict_response_bytes`` writes the outcome it would have had alone, with what items share encoded once: the
    model, and the end of an answer (its threshold, reasons, verifier results, trace) once per distinct pair of
    reasons and verifier outcomes (the outcome holds every tuple for the whole call, so an id names one)."""
    model, threshold, trace_id = outcome.model, outcome.threshold, outcome.trace_id
    head = _head(model, outcome.model_version)
    tails: dict[tuple[int, int], bytes] = {}
    lengths, parts = _LENGTHS, []
    for request_id, decision, prediction, confidence, raw_confidence, reasons, verifiers in zip(
            outcome.request_ids, outcome.decisions, outcome.predictions, outcome.confidences, outcome.raw_confidences,
            outcome.reasons, outcome.verifiers, strict=True):
        tail = tails.get((id(reasons), id(verifiers)))
        if tail is None:
            tail = tails[id(reasons), id(verifiers)] = _tail(threshold, reasons, verifiers, trace_id, model)
        body = _response(request_id, head, decision, prediction, confidence, raw_confidence, tail)
        size = len(body)  # the response in its PredictBatchResult (field 1), in the results (field 1)
        inner = lengths[size] if size < _SHORT else _varint(size)
        size += 1 + len(inner)
        parts += (_RESULTS, lengths[size] if size < _SHORT else _varint(size), _RESULTS, inner, body)
    return b"".join(parts)


# ------------------------------------------------------------------------------------ the parts


def _response(request_id: str, head: bytes, decision: Decision, prediction: Prediction, confidence: float,
              raw_confidence: float, tail: bytes) -> bytes:
    """A classifier's PredictResponse: ``head`` its model and version, ``tail`` everything from its threshold on
    (``_tail``). The usual values are written inline; an unseen label or a zero goes through the general parts."""
    labels, pack = _labels, _pack_double
    probability = prediction.probability
    known = labels.get(prediction.label)
    if known is None or not probability:
        answer = _classification(prediction)
    else:
        parts = [known[0], pack(probability)]
        for score in prediction.top_k:
            entry = labels.get(score.label)
            probability = score.probability
            if entry is None or not probability:
                parts.append(_top_entry(score))
            else:
                parts.append(entry[1])
                parts.append(pack(probability))
        body = b"".join(parts)
        answer = _CLASSIFICATION + _varint(len(body)) + body
    identifier = request_id.encode()
    size = len(identifier)
    return b"".join((_REQUEST_ID + _LENGTHS[size] + identifier if 0 < size < _SHORT else _string(_REQUEST_ID,
                                                                                                 request_id),
                     head, _DECISIONS[decision], answer,
                     _CONFIDENCE + pack(confidence) if confidence else _double(_CONFIDENCE, confidence),
                     _RAW_CONFIDENCE + pack(raw_confidence) if raw_confidence else _double(_RAW_CONFIDENCE,
                                                                                            raw_confidence),
                     tail))


def _tail(threshold: float, reasons: Sequence[Reason], verifiers: Sequence[VerifierOutcome], trace_id: str,
          answered_by: str) -> bytes:
    """A PredictResponse's fields from its threshold (9) to answered_by (13)."""
    return b"".join((_double(_THRESHOLD, threshold), *[_length_delimited(_REASONS, b"".join((
        _enum(b"\x08", REASON_VALUE[r.code]), _string(b"\x12", r.verifier), _string(b"\x1a", r.message))))
        for r in reasons], *[_verifier(o) for o in verifiers],
        _string(_TRACE_ID, trace_id), _string(_ANSWERED_BY, answered_by)))


def _verifier(outcome: VerifierOutcome) -> bytes:
    """One verifier result (field 11): its fields up to the duration are kept by value (a bundle's verifiers say
    the same few things), the duration is written each time."""
    key = (outcome.name, outcome.use, outcome.status, outcome.message, outcome.on_fail)
    start = _checks.get(key)
    if start is None:
        start = b"".join((
            _string(b"\x0a", outcome.name), _string(b"\x12", outcome.use), _enum(b"\x18", STATUS_VALUE[outcome.status]),
            _string(b"\x22", outcome.message), _enum(b"\x28", DECISION_VALUE[outcome.on_fail])))
        if len(start) <= _KEPT_BYTES:  # a message may quote the caller's context: one of any length is not kept
            if len(_checks) >= _KEPT:
                _checks.clear()
            _checks[key] = start
    return _length_delimited(_VERIFIERS, start + _double(b"\x31", outcome.duration_ms))


def _head(model: str, version: str) -> bytes:
    """A response's model and version fields (2 and 3), kept."""
    head = _heads.get((model, version))
    if head is None:
        if len(_heads) >= _KEPT:
            _heads.clear()
        head = _heads[model, version] = _string(_MODEL, model) + _string(_VERSION, version)
    return head


def _classification(prediction: Prediction) -> bytes:
    """The classification field (5) of ``prediction``, whatever its values."""
    label = prediction.label or ""
    if label not in _labels:
        _label(label)
    body = b"".join((_string(b"\x0a", label), _double(b"\x11", prediction.probability),
                     *[_top_entry(score) for score in prediction.top_k]))
    return _CLASSIFICATION + _varint(len(body)) + body


def _top_entry(score: LabelScore) -> bytes:
    """One top-k entry (field 3 of a classification), whatever its values."""
    if score.label not in _labels:
        _label(score.label)
    return _length_delimited(b"\x1a", _string(b"\x0a", score.label) + _double(b"\x11", score.probability))


def _label(label: str) -> None:
    """Keep what a classification with ``label`` starts with (up to its probability's 8 bytes), and a top-k
    entry for it (the same): a model has a few labels."""
    name = _string(b"\x0a", label) + b"\x11"
    if len(_labels) >= _KEPT:
        _labels.clear()
    _labels[label] = (name, b"\x1a" + _varint(len(name) + 8) + name)


# ------------------------------------------------------------------------------------ protobuf's encoding


def _varint(value: int) -> bytes:
    if value < _SHORT:
        return _LENGTHS[value]
    out = bytearray()
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(tag: bytes, body: bytes) -> bytes:
    return tag + _varint(len(body)) + body


def _string(tag: bytes, text: str) -> bytes:
    """A string field; nothing for "" (proto3 leaves a field at its default out)."""
    if not text:
        return b""
    data = text.encode()
    return tag + _varint(len(data)) + data


def _double(tag: bytes, value: float) -> bytes:
    """A double field; nothing for 0.0 (its default), but -0.0 is written: upb compares the bits."""
    if value or math.copysign(1.0, value) < 0:  # NaN is true
        return tag + _pack_double(value)
    return b""


def _enum(tag: bytes, value: int) -> bytes:
    return tag + _varint(value) if value else b""


def _short_varint(value: int) -> bytes:
    return bytes((value,)) if value < 128 else bytes((value & 0x7F | 0x80, value >> 7))


_SHORT = 4096
_LENGTHS = tuple(_short_varint(n) for n in range(_SHORT))  # a length is one lookup (an answer is 200-300 bytes)
_DECISIONS = {decision: _enum(_DECISION, value) for decision, value in DECISION_VALUE.items()}
