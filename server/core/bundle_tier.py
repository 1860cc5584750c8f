"""The ``bundle`` tier: another bundle of the same model repository, run in process.

Its head (model run and calibration) and its threshold judge its own prediction; the cascade then
runs the escalating bundle's verifiers on it. An extractor tier may read more fields than the
escalating bundle: only the bundle's own fields are kept. It runs on the request's own thread and
an onnxruntime run cannot be interrupted, so the time budget is checked before the run (by the
cascade), not during it.
"""

from __future__ import annotations

from dataclasses import replace

from smallguard.server.core.inputs import feeds_for
from smallguard.server.core.models import LoadedModel
from smallguard.server.core.policy import decide
from smallguard.server.core.tiers import TierAnswer, TierError
from smallguard.server.domain.errors import InvalidInputError
from smallguard.server.domain.predictions import Decision, PredictCall, Reason
from smallguard.server.domain.tier_spec import TierSpec


class BundleTier:
    def __init__(self, spec: TierSpec, model: LoadedModel, fields: tuple[str, ...]) -> None:
        self.spec = spec
        self.model = model
        self._fields = fields  # the escalating bundle's fields (an extractor), in its order

    def ask(self, call: PredictCall, request_id: str, timeout_s: float) -> TierAnswer:
        model = self.model
        try:
            feeds = feeds_for(model.spec.inputs, call)
        except InvalidInputError as error:  # same inputs, checked at start-up; a declared range may still differ
            raise TierError(f"bundle {model.spec.name} cannot take this input: {error}") from None
        head = model.head.predict(feeds)
        prediction = head.prediction
        if self._fields:
            prediction = replace(prediction, fields={name: prediction.fields[name] for name in self._fields})
        calibrated = model.calibration is not None
        low_fields = tuple(low for low in head.low_fields if not self._fields or low.name in self._fields)
        decision, reasons = decide(head.confidence, model.threshold, Decision.ESCALATE, (), calibrated=calibrated,
                                   low_fields=low_fields)
        return TierAnswer(prediction=prediction, calibrated=calibrated, confidence=head.confidence,
                          raw_confidence=head.raw_confidence, threshold=model.threshold, decision=decision,
                          reasons=tuple(Reason(r.code, f"tier {self.spec.name}: {r.message}", self.spec.name)
                                        for r in reasons),
                          low_fields=low_fields)

    def close(self) -> None:
        """Nothing to release: the model belongs to the repository."""
