"""A classifier's head: run the model, calibrate each output row, build the Prediction.

Temperature scaling works on logits; a model that outputs probabilities gets log-probabilities
as its logits, which leaves the uncalibrated distribution unchanged (softmax(log p) = p).

A batch runs the model once and then takes each row through the same numpy operations, on the
same [1, classes] shape, as a single request, and the calibration command as well: a threshold is
one of the calibration data's confidences, so a case at the threshold must get the very same float
on every path (numpy's vectorised exp and log may round the last bit differently by array length).
Everything after the calibrated row (top-k, the Prediction) is plain Python on a short list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from smallguard.server.bundle.onnx_session import OnnxModel
from smallguard.server.calibration import Calibration, logits_from_probabilities, softmax
from smallguard.server.domain.predictions import HeadResult
from smallguard.verifiers import LabelScore, ModelKind, Prediction


class ClassifierHead:
    def __init__(self, onnx: OnnxModel, labels: Sequence[str], output_type: str, calibration: Calibration | None,
                 top_k: int) -> None:
        self._onnx = onnx
        self._labels = tuple(labels)
        self._probabilities = output_type == "probabilities"
        self._calibrator = None if calibration is None else calibration.calibrator
        self._top_k = min(top_k, len(self._labels))

    def predict(self, feeds: Mapping[str, np.ndarray]) -> HeadResult:
        """The calibrated prediction, its calibrated confidence and the model's raw confidence."""
        return self._row(np.asarray(self._onnx.run(feeds), dtype=np.float64))

    def predict_batch(self, feeds: Mapping[str, np.ndarray]) -> list[HeadResult]:
        """``predict`` for every row of a batch, with one model run."""
        scores = np.asarray(self._onnx.run(feeds), dtype=np.float64)
        return [self._row(scores[i:i + 1]) for i in range(len(scores))]

    def _row(self, scores: np.ndarray) -> HeadResult:
        """One example's [1, classes] scores -> its prediction."""
        if self._probabilities:
            raw, logits = scores, logits_from_probabilities(scores)
        else:
            raw, logits = softmax(scores), scores
        calibrated = (raw if self._calibrator is None else self._calibrator.probabilities(logits))[0].tolist()
        order = sorted(range(len(calibrated)), key=calibrated.__getitem__, reverse=True)[: self._top_k]
        best = order[0]
        labels = self._labels
        prediction = Prediction(
            kind=ModelKind.CLASSIFIER,
            label=labels[best],
            probability=calibrated[best],
            top_k=tuple(LabelScore(labels[i], calibrated[i]) for i in order),
        )
        return HeadResult(prediction, calibrated[best], float(raw[0, best]))
