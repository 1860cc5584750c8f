"""An extractor's head: text to fields through the bundle's adapter, each field calibrated.

Each field's confidence is the calibrated probability that its value is exactly right (a
missing field that is truly absent counts as right). The document's confidence is the
calibrated probability that every field is right, calibrated from the product of the field
confidences (which would be that probability if fields erred independently; they do not,
which is why it is calibrated again). A field below its own threshold is reported by name.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from smallguard.server.bundle.adapter import Adapter
from smallguard.server.bundle.onnx_session import OnnxModel
from smallguard.server.calibration import Calibration
from smallguard.server.domain.predictions import FieldBelowThreshold, HeadResult
from smallguard.verifiers import ExtractedField, ModelKind, Prediction


class ExtractorHead:
    def __init__(self, onnx: OnnxModel, adapter: Adapter, calibration: Calibration | None) -> None:
        self._onnx = onnx
        self._adapter = adapter
        self._calibration = calibration

    def predict_batch(self, feeds: Mapping[str, np.ndarray]) -> list[HeadResult]:
        """``predict`` for each text of a batch. Each text has its own candidates, so the model runs once
        per text: an adapter's outputs need not line up row by row with its inputs."""
        ((name, texts),) = feeds.items()
        return [self.predict({name: texts[i:i + 1]}) for i in range(len(texts))]

    def predict(self, feeds: Mapping[str, np.ndarray]) -> HeadResult:
        (texts,) = feeds.values()
        text = str(texts[0])
        decoded = self._adapter.decode(text, self._onnx.run_all(self._adapter.encode(text)))
        fields, low = {}, []
        for name, (value, raw) in decoded.items():
            confidence, threshold = raw, 0.0
            if self._calibration is not None:
                field_calibration = self._calibration.fields[name]
                confidence = float(field_calibration.calibrator.confidence(np.array([raw]))[0])
                threshold = field_calibration.threshold
            fields[name] = ExtractedField(name, value, confidence, raw)
            if confidence < threshold:
                low.append(FieldBelowThreshold(name, confidence, threshold))
        raw_document = float(np.prod([f.raw_confidence for f in fields.values()]))
        document = float(np.prod([f.confidence for f in fields.values()]))
        if self._calibration is not None:
            document = float(self._calibration.calibrator.confidence(np.array([document]))[0])
        prediction = Prediction(kind=ModelKind.EXTRACTOR, probability=document, fields=fields)
        return HeadResult(prediction, document, raw_document, tuple(low))
