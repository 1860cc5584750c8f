"""A request whose caller's deadline passed while it waited for a thread is not served: the work would be
thrown away, and under overload it is what keeps the queue from growing."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from smallguard.server.assembly import build_guard
from smallguard.server.domain.errors import DeadlineExpiredError
from smallguard.server.domain.predictions import PredictCall, TensorInput
from smallguard.server.settings import Settings
from smallguard.server.transport.converters import status_of
from tests.conftest import DIGITS, digits_rows


def _call(deadline: float | None) -> PredictCall:
    pixels = np.asarray(digits_rows()[0]["pixels"], dtype=np.float32)
    return PredictCall(model="digits", tensors=(TensorInput("pixels", "float32", (64,), pixels),), deadline=deadline)


def test_an_expired_deadline_is_not_served_and_maps_to_deadline_exceeded() -> None:
    guard = build_guard(Settings(), bundles=[DIGITS], keep_feedback=False)
    try:
        assert guard.predict(_call(time.monotonic() + 10)).decision  # still in time: served
        assert guard.predict(_call(None)).decision  # no deadline: served
        with pytest.raises(DeadlineExpiredError) as caught:
            guard.predict(_call(time.monotonic() - 0.001))
        assert status_of(caught.value) is grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(DeadlineExpiredError):
            guard.predict_batch("digits", "", [_call(time.monotonic() - 0.001)])
    finally:
        guard.close()
