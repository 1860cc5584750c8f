"""Was a prediction right? The one answer, used by Feedback, ``evaluate`` and ``calibrate``.

A classifier is right when its label is the true label. An extractor's field is right when its
value equals the true value exactly; ``None`` (or an empty value) is a field the document does not
have, so a missing field is right only when the truth is missing too. The document is right when every
field is. (The Feedback RPC carries an absent field as an empty string; the feedback collector
turns that into ``None`` before it judges.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.verifiers import ModelKind, Prediction

Fields = Mapping[str, str | None]
Answer = str | None | Fields  # a classifier's label, or an extractor's field values


@dataclass(frozen=True, slots=True)
class Judgement:
    correct: bool
    wrong_fields: tuple[str, ...] = ()  # an extractor's fields that were wrong, in the bundle's order


def answer_of(prediction: Prediction) -> Answer:
    """What a prediction claims, in the form ``judge`` compares with the truth."""
    if prediction.kind is ModelKind.EXTRACTOR:
        return {name: field.value for name, field in prediction.fields.items()}
    return prediction.label


def judge(spec: BundleSpec, predicted: Answer, truth: Answer) -> Judgement:
    """``predicted`` against ``truth``, both as ``answer_of`` gives them; the truth must fit the bundle."""
    if not spec.is_extractor:
        return Judgement(predicted == truth)
    assert isinstance(predicted, Mapping) and isinstance(truth, Mapping)
    wrong = tuple(name for name in spec.fields if (predicted.get(name) or None) != (truth[name] or None))
    return Judgement(not wrong, wrong)
