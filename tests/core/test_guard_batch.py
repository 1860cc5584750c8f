"""Guard.predict_batch in process: one item that breaks the model run costs that item only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from smallguard.server.assembly import build_guard
from smallguard.server.core.guard import Guard, ItemFailedError
from smallguard.server.core.models import ModelRepository
from smallguard.server.core.pauses import GcPauses
from smallguard.server.core.verifier_runner import VerifierRunner
from smallguard.server.domain.predictions import HeadResult, PredictCall, PredictOutcome, TensorInput
from smallguard.server.observability.instruments import GuardMetrics
from smallguard.server.settings import Settings
from tests.conftest import digits_rows

POISON = 13.0  # a first pixel the flaky head refuses


class FlakyHead:
    """The real head, except that any run including a poisoned row raises, as a broken model or adapter would."""

    def __init__(self, head: object) -> None:
        self.head = head

    def predict(self, feeds: Mapping[str, np.ndarray]) -> HeadResult:
        self._check(feeds)
        return self.head.predict(feeds)  # type: ignore[attr-defined]

    def predict_batch(self, feeds: Mapping[str, np.ndarray]) -> list[HeadResult]:
        self._check(feeds)
        return self.head.predict_batch(feeds)  # type: ignore[attr-defined]

    @staticmethod
    def _check(feeds: Mapping[str, np.ndarray]) -> None:
        if (feeds["pixels"][:, 0] == POISON).any():
            raise RuntimeError("the model cannot run this row")


def call(pixels: list[float], request_id: str) -> PredictCall:
    values = np.asarray(pixels, dtype=np.float32)
    return PredictCall(model="", request_id=request_id, tensors=(TensorInput("pixels", "float32", (64,), values),),
                       context={"allowed_labels": "0,1,2,3,4,5,6,7,8,9"})


def test_an_item_the_model_cannot_run_fails_alone_and_the_others_match_single_predictions() -> None:
    shipped = build_guard(Settings(), keep_feedback=False)
    digits = shipped.report("digits").model
    pauses = GcPauses()
    guard = Guard(ModelRepository({"digits": replace(digits, head=FlakyHead(digits.head))}),  # type: ignore[arg-type]
                  VerifierRunner(1, pauses), GuardMetrics(), None)
    try:
        rows = [row["pixels"] for row in digits_rows()[:4]]
        rows[2] = [POISON, *rows[2][1:]]
        results = guard.predict_batch("digits", "", [call(pixels, f"r{i}") for i, pixels in enumerate(rows)])
        assert isinstance(results[2], ItemFailedError)
        assert str(results[2]) == "internal error while running the model on this item; the server log has the details"
        for i in (0, 1, 3):
            single = shipped.predict(replace(call(rows[i], f"r{i}"), model="digits"))
            served = results[i]
            assert isinstance(served, PredictOutcome)
            assert (served.decision, served.prediction, served.confidence, served.reasons) == (
                single.decision, single.prediction, single.confidence, single.reasons)
    finally:
        guard.close()
        shipped.close()
