"""The shipped invoice extractor over gRPC: fields with confidences, verifiers, and mistakes kept from callers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from smallguard.v1 import guard_pb2 as pb
from tests.conftest import MODELS, Running

INVOICES = MODELS / "invoice-extractor"
FIELDS = ("invoice_number", "date", "currency", "subtotal", "tax", "total")
VERIFIERS = ["required", "not-greater", "sum-equals", "date-format", "currency-code"]


def invoices(split: str) -> list[dict]:
    lines = (INVOICES / "data" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def predict(running: Running, text: str) -> pb.PredictResponse:
    """The small model's own decision: max_tier 0 keeps the request from its escalation tier (test_cascade and
    test_invoice_cascade cover the tier)."""
    return running.stub.Predict(pb.PredictRequest(model="invoice-extractor", text=text, max_tier=0))


def fields_of(response: pb.PredictResponse) -> dict[str, pb.ExtractedField]:
    return {field.name: field for field in response.extraction.fields}


def amount(field: pb.ExtractedField) -> Decimal:
    return Decimal(field.value)


def test_an_invoice_gets_every_field_with_its_confidence_a_decision_and_the_verifier_results(
    shipped: Running,
) -> None:
    record = invoices("test")[0]
    response = predict(shipped, record["text"])
    fields = fields_of(response)
    assert list(fields) == list(FIELDS)
    assert {name: field.value for name, field in fields.items()} == record["fields"]
    for field in fields.values():
        assert field.present and 0.0 <= field.confidence <= 1.0 and 0.0 <= field.raw_confidence <= 1.0
    assert [result.name for result in response.verifiers] == VERIFIERS
    assert all(result.status == pb.VerifierResult.PASSED for result in response.verifiers)
    assert 0.0 <= response.confidence <= 1.0
    assert response.model_version == "1.0.0" and response.request_id
    info = shipped.stub.GetModel(pb.GetModelRequest(name="invoice-extractor"))
    threshold = info.calibration.threshold
    assert response.decision == (pb.ANSWER if response.confidence >= threshold and not response.reasons
                                 else pb.ESCALATE)


# Invoices whose printed tax exceeds the printed total: a misprint, or OCR that dropped a digit of
# the total. The model reads what is printed, confidently; only a business rule can object.
TAX_ABOVE_TOTAL = [
    ("Northwind Supplies Ltd\n12 High Street, London EC1A 1BB\n\nINVOICE\n"
     "Invoice No: INV-2024-00417\nDate: 2024-03-05\nCurrency: GBP\n\n"
     "Consulting services    1    100.00    100.00\n\n"
     "Subtotal: 100.00\nVAT (20%): 250.00\nTotal: 120.00\n"),
    ("Acme Trading GmbH\n10115 Berlin\n\nRECHNUNG / INVOICE\n"
     "Invoice number: RE-20931\nInvoice date: 14.06.2023\nCurrency: EUR\n\n"
     "Item                 Qty   Price    Total\nWidget A             10    84,00    840,00\n\n"
     "Subtotal:   840,00 €\nMwSt 19%:   159,60 €\nTotal:      99,60 €\n"),
]


@pytest.mark.parametrize("text", TAX_ABOVE_TOTAL)
def test_an_invoice_whose_tax_exceeds_its_total_is_escalated_by_the_verifiers(shipped: Running, text: str) -> None:
    response = predict(shipped, text)
    fields = fields_of(response)
    assert amount(fields["tax"]) > amount(fields["total"])  # the model read the misprint as printed
    assert response.decision == pb.ESCALATE
    failed = {reason.verifier for reason in response.reasons if reason.code == pb.Reason.VERIFIER_FAILED}
    assert {"not-greater", "sum-equals"} <= failed


def test_no_extraction_with_tax_above_total_is_answered_on_any_shipped_data(shipped: Running) -> None:
    """A property over every shipped text (seen layouts, unseen layouts, and the misprints above)."""
    texts = [r["text"] for split in ("test", "shifted") for r in invoices(split)[:250]] + TAX_ABOVE_TOTAL
    decisions = []
    for text in texts:
        response = predict(shipped, text)
        fields = fields_of(response)
        if fields["tax"].present and fields["total"].present and amount(fields["tax"]) > amount(fields["total"]):
            decisions.append(response.decision)
    assert len(decisions) >= len(TAX_ABOVE_TOTAL) and pb.ANSWER not in decisions


def test_empty_text_is_invalid_and_the_next_invoice_is_served(shipped: Running) -> None:
    import grpc

    with pytest.raises(grpc.RpcError) as error:
        predict(shipped, "")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "text" in error.value.details()
    assert fields_of(predict(shipped, invoices("test")[2]["text"]))["total"].present


@pytest.mark.parametrize("text", ["hello, no invoice here", "Thank you for your order!\nSee you soon."])
def test_text_without_an_invoice_is_escalated_with_missing_fields(shipped: Running, text: str) -> None:
    response = predict(shipped, text)
    assert response.decision == pb.ESCALATE
    required = next(result for result in response.verifiers if result.name == "required")
    assert required.status == pb.VerifierResult.FAILED and "missing" in required.message


def test_text_over_the_limit_is_refused_and_the_next_invoice_is_served(shipped: Running) -> None:
    import grpc

    with pytest.raises(grpc.RpcError) as error:
        predict(shipped, "x" * 4001)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "4000" in error.value.details()
    assert fields_of(predict(shipped, invoices("test")[1]["text"]))["total"].present


def test_the_bundle_files_exist() -> None:
    for name in ("bundle.yaml", "model.onnx", "adapter.py", "calibration.json", "README.md"):
        assert Path(INVOICES / name).is_file(), name


def test_get_model_shows_each_fields_calibration_and_the_server_applies_every_threshold(shipped: Running) -> None:
    info = shipped.stub.GetModel(pb.GetModelRequest(name="invoice-extractor"))
    assert list(info.fields) == list(FIELDS) and sorted(info.calibration.fields) == sorted(FIELDS)
    assert "hold together with probability at least 95%" in info.calibration.simultaneous_statement
    thresholds = {name: summary.threshold for name, summary in info.calibration.fields.items()}
    for summary in info.calibration.fields.values():
        assert summary.method in ("platt", "isotonic", "histogram") and 0.0 <= summary.threshold <= 1.0
        assert summary.guarantee.target_risk == info.calibration.guarantee.target_risk
    held_back_by_a_field = 0
    for record in invoices("shifted")[:150]:
        response = predict(shipped, record["text"])
        low = {reason.message.split(":")[0].removeprefix("field ") for reason in response.reasons
               if reason.code == pb.Reason.LOW_CONFIDENCE and reason.message.startswith("field ")}
        below = {field.name for field in response.extraction.fields if field.confidence < thresholds[field.name]}
        assert low == below
        held_back_by_a_field += bool(below)
        if below or response.confidence < info.calibration.threshold:
            assert response.decision == pb.ESCALATE  # the bundle's on_low_confidence
    assert held_back_by_a_field > 0
