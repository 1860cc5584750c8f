"""A classifier's head: run the model, calibrate each output row, build the Prediction.

Temperature scaling works on logits; a model that outputs probabilities gets log-probabilities
as its logits, which leaves the uncalibrated distribution unchanged (softmax(log p) = p).

A batch runs the model once and calibrates every row at once with numpy. A single request's row is
calibrated in plain Python where that gives numpy's floats bit for bit (calibration.rows: temperature
scaling, or none), and by numpy otherwise. Either way a row gets the same floats alone or in a batch,
as the calibrate command computed them: a threshold is one of those confidences, so a case at the
threshold must get the very same number here. What follows (top-k, the Prediction) is plain Python
on a short list for one row; a batch takes every row's top k from one stable argsort, which ranks
equal scores as sorted() does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from smallguard.server.bundle.onnx_session import OnnxModel
from smallguard.server.calibration import Calibration, logits_from_probabilities, softmax
from smallguard.server.calibration.rows import row_calibration
from smallguard.server.domain.predictions import HeadResult
from smallguard.verifiers import LabelScore, ModelKind, Prediction


class Classified(NamedTuple):
    """A batch's predictions as columns: each row's prediction, calibrated confidence and raw confidence."""

    predictions: list[Prediction]
    confidences: list[float]
    raw_confidences: list[float]


class ClassifierHead:
    def __init__(self, onnx: OnnxModel, labels: Sequence[str], output_type: str, calibration: Calibration | None,
                 top_k: int) -> None:
        self._onnx = onnx
        self._labels = tuple(labels)
        self._probabilities = output_type == "probabilities"
        self._calibrator = None if calibration is None else calibration.calibrator
        self._top_k = min(top_k, len(self._labels))
        self._row = row_calibration(self._probabilities, self._calibrator)  # None: numpy for one row too

    def predict(self, feeds: Mapping[str, np.ndarray]) -> HeadResult:
        """The calibrated prediction, its calibrated confidence and the model's raw confidence."""
        if self._row is None:
            (result,) = self.predict_batch(feeds)
            return result
        calibrated, raw = self._row(self._onnx.run(feeds).reshape(-1).tolist())
        return self._result(calibrated, raw)

    def predict_batch(self, feeds: Mapping[str, np.ndarray]) -> list[HeadResult]:
        """The prediction for every row of the feeds, with one model run."""
        calibrated, raw = self._scores(feeds)
        if np.isnan(calibrated).any():  # sorted() and argsort place a NaN differently: keep the one-row order
            return [self._result(row, raw_row) for row, raw_row in zip(calibrated.tolist(), raw.tolist(), strict=True)]
        columns = self._columns(calibrated, raw)
        return [HeadResult(prediction, confidence, raw_confidence) for prediction, confidence, raw_confidence
                in zip(columns.predictions, columns.confidences, columns.raw_confidences, strict=True)]

    def predict_columns(self, feeds: Mapping[str, np.ndarray]) -> Classified | None:
        """``predict_batch`` as columns, without a HeadResult per row; None when a row's scores hold a NaN (which
        ``predict_batch`` ranks row by row)."""
        calibrated, raw = self._scores(feeds)
        return None if np.isnan(calibrated).any() else self._columns(calibrated, raw)

    def _scores(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Every row's calibrated and raw probabilities, with one model run."""
        rows = len(next(iter(feeds.values())))
        scores = np.asarray(self._onnx.run(feeds), dtype=np.float64).reshape(rows, -1)
        if self._probabilities:
            raw, logits = scores, logits_from_probabilities(scores)
        else:
            raw, logits = softmax(scores), scores
        return (raw if self._calibrator is None else self._calibrator.probabilities(logits)), raw

    def _columns(self, calibrated: np.ndarray, raw: np.ndarray) -> Classified:
        # every row's top k at once: a stable sort of the negated scores keeps equal scores in label order, as
        # sorted(reverse=True) does for one row
        tops = np.argsort(-calibrated, axis=1, kind="stable")[:, :self._top_k]
        rows = np.arange(len(calibrated))
        best = tops[:, 0]
        labels = self._labels
        confidences = calibrated[rows, best].tolist()
        predictions = [classification(labels[top[0]], confidence, tuple([label_score(labels[i], row[i]) for i in top]))
                       for row, top, confidence in zip(calibrated.tolist(), tops.tolist(), confidences, strict=True)]
        return Classified(predictions, confidences, raw[rows, best].tolist())

    def _result(self, calibrated: list[float], raw: list[float]) -> HeadResult:
        order = sorted(range(len(calibrated)), key=calibrated.__getitem__, reverse=True)[: self._top_k]
        best = order[0]
        labels = self._labels
        prediction = Prediction(
            kind=ModelKind.CLASSIFIER,
            label=labels[best],
            probability=calibrated[best],
            top_k=tuple(LabelScore(labels[i], calibrated[i]) for i in order),
        )
        return HeadResult(prediction, calibrated[best], raw[best])


# A batch builds a Prediction and its top k LabelScores per row. They are the SDK's frozen dataclasses, whose
# __init__ sets each field through object.__setattr__: setting the slots directly builds the same objects in
# 1.2 against 1.85 us for a top 3 (2026-12-04). tests/core/test_classifier_head.py checks that these set every field
# the classes declare, and that what they build equals what the constructors build.
_new = object.__new__
_score_label, _score_probability = LabelScore.label.__set__, LabelScore.probability.__set__  # type: ignore[attr-defined]
_kind, _label, _probability, _top_k, _fields = (getattr(Prediction, name).__set__
                                                for name in ("kind", "label", "probability", "top_k", "fields"))


def label_score(label: str, probability: float) -> LabelScore:
    """``LabelScore(label, probability)``."""
    score = _new(LabelScore)
    _score_label(score, label)
    _score_probability(score, probability)
    return score


def classification(label: str, probability: float, top_k: tuple[LabelScore, ...]) -> Prediction:
    """``Prediction(ModelKind.CLASSIFIER, label, probability, top_k)``."""
    prediction = _new(Prediction)
    _kind(prediction, ModelKind.CLASSIFIER)
    _label(prediction, label)
    _probability(prediction, probability)
    _top_k(prediction, top_k)
    _fields(prediction, {})
    return prediction
