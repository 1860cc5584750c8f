"""The ``guard`` tier: a remote smallguard server (a bigger model on a machine with a GPU, say), over gRPC.

The request goes as it came (tensors or text, and the context), under the same request id, with
what is left of the caller's deadline as the call's deadline (gRPC carries it to the remote, which
stops working on a call whose caller gave up). The remote's decision, reasons and calibration stand
as its own judgement; the cascade adds the escalating bundle's verifiers. The trace context goes
along, so the remote's spans join the caller's trace.

UNAVAILABLE (down, draining, refusing connections) and RESOURCE_EXHAUSTED (shedding load) are
retried within the deadline when the tier allows retries; every other status is the tier's error.
"""

from __future__ import annotations

import time

import grpc
from opentelemetry import propagate

from smallguard.server.core.tiers import TierAnswer, TierError, with_retries
from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.predictions import Decision, PredictCall, ReasonCode
from smallguard.server.domain.tier_spec import GuardTarget, TierSpec
from smallguard.server.transport import converters
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc

_RETRY_SAFE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
_MAX_MESSAGE = 64 * 1024 * 1024


class GuardTier:
    def __init__(self, spec: TierSpec, bundle: BundleSpec) -> None:
        assert isinstance(spec.target, GuardTarget)
        self.spec = spec
        self._target = spec.target
        self._bundle = bundle
        # Connects lazily, reconnects by itself; one channel for every request thread.
        self._channel = grpc.insecure_channel(spec.target.address, options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.enable_retries", 0)])
        self._predict = guard_pb2_grpc.GuardStub(self._channel).Predict

    def ask(self, call: PredictCall, request_id: str, timeout_s: float) -> TierAnswer:
        request = converters.predict_request(call, self._target.model, self._target.version, request_id)
        metadata: dict[str, str] = {}
        propagate.inject(metadata)
        deadline = time.monotonic() + timeout_s
        response, calls = with_retries(lambda left: self._call(request, left, tuple(metadata.items())),
                                       self.spec.retries, deadline)
        return self._answer(response, calls)

    def _call(self, request: pb.PredictRequest, timeout_s: float,
              metadata: tuple[tuple[str, str], ...]) -> pb.PredictResponse:
        try:
            return self._predict(request, timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            details = (error.details() or "")[:300]  # type: ignore[attr-defined]
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TierError(f"timed out after {timeout_s * 1000:.0f} ms") from None
            raise TierError(f"{self._target.address} answered {code.name}: {details}",
                            retry_after=0.0 if code in _RETRY_SAFE else None) from None

    def _answer(self, response: pb.PredictResponse, calls: int) -> TierAnswer:
        try:
            prediction = converters.prediction_of(response, self._bundle)
        except ValueError as error:
            raise TierError(f"{self._target.address} answered a prediction this bundle cannot use: {error}",
                            calls=calls) from None
        reasons = tuple(converters.reason_of(reason, self.spec.name) for reason in response.reasons)
        calibrated = not any(reason.code is ReasonCode.UNCALIBRATED for reason in reasons)
        decision = Decision(response.decision) if response.decision in (1, 2, 3) else Decision.ESCALATE
        return TierAnswer(prediction=prediction, calibrated=calibrated, confidence=response.confidence,
                          raw_confidence=response.raw_confidence, threshold=response.threshold, decision=decision,
                          reasons=reasons, calls=calls)

    def close(self) -> None:
        self._channel.close()
