"""Guard.predict_batch in process: one item that breaks the model run costs that item only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from smallguard.server.assembly import build_guard
from smallguard.server.core.guard import Guard, ItemFailedError
from smallguard.server.core.models import ModelRepository
from smallguard.server.core.pauses import GcPauses
from smallguard.server.core.verifier_runner import VerifierRunner
from smallguard.server.domain.predictions import HeadResult, PredictCall, PredictOutcome, ReasonCode, TensorInput
from smallguard.server.observability.instruments import GuardMetrics
from smallguard.server.settings import Settings
from tests.conftest import DIGITS, copy_bundle, digits_rows

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


def drift_guard(tmp_path: Path, on_drift: str = "none") -> Guard:
    """The shipped digits bundle with its drift reference, ``on_drift`` as given."""
    bundle_yaml = (DIGITS / "bundle.yaml").read_text().replace("on_drift: none", f"on_drift: {on_drift}")
    copy_bundle(DIGITS, tmp_path, "digits", bundle_yaml, extra=("reference.json",))
    return build_guard(Settings(model_repository=tmp_path), keep_feedback=False)


def inverted(rows: list[list[float]]) -> list[list[float]]:
    return [[16.0 - value for value in pixels] for pixels in rows]


def comparable(outcome: object) -> tuple:
    assert isinstance(outcome, PredictOutcome), outcome
    return (outcome.decision, outcome.prediction, outcome.confidence, outcome.reasons,
            [(v.name, v.status, v.message) for v in outcome.verifiers])


def test_a_batch_judged_again_item_by_item_counts_each_item_once_in_the_drift_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guard, alone = drift_guard(tmp_path / "a"), drift_guard(tmp_path / "b")
    try:
        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("the batch step failed")

        monkeypatch.setattr(guard._runner, "run_many", broken)  # fault injection: the vectorised verifier step
        rows = [row["pixels"] for row in digits_rows()[:40]]
        results = guard.predict_batch("digits", "", [call(pixels, f"r{i}") for i, pixels in enumerate(rows)])
        singles = [alone.predict(replace(call(pixels, f"r{i}"), model="digits")) for i, pixels in enumerate(rows)]
        assert [comparable(r) for r in results] == [comparable(s) for s in singles]
        assert guard.report("digits").drift.samples == 40 == alone.report("digits").drift.samples
    finally:
        guard.close()
        alone.close()


def test_a_drift_listener_that_fails_does_not_fail_the_predictions(tmp_path: Path) -> None:
    guard = drift_guard(tmp_path)
    heard: list[bool] = []
    guard.on_drift_change(lambda name, drifted: 1 / 0)  # type: ignore[func-returns-value]
    guard.on_drift_change(lambda name, drifted: heard.append(drifted))
    try:
        rows = inverted([row["pixels"] for row in digits_rows()[:192]])
        for start in range(0, 192, 64):
            results = guard.predict_batch("digits", "", [call(pixels, f"r{start + i}")
                                                         for i, pixels in enumerate(rows[start:start + 64])])
            assert all(isinstance(r, PredictOutcome) for r in results)
        assert heard == [True]  # the listener after the failing one still heard the change
        snapshot = guard.report("digits").drift
        assert snapshot.drifted and snapshot.samples == 192
        assert isinstance(guard.predict(replace(call(rows[0], "single"), model="digits")), PredictOutcome)
    finally:
        guard.close()


def test_while_drifted_with_on_drift_escalate_a_batch_item_gets_the_drift_rule_of_a_single_predict(
        tmp_path: Path) -> None:
    guard = drift_guard(tmp_path, on_drift="escalate")
    try:
        shifted = inverted([row["pixels"] for row in digits_rows()[:192]])
        guard.predict_batch("digits", "", [call(pixels, f"s{i}") for i, pixels in enumerate(shifted)])
        assert guard.report("digits").drift.drifted
        normal = [row["pixels"] for row in digits_rows()[:8]]
        batch = guard.predict_batch("digits", "", [call(pixels, f"n{i}") for i, pixels in enumerate(normal)])
        singles = [guard.predict(replace(call(pixels, f"n{i}"), model="digits")) for i, pixels in enumerate(normal)]
        assert [comparable(r) for r in batch] == [comparable(s) for s in singles]
        assert all(isinstance(r, PredictOutcome) and r.reasons[0].code is ReasonCode.DRIFT for r in batch
                   if r.prediction.probability >= r.threshold)  # type: ignore[union-attr]
        assert any(isinstance(r, PredictOutcome) and r.reasons[0].code is ReasonCode.DRIFT for r in batch)
    finally:
        guard.close()


ALLOWED = ["0,1,2,3,4,5,6,7,8,9", "1,2", "", "7", " 3 , 8 "]  # each item's own allowed labels, or none


def test_a_batch_whose_items_allow_different_labels_judges_each_as_its_own_predict() -> None:
    guard, alone = build_guard(Settings(), keep_feedback=False), build_guard(Settings(), keep_feedback=False)
    try:
        rows = [row["pixels"] for row in digits_rows()[:40]]
        calls = [replace(call(pixels, f"r{i}"), context={} if i % 6 == 5 else {"allowed_labels": ALLOWED[i % 5]})
                 for i, pixels in enumerate(rows)]
        results = guard.predict_batch("digits", "", calls)
        singles = [alone.predict(replace(c, model="digits")) for c in calls]
        assert [comparable(r) for r in results] == [comparable(s) for s in singles]
        statuses = {v.status.value for r in results for v in r.verifiers}
        assert statuses == {"passed", "failed", "skipped"}  # every kind of answer, each on its own item
    finally:
        guard.close()
        alone.close()
