"""Protobuf messages to the core's types and back; nothing else lives here."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf import struct_pb2

from smallguard.server.core.guard import FeedbackOffError, ModelReport
from smallguard.server.core.models import LoadedModel
from smallguard.server.domain.errors import (
    FeedbackConflictError,
    GuardError,
    InvalidInputError,
    ModelNotFoundError,
    RequestNotFoundError,
)
from smallguard.server.domain.predictions import Decision, PredictCall, PredictOutcome, ReasonCode, TensorInput
from smallguard.server.observability import drift
from smallguard.server.transport.feedback_converters import feedback_summary
from smallguard.v1 import guard_pb2 as pb
from smallguard.verifiers import ModelKind, Status

# dtype enum -> (numpy dtype name, the TensorContents field that carries it)
_DTYPES = {
    pb.FLOAT32: ("float32", "float_contents"),
    pb.FLOAT64: ("float64", "double_contents"),
    pb.INT32: ("int32", "int32_contents"),
    pb.INT64: ("int64", "int64_contents"),
    pb.BOOL: ("bool", "bool_contents"),
}
_DTYPE_ENUM = {name: enum for enum, (name, _) in _DTYPES.items()}
_STATUS = {
    Status.PASSED: pb.VerifierResult.PASSED,
    Status.FAILED: pb.VerifierResult.FAILED,
    Status.ERROR: pb.VerifierResult.ERROR,
    Status.SKIPPED: pb.VerifierResult.SKIPPED,
}
_DECISION = {decision: pb.Decision.Value(decision.name) for decision in Decision}
_REASON = {code: pb.Reason.Code.Value(code.value) for code in ReasonCode}
_KIND = {ModelKind.CLASSIFIER: pb.ModelInfo.CLASSIFIER, ModelKind.EXTRACTOR: pb.ModelInfo.EXTRACTOR}
_MAX_ELEMENTS = 1 << 26
# The status code for each of the core's errors; any other error is INTERNAL.
_STATUS_OF: tuple[tuple[type[GuardError], grpc.StatusCode], ...] = (
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
    (RequestNotFoundError, grpc.StatusCode.NOT_FOUND),
    (FeedbackConflictError, grpc.StatusCode.ALREADY_EXISTS),
    (FeedbackOffError, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_of(error: GuardError) -> grpc.StatusCode:
    """The gRPC status code a request that failed with ``error`` gets (a batch item: its name)."""
    for kind, code in _STATUS_OF:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def predict_call(request: pb.PredictRequest) -> PredictCall:
    return PredictCall(
        model=request.model,
        version=request.version,
        request_id=request.request_id,
        tensors=tuple(_tensor(t, i) for i, t in enumerate(request.inputs)),
        text=request.text,
        context=dict(request.context),
    )


def batch_item(request: pb.PredictRequest) -> PredictCall | InvalidInputError:
    """One item of a PredictBatch, or the error that keeps it from being served."""
    try:
        return predict_call(request)
    except InvalidInputError as error:
        return error


def predict_batch_response(results: Sequence[PredictOutcome | GuardError],
                           on_error: Callable[[str], None]) -> pb.PredictBatchResponse:
    """One result per item; an error names its item (``items[3].inputs[pixels]: ...``), and ``on_error``
    hears the status code name of each item that failed."""
    response = pb.PredictBatchResponse()
    for index, result in enumerate(results):
        if isinstance(result, PredictOutcome):
            response.results.add(response=predict_response(result))
        else:
            code = status_of(result).name
            on_error(code)
            response.results.add(error=pb.ItemError(code=code, message=f"items[{index}].{result}"))
    return response


def _tensor(tensor: pb.Tensor, index: int) -> TensorInput:
    where = f"inputs[{tensor.name or index}]"
    if not tensor.name:
        raise InvalidInputError("required: the input's name as the model declares it", f"inputs[{index}].name")
    if tensor.dtype not in _DTYPES:
        raise InvalidInputError(f"expected one of {', '.join(_DTYPE_ENUM).upper()}", where + ".dtype")
    dtype, field = _DTYPES[tensor.dtype]
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"{list(shape)} has a negative size", where + ".shape")
    count = math.prod(shape)
    if count > _MAX_ELEMENTS:
        raise InvalidInputError(f"{list(shape)} is {count} elements; at most {_MAX_ELEMENTS}", where + ".shape")
    typed = getattr(tensor.contents, field)
    others = [descriptor.name for descriptor, _ in tensor.contents.ListFields() if descriptor.name != field]
    if others:
        raise InvalidInputError(f"dtype {dtype.upper()} goes in {field}, not {others[0]}", where + ".contents")
    if tensor.raw_contents and len(typed):
        raise InvalidInputError("give the values in contents or in raw_contents, not both", where)
    if tensor.raw_contents:
        item = np.dtype(dtype).newbyteorder("<")
        if len(tensor.raw_contents) != count * item.itemsize:
            raise InvalidInputError(f"{len(tensor.raw_contents)} bytes; shape "
                                    f"{list(shape)} of {dtype} needs {count * item.itemsize}", where + ".raw_contents")
        values = np.frombuffer(tensor.raw_contents, dtype=item).astype(dtype)
    else:
        if len(typed) != count:
            raise InvalidInputError(f"{len(typed)} values; shape {list(shape)} "
                                    f"needs {count}", where + f".contents.{field}")
        values = np.asarray(typed, dtype=dtype)
    return TensorInput(name=tensor.name, dtype=dtype, shape=shape, values=values)


def predict_response(outcome: PredictOutcome) -> pb.PredictResponse:
    """The response message, built from plain mappings (protobuf's fastest way to fill nested fields)."""
    prediction = outcome.prediction
    answer: dict[str, Any]
    if prediction.kind is ModelKind.CLASSIFIER:
        answer = {"classification": {
            "label": prediction.label or "", "probability": prediction.probability,
            "top_k": [{"label": s.label, "probability": s.probability} for s in prediction.top_k]}}
    else:
        answer = {"extraction": {"fields": [
            {"name": f.name, "value": f.value or "", "present": f.value is not None, "confidence": f.confidence,
             "raw_confidence": f.raw_confidence} for f in prediction.fields.values()]}}
    return pb.PredictResponse(
        request_id=outcome.request_id,
        model=outcome.model,
        model_version=outcome.model_version,
        decision=_DECISION[outcome.decision],
        confidence=outcome.confidence,
        raw_confidence=outcome.raw_confidence,
        threshold=outcome.threshold,
        trace_id=outcome.trace_id,
        reasons=[{"code": _REASON[r.code], "verifier": r.verifier, "message": r.message} for r in outcome.reasons],
        verifiers=[{"name": o.name, "use": o.use, "status": _STATUS[o.status], "message": o.message,
                    "on_fail": _DECISION[o.on_fail], "duration_ms": o.duration_ms} for o in outcome.verifiers],
        **answer,
    )


def model_info(report: ModelReport) -> pb.ModelInfo:
    model = report.model
    spec = model.spec
    info = pb.ModelInfo(
        name=spec.name,
        version=spec.version,
        kind=_KIND[spec.kind],
        description=spec.description,
        labels=list(spec.labels),
        fields=list(spec.fields),
        on_low_confidence=_DECISION[spec.policy.on_low_confidence],
    )
    for item in spec.inputs:
        if item.kind == "text":
            info.inputs.add(name=item.name, kind=pb.InputSpec.TEXT, max_chars=item.max_chars)
        else:
            info.inputs.add(name=item.name, kind=pb.InputSpec.TENSOR, dtype=_DTYPE_ENUM[item.dtype],
                            shape=list(item.shape), has_range=item.min is not None,
                            min=item.min or 0.0, max=item.max or 0.0)
    for bound in model.verifiers:
        params = struct_pb2.Struct()
        params.update(_jsonable(bound.spec.params))
        info.verifiers.add(name=bound.spec.name, use=bound.spec.use, params=params,
                           on_fail=_DECISION[bound.spec.on_fail],
                           distribution=model.distributions.get(bound.spec.name, ""))
    info.calibration.CopyFrom(_calibration(model))
    info.drift.CopyFrom(drift_status(report.drift))
    if report.feedback is not None:
        info.feedback.CopyFrom(feedback_summary(report.feedback))
    return info


def drift_status(snapshot: drift.DriftSnapshot) -> pb.DriftStatus:
    policy = snapshot.policy
    return pb.DriftStatus(
        state=pb.DriftStatus.State.Value(snapshot.state.name), message=snapshot.message,
        reference=snapshot.reference, samples=snapshot.samples, window=policy.window, min_samples=policy.min_samples,
        scores=[pb.DriftScore(signal=s.signal, score=s.score, limit=s.limit, past_limit=s.past_limit)
                for s in snapshot.scores],
        escalate_when_drifted=policy.on_drift == "escalate",
    )


def _calibration(model: LoadedModel) -> pb.CalibrationSummary:
    calibration = model.calibration
    if calibration is None:
        return pb.CalibrationSummary(calibrated=False, method="none", threshold=model.threshold)
    metrics = calibration.metrics
    guarantee = calibration.guarantee
    return pb.CalibrationSummary(
        calibrated=True,
        method=calibration.method,
        metrics_before=_floats(metrics.get("before", {})),
        metrics_after=_floats(metrics.get("after", {})),
        evaluated_on=str(metrics.get("evaluated_on", "")),
        threshold=calibration.threshold,
        fitted_at=calibration.fitted_at,
        fit_samples=calibration.fit_samples,
        guarantee=_guarantee(guarantee),
        fields={name: pb.FieldCalibrationSummary(
            method=field.method,
            metrics_before=_floats(field.metrics.get("before", {})),
            metrics_after=_floats(field.metrics.get("after", {})),
            threshold=field.threshold,
            guarantee=_guarantee(field.guarantee),
        ) for name, field in calibration.fields.items()},
        simultaneous_statement=str(guarantee.get("simultaneous", "")),
    )


def _guarantee(guarantee: Mapping[str, Any]) -> pb.Guarantee:
    return pb.Guarantee(
        target_risk=float(guarantee.get("target_risk", 0.0)),
        delta=float(guarantee.get("delta", 0.0)),
        expected_coverage=float(guarantee.get("expected_coverage", 0.0)),
        samples=int(guarantee.get("samples", 0)),
        procedure=str(guarantee.get("procedure", "")),
        statement=str(guarantee.get("statement", "")),
    )


def _floats(values: dict) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items() if isinstance(v, int | float)}


def _jsonable(value: object) -> object:
    """Struct holds JSON values only: numbers become floats, other scalars strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)
