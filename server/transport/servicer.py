"""The gRPC servicer: a few lines per RPC that convert messages and call the core.

Every RPC receives the raw request bytes and decodes them here: an oversized Predict is answered
with INVALID_ARGUMENT naming the limit, instead of grpc's bare RESOURCE_EXHAUSTED, and bytes that
are no message of the expected type get INVALID_ARGUMENT saying so, instead of grpc's INTERNAL with
a traceback in the log (and the memory grpcio keeps for each such failure).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from smallguard.server.core.guard import Guard, ReloadOffError
from smallguard.server.core.request_ids import checked_request_id
from smallguard.server.domain.errors import GuardError
from smallguard.server.transport import converters
from smallguard.server.transport.auth import caller
from smallguard.server.transport.batch_columns import outcome_columns, stacked_columns
from smallguard.server.transport.feedback_converters import feedback_call, feedback_response
from smallguard.server.transport.review_converters import list_cases_response, review_case
from smallguard.server.transport.wire import batch_results_bytes, predict_response_bytes, stacked_results_bytes
from smallguard.v1 import guard_pb2 as pb

log = logging.getLogger(__name__)
_MAX_MESSAGE = 2000  # characters of a status message
# grpc reports a call without a deadline as one far in the future.
_NO_DEADLINE = 365 * 24 * 3600.0
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Guard"].full_name
T = TypeVar("T")


class GuardService:
    def __init__(self, guard: Guard, max_request_bytes: int, max_batch_items: int,
                 reload: Callable[[], list[str]] | None = None) -> None:
        self._guard = guard
        self._reload = reload
        self._max_request_bytes = max_request_bytes
        self._max_batch_items = max_batch_items
        self.refusing = False  # shutting down: every new call gets UNAVAILABLE at once
        self.last_refused = 0.0  # time.monotonic() of the last call refused so

    def _admit(self, context: grpc.ServicerContext) -> None:
        """Refuse the call with UNAVAILABLE (safe to send again, elsewhere) once the server is shutting down."""
        if self.refusing:
            self.last_refused = time.monotonic()
            _abort(context, grpc.StatusCode.UNAVAILABLE, "this server is shutting down; send the call again (another "
                                                         "replica or worker will take it)")

    def Predict(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        """The PredictResponse, serialized (``wire``)."""
        self._admit(context)
        request = self._decode(raw, pb.PredictRequest, context)
        return _answer(context, lambda: predict_response_bytes(
            self._guard.predict(converters.predict_call(request, _deadline(context)))), self._guard.reject)

    def PredictBatch(self, raw: bytes, context: grpc.ServicerContext) -> pb.PredictBatchResponse | bytes:
        """The PredictBatchResponse: a message in columns, or a result per item serialized (``wire``)."""
        self._admit(context)
        request = self._decode(raw, pb.PredictBatchRequest, context)
        deadline = _deadline(context)

        def work() -> pb.PredictBatchResponse | bytes:
            converters.batch_size(request, self._max_batch_items)  # before any item is decoded
            columns = converters.columns_layout(request, self._guard.kind)
            stacked = converters.stacked_tensors(request) if request.inputs else None
            # served over arrays when the batch is one the array path takes, as sent; else item by item
            if stacked is not None or self._guard.serves_over_arrays(request.model, request.version):
                arrays = converters.array_batch(request, stacked)
                if arrays is not None:
                    outcome = self._guard.predict_stacked(request.model, request.version, arrays.tensors, deadline,
                                                          caller(), arrays.request_ids, arrays.contexts)
                    if outcome is not None:
                        return stacked_columns(outcome) if columns else stacked_results_bytes(outcome)
            results = self._guard.predict_batch(request.model, request.version,
                                                converters.batch_calls(request, stacked, deadline))
            if columns:
                return outcome_columns(results, request.model, request.version, self._guard.reject)
            return batch_results_bytes(results, self._guard.reject)
        return _answer(context, work, self._guard.reject)

    def _decode(self, raw: bytes, message: type[T], context: grpc.ServicerContext, predict: bool = True) -> T:
        """The request, or an INVALID_ARGUMENT that names the size limit or the decoding problem (counted as a
        rejected Predict when ``predict``)."""
        reject = self._guard.reject if predict else _ignore
        if len(raw) > self._max_request_bytes:
            reject(grpc.StatusCode.INVALID_ARGUMENT.name)
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                          f"request: {len(raw)} bytes is over this server's limit of {self._max_request_bytes} "
                          "bytes (--max-request-bytes)")
        try:
            return message.FromString(raw)  # type: ignore[attr-defined]
        except DecodeError as exc:
            reject(grpc.StatusCode.INVALID_ARGUMENT.name)
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                          f"request: not a valid {message.DESCRIPTOR.full_name}: {exc}")  # type: ignore[attr-defined]
        raise AssertionError("unreachable: abort raises")

    def ListModels(self, raw: bytes, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        self._admit(context)
        self._decode(raw, pb.ListModelsRequest, context, predict=False)
        return pb.ListModelsResponse(models=[converters.model_info(report) for report in self._guard.reports()])

    def GetModel(self, raw: bytes, context: grpc.ServicerContext) -> pb.ModelInfo:
        self._admit(context)
        request = self._decode(raw, pb.GetModelRequest, context, predict=False)
        return _answer(context, lambda: converters.model_info(self._guard.report(request.name)))

    def Feedback(self, raw: bytes, context: grpc.ServicerContext) -> pb.FeedbackResponse:
        self._admit(context)
        request = self._decode(raw, pb.FeedbackRequest, context, predict=False)
        return _answer(context, lambda: feedback_response(self._guard.feedback(feedback_call(request))))

    def ReloadModels(self, raw: bytes, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        self._admit(context)
        self._decode(raw, pb.ReloadModelsRequest, context, predict=False)

        def work() -> pb.ListModelsResponse:
            if self._reload is None:
                raise ReloadOffError("this server cannot reload its models")
            self._reload()
            return pb.ListModelsResponse(models=[converters.model_info(report) for report in self._guard.reports()])
        return _answer(context, work)

    # ------------------------------------------------------------------------------ the review queue

    def ListCases(self, raw: bytes, context: grpc.ServicerContext) -> pb.ListCasesResponse:
        self._admit(context)
        request = self._decode(raw, pb.ListCasesRequest, context, predict=False)

        def work() -> pb.ListCasesResponse:
            cases, counts = self._guard.list_cases(request.state, request.model, request.reason, request.limit,
                                                   request.after_id)
            return list_cases_response(cases, counts, time.time())
        return _answer(context, work)

    def GetCase(self, raw: bytes, context: grpc.ServicerContext) -> pb.ReviewCase:
        self._admit(context)
        request = self._decode(raw, pb.GetCaseRequest, context, predict=False)
        return _answer(context, lambda: review_case(self._guard.review.get(request.id)))

    def ClaimCase(self, raw: bytes, context: grpc.ServicerContext) -> pb.ReviewCase:
        self._admit(context)
        request = self._decode(raw, pb.ClaimCaseRequest, context, predict=False)
        return _answer(context, lambda: review_case(self._guard.review.claim(
            request.id, _reviewer(context, request.reviewer))))

    def ResolveCase(self, raw: bytes, context: grpc.ServicerContext) -> pb.ReviewCase:
        self._admit(context)
        request = self._decode(raw, pb.ResolveCaseRequest, context, predict=False)
        return _answer(context, lambda: review_case(self._guard.review.resolve(
            request.id, _reviewer(context, request.reviewer), request.label, dict(request.fields),
            request.note)[0]))

    def DismissCase(self, raw: bytes, context: grpc.ServicerContext) -> pb.ReviewCase:
        self._admit(context)
        request = self._decode(raw, pb.DismissCaseRequest, context, predict=False)
        return _answer(context, lambda: review_case(self._guard.review.dismiss(
            request.id, _reviewer(context, request.reviewer), request.note)))

    def WaitForReview(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[pb.ReviewCase]:
        self._admit(context)
        request = self._decode(raw, pb.WaitForReviewRequest, context, predict=False)
        cases = _answer(context, lambda: self._guard.review.wait(checked_request_id(request.request_id),
                                                                  _deadline(context), context.is_active))
        first = _answer(context, lambda: next(cases))  # NOT_FOUND before the stream starts
        yield review_case(first)
        for case in cases:
            yield review_case(case)

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """A handler for every RPC the proto declares, by method name (a test checks none is missing)."""
        def unary(behavior: Callable, response_type: type) -> grpc.RpcMethodHandler:  # raw bytes in, see above
            return grpc.unary_unary_rpc_method_handler(behavior, response_serializer=response_type.SerializeToString)

        def answers(behavior: Callable) -> grpc.RpcMethodHandler:  # Predict's answers: bytes already, or a message
            return grpc.unary_unary_rpc_method_handler(behavior, response_serializer=_serialized)

        return {
            "Predict": answers(self.Predict),
            "PredictBatch": answers(self.PredictBatch),
            "ListModels": unary(self.ListModels, pb.ListModelsResponse),
            "GetModel": unary(self.GetModel, pb.ModelInfo),
            "Feedback": unary(self.Feedback, pb.FeedbackResponse),
            "ReloadModels": unary(self.ReloadModels, pb.ListModelsResponse),
            "ListCases": unary(self.ListCases, pb.ListCasesResponse),
            "GetCase": unary(self.GetCase, pb.ReviewCase),
            "ClaimCase": unary(self.ClaimCase, pb.ReviewCase),
            "ResolveCase": unary(self.ResolveCase, pb.ReviewCase),
            "DismissCase": unary(self.DismissCase, pb.ReviewCase),
            "WaitForReview": grpc.unary_stream_rpc_method_handler(
                self.WaitForReview, response_serializer=pb.ReviewCase.SerializeToString),
        }


def health_handler(health: Any) -> grpc.GenericRpcHandler:
    """The standard Health service (``health``, grpc_health's servicer), decoding its requests here as every
    other RPC: garbage gets INVALID_ARGUMENT, not INTERNAL."""
    from grpc_health.v1 import health_pb2

    def decoded(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            return health_pb2.HealthCheckRequest.FromString(raw)
        except DecodeError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                   f"request: not a valid grpc.health.v1.HealthCheckRequest: {exc}")
        raise AssertionError("unreachable: abort raises")

    serialize = health_pb2.HealthCheckResponse.SerializeToString
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            lambda raw, context: health.Check(decoded(raw, context), context), response_serializer=serialize),
        "Watch": grpc.unary_stream_rpc_method_handler(
            lambda raw, context: health.Watch(decoded(raw, context), context), response_serializer=serialize),
    })


def _serialized(response: bytes | pb.PredictBatchResponse) -> bytes:
    """What gRPC sends: an answer ``wire`` wrote as it is, a message serialized."""
    return response if type(response) is bytes else response.SerializeToString()


def _reviewer(_context: grpc.ServicerContext, given: str) -> str:
    """Who reviews: the authenticated token's or JWT subject's name when the call carried one (a reviewer
    cannot act under another's name), else the name the request gives."""
    return caller() or given


def _ignore(_status: str) -> None:
    """A rejection that is not a Predict's: not counted in smallguard.predict.errors."""


def _deadline(context: grpc.ServicerContext) -> float | None:
    """When the caller stops waiting, on the time.monotonic() clock; None when it set no deadline."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > _NO_DEADLINE else time.monotonic() + remaining


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    """Abort with ``message`` cut to what a status can carry (about 8 KiB of headers: a longer one would
    reach the caller as RESOURCE_EXHAUSTED instead of its code)."""
    context.abort(code, message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + " [cut]")


def _answer(context: grpc.ServicerContext, work: Callable[[], T],
            on_error: Callable[[str], None] = lambda code_name: None) -> T:
    """Run ``work``, mapping the core's errors to status codes; never let one kill the server.

    ``on_error`` hears the status code's name before the call is aborted with it."""
    try:
        return work()
    except GuardError as exc:
        code = converters.status_of(exc)
        if code is not grpc.StatusCode.INTERNAL:
            on_error(code.name)
            _abort(context, code, str(exc))
        log.exception("unexpected error")
        on_error(code.name)
        _abort(context, code, "internal error while serving the request; the server log has the details")
    except Exception:
        log.exception("unexpected error")
        on_error(grpc.StatusCode.INTERNAL.name)
        _abort(context, grpc.StatusCode.INTERNAL, "internal error while serving the request; the server log has "
                                                "the details")
    raise AssertionError("unreachable: abort raises")
