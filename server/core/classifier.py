"""A classifier's head: run the model, calibrate its output row, build the Prediction.

Temperature scaling works on logits; a model that outputs probabilities gets log-probabilities
as its logits, which leaves the uncalibrated distribution unchanged (softmax(log p) = p).
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
        self._output_type = output_type
        self._calibration = calibration
        self._top_k = min(top_k, len(self._labels))

    def predict(self, feeds: Mapping[str, np.ndarray]) -> HeadResult:
        """The calibrated prediction, its calibrated confidence and the model's raw confidence."""
        row = np.asarray(self._onnx.run(feeds), dtype=np.float64).reshape(1, -1)
        if self._output_type == "probabilities":
            raw = row
            logits = logits_from_probabilities(row)
        else:
            logits = row
            raw = softmax(row)
        calibrated = raw if self._calibration is None else self._calibration.calibrator.probabilities(logits)
        probabilities, raw_probabilities = calibrated[0], raw[0]
        order = np.argsort(-probabilities, kind="stable")[: self._top_k]
        best = int(order[0])
        top_k = tuple(LabelScore(self._labels[i], float(probabilities[i])) for i in order)
        prediction = Prediction(
            kind=ModelKind.CLASSIFIER,
            label=self._labels[best],
            probability=float(probabilities[best]),
            top_k=top_k,
        )
        return HeadResult(prediction, float(probabilities[best]), float(raw_probabilities[best]))
