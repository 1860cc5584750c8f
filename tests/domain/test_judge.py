"""The one answer to "was this prediction right?", shared by feedback, evaluate and calibrate."""

from __future__ import annotations

from smallguard.server.bundle.bundle_file import read_bundle
from smallguard.server.domain.judge import Judgement, answer_of, judge
from smallguard.verifiers import ExtractedField, ModelKind, Prediction
from tests.conftest import DIGITS, MODELS

DIGITS_SPEC = read_bundle(DIGITS)
INVOICE_SPEC = read_bundle(MODELS / "invoice-extractor")
TRUTH = {"invoice_number": "INV-7", "date": "2024-03-01", "currency": "EUR", "subtotal": "100.00", "tax": None,
         "total": "100.00"}


def extraction(values: dict[str, str | None]) -> Prediction:
    fields = {name: ExtractedField(name, value, 0.9, 0.8) for name, value in values.items()}
    return Prediction(kind=ModelKind.EXTRACTOR, probability=0.9, fields=fields)


def test_a_classifier_is_right_when_its_label_is_the_truth() -> None:
    prediction = Prediction(kind=ModelKind.CLASSIFIER, label="3", probability=0.9)
    assert answer_of(prediction) == "3"
    assert judge(DIGITS_SPEC, answer_of(prediction), "3") == Judgement(True)
    assert judge(DIGITS_SPEC, answer_of(prediction), "8") == Judgement(False)


def test_an_extraction_is_right_when_every_field_is_and_absent_is_none() -> None:
    assert judge(INVOICE_SPEC, answer_of(extraction(TRUTH)), TRUTH) == Judgement(True)
    # a field the document does not have is right only when the model found nothing for it
    found_tax = extraction({**TRUTH, "tax": "0.00"})
    assert judge(INVOICE_SPEC, answer_of(found_tax), TRUTH) == Judgement(False, ("tax",))
    missed_total = extraction({**TRUTH, "total": None, "currency": "USD"})
    # wrong fields come in the bundle's order, whatever the order of the prediction's fields
    assert judge(INVOICE_SPEC, answer_of(missed_total), TRUTH) == Judgement(False, ("currency", "total"))
