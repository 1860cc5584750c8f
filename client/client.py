"""A Python client for smallguard: typed calls and results, deadlines, and safe retries.

    from smallguard.client import Client

    with Client("localhost:50051") as guard:
        result = guard.predict("invoice-extractor", text=invoice_text)
        if result.answered:
            total = result.value("total")

Every call has a deadline (``timeout``, 10 s unless given). Retries are gRPC's own, through the
channel's service config: only for UNAVAILABLE (the server never started the call: down,
restarting, or draining on SIGTERM), at most ``retries`` more attempts with backoff, and within
the deadline. Every RPC is safe to send again then: Predict did not run, and Feedback counts a
repeated truth once. A call that fails raises ``CallError`` with the status code's name and the
server's message, which names the field and what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from smallguard.client.columns import BatchArrays, arrays_of, results_of
from smallguard.client.results import FeedbackResult, ItemError, ModelSummary, Result, Review
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc

SERVICE = "smallguard.v1.Guard"
_DTYPES = {np.dtype("float32"): pb.FLOAT32, np.dtype("float64"): pb.FLOAT64, np.dtype("int32"): pb.INT32,
           np.dtype("int64"): pb.INT64, np.dtype("bool"): pb.BOOL}


class CallError(Exception):
    """A call the server refused or could not finish: ``code`` (e.g. INVALID_ARGUMENT, NOT_FOUND,
    DEADLINE_EXCEEDED, UNAVAILABLE) and the server's ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Client:
    def __init__(self, address: str, *, timeout: float = 10.0, retries: int = 2, wait_for_ready: bool = False,
                 credentials: grpc.ChannelCredentials | None = None, token: str | None = None) -> None:
        """``address``: host:port. ``wait_for_ready``: a call made while the server cannot be reached waits for it
        (within the deadline) instead of failing at once. ``credentials``: TLS
        (``grpc.ssl_channel_credentials(...)``) for a server that has it. ``token``: sent as
        ``authorization: Bearer ...`` on every call."""
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        options = [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(_service_config(retries)))]
        self._channel = (grpc.secure_channel(address, credentials, options=options) if credentials is not None
                         else grpc.insecure_channel(address, options=options))
        self._stub = guard_pb2_grpc.GuardStub(self._channel)
        self._timeout = timeout
        self._wait_for_ready = wait_for_ready
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def predict(self, model: str, *, text: str | None = None, pixels: Sequence[float] | np.ndarray | None = None,
                inputs: Mapping[str, Any] | None = None, context: Mapping[str, str] | None = None, version: str = "",
                request_id: str = "", max_tier: int | None = None, max_cost: float | None = None,
                timeout: float | None = None) -> Result:
        """One prediction and its decision. Give the input as ``text`` (a text model), ``pixels`` (a float32
        tensor named "pixels", as the shipped digits model takes) or ``inputs`` (name -> array-like; the
        dtype and shape are the array's). ``max_tier`` / ``max_cost`` cap the escalation cascade."""
        request = predict_request(model, text=text, pixels=pixels, inputs=inputs, context=context, version=version,
                                  request_id=request_id, max_tier=max_tier, max_cost=max_cost)
        return Result.of(self._call(self._stub.Predict, request, timeout))

    def send(self, request: pb.PredictRequest, timeout: float | None = None) -> Result:
        """A PredictRequest as it is (built by hand, or parsed from JSON by ``smallguard predict --request``)."""
        return Result.of(self._call(self._stub.Predict, request, timeout))

    def predict_batch(self, model: str, items: Sequence[Mapping[str, Any]] = (), *,
                      pixels: Sequence[Sequence[float]] | np.ndarray | None = None,
                      inputs: Mapping[str, Any] | None = None, version: str = "", columns: bool = False,
                      timeout: float | None = None) -> list[Result | ItemError]:
        """Many predictions in one call, one onnxruntime run: each item takes ``predict``'s keyword arguments
        (text, pixels, inputs, context, request_id, max_tier, max_cost). Or, for a tensor model, the items'
        tensors stacked: ``pixels`` (an [items, 64] float32 array for digits) or ``inputs`` (name -> array whose
        first dimension is the number of items), sent as one array each; ``items`` then holds each row's other
        arguments (context, request_id, max_tier, max_cost), or nothing. One result per item, in order; an item
        the server could not serve is an ItemError, and the others are still answered. ``columns`` (a
        classifier's batch) has the server answer in columns, which costs it less, and gives the same results
        (``columns.arrays_of`` reads such an answer as arrays, for a caller of ``batch_request`` and the stub)."""
        request = batch_request(model, items, pixels=pixels, inputs=inputs, version=version, columns=columns)
        response = self._call(self._stub.PredictBatch, request, timeout)
        # a server that does not know the layout answers in results
        results = results_of(response.columns) if response.HasField("columns") else response.results
        return [Result.of(r.response) if r.WhichOneof("result") == "response" else
                ItemError(i, r.error.code, r.error.message) for i, r in enumerate(results)]

    def predict_arrays(self, model: str, items: Sequence[Mapping[str, Any]] = (), *,
                       pixels: Sequence[Sequence[float]] | np.ndarray | None = None,
                       inputs: Mapping[str, Any] | None = None, version: str = "",
                       timeout: float | None = None) -> BatchArrays:
        """``predict_batch`` for a caller that holds its batch as arrays (a classifier's): answered in columns and
        read as numpy arrays, without an object per item (``arrays.answered``: which items may be used)."""
        request = batch_request(model, items, pixels=pixels, inputs=inputs, version=version, columns=True)
        response = self._call(self._stub.PredictBatch, request, timeout)
        if not response.HasField("columns"):
            raise CallError("UNIMPLEMENTED", "the server answered in results: it does not answer in columns")
        return arrays_of(response.columns)

    def feedback(self, request_id: str, *, label: str | None = None, fields: Mapping[str, str] | None = None,
                 model: str = "", timeout: float | None = None) -> FeedbackResult:
        """The truth about a past prediction: a classifier's ``label`` or an extractor's ``fields`` (every field,
        "" for one the document does not have)."""
        request = pb.FeedbackRequest(request_id=request_id, model=model, label=label or "", fields=dict(fields or {}))
        r = self._call(self._stub.Feedback, request, timeout)
        return FeedbackResult(r.request_id, r.model, pb.Decision.Name(r.decision), r.correct, tuple(r.wrong_fields),
                              r.counted, r.duplicate)

    def wait_for_review(self, request_id: str, timeout: float | None = None) -> Review:
        """Wait (at most ``timeout`` seconds) for a person's answer to a request that went to review
        (``Result.review_case``); the case as last seen: RESOLVED or DISMISSED, or still OPEN or CLAIMED when
        the time ran out. CallError NOT_FOUND when the request went to no review."""
        last = None
        try:
            for case in self._stub.WaitForReview(pb.WaitForReviewRequest(request_id=request_id),
                                                 timeout=self._timeout if timeout is None else timeout,
                                                 metadata=self._metadata, wait_for_ready=self._wait_for_ready):
                last = case
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.DEADLINE_EXCEEDED or last is None:  # type: ignore[attr-defined]
                raise CallError(error.code().name, error.details() or "") from None  # type: ignore[attr-defined]
        if last is None:
            raise CallError("NOT_FOUND", f"request_id {request_id!r}: no review case")
        return Review.of(last)

    def models(self, timeout: float | None = None) -> list[ModelSummary]:
        response = self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [ModelSummary.of(info) for info in response.models]

    def model(self, name: str, timeout: float | None = None) -> ModelSummary:
        return ModelSummary.of(self._call(self._stub.GetModel, pb.GetModelRequest(name=name), timeout))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(request, timeout=self._timeout if timeout is None else timeout, metadata=self._metadata,
                          wait_for_ready=self._wait_for_ready)
        except grpc.RpcError as error:
            raise CallError(error.code().name, error.details() or "") from None  # type: ignore[attr-defined]


def predict_request(model: str, *, text: str | None = None, pixels: Sequence[float] | np.ndarray | None = None,
                    inputs: Mapping[str, Any] | None = None, context: Mapping[str, str] | None = None,
                    version: str = "", request_id: str = "", max_tier: int | None = None,
                    max_cost: float | None = None) -> pb.PredictRequest:
    """The PredictRequest for these arguments (tensors travel as little-endian raw bytes)."""
    given = [name for name, value in (("text", text), ("pixels", pixels), ("inputs", inputs)) if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of text, pixels or inputs; got {given or 'none'}")
    request = pb.PredictRequest(model=model, version=version, request_id=request_id, text=text or "",
                                context=dict(context or {}))
    _add_tensors(request.inputs, {"pixels": np.asarray(pixels, dtype=np.float32).ravel()} if pixels is not None
                 else (inputs or {}))
    if max_tier is not None:
        request.max_tier = max_tier
    if max_cost is not None:
        request.max_cost = max_cost
    return request


def batch_request(model: str, items: Sequence[Mapping[str, Any]] = (), *,
                  pixels: Sequence[Sequence[float]] | np.ndarray | None = None, inputs: Mapping[str, Any] | None = None,
                  version: str = "", columns: bool = False) -> pb.PredictBatchRequest:
    """The PredictBatchRequest for these arguments (see ``Client.predict_batch``)."""
    request = pb.PredictBatchRequest(model=model, version=version,
                                     layout=pb.BATCH_LAYOUT_COLUMNS if columns else pb.BATCH_LAYOUT_RESULTS)
    if pixels is None and inputs is None:
        if not items:
            raise ValueError("give the items, or their tensors stacked as pixels or inputs")
        request.items.extend(predict_request("", **item) for item in items)
        return request
    if pixels is not None and inputs is not None:
        raise ValueError("give the stacked tensors as pixels or as inputs, not both")
    if pixels is not None:  # one row of pixels per item, whatever shape each row has ([items, 64], [items, 8, 8])
        rows = np.asarray(pixels, dtype=np.float32)
        stacked = {"pixels": rows.reshape(len(rows), -1) if rows.ndim > 1 else rows.reshape(1, -1)}
    else:
        stacked = dict(inputs or {})
        if not stacked:
            raise ValueError("inputs: give at least one stacked input (name -> array of one row per item)")
    _add_tensors(request.inputs, stacked)
    for item in items:
        given = sorted(set(item) & {"text", "pixels", "inputs"})
        if given:
            raise ValueError(f"an item of a stacked batch carries no input of its own; got {given}")
        request.items.append(_rest_of_item(**item))
    return request


def _rest_of_item(*, context: Mapping[str, str] | None = None, request_id: str = "", max_tier: int | None = None,
                  max_cost: float | None = None, model: str = "", version: str = "") -> pb.PredictRequest:
    """An item of a stacked batch: everything but its tensors."""
    item = pb.PredictRequest(model=model, version=version, request_id=request_id, context=dict(context or {}))
    if max_tier is not None:
        item.max_tier = max_tier
    if max_cost is not None:
        item.max_cost = max_cost
    return item


def _add_tensors(into: Any, tensors: Mapping[str, Any]) -> None:
    """Each array as a Tensor of its own dtype and shape, its values as little-endian raw bytes."""
    for name, value in tensors.items():
        array = np.asarray(value)
        if array.dtype not in _DTYPES:
            raise ValueError(f"input {name!r}: dtype {array.dtype} is not one of "
                             f"{', '.join(str(d) for d in _DTYPES)}")
        into.add(name=name, dtype=_DTYPES[array.dtype], shape=list(array.shape),
                 raw_contents=np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())


def _service_config(retries: int) -> dict[str, Any]:
    """gRPC retries for UNAVAILABLE only (the call never started), with backoff, within each call's deadline."""
    if retries == 0:
        return {"methodConfig": [{"name": [{"service": SERVICE}]}]}
    return {"methodConfig": [{
        "name": [{"service": SERVICE}],
        "retryPolicy": {"maxAttempts": retries + 1, "initialBackoff": "0.05s", "maxBackoff": "1s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
    }]}
