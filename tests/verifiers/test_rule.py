"""``use: rule``: CEL expressions over typed fields, checked when the bundle loads, exact with money, skipped
without their field; and a bundle whose rules are all CEL reproduces the Python verifiers of the invoice
extractor on its test set, verdict for verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from smallguard.server.assembly import build_guard
from smallguard.server.domain.errors import BundleError
from smallguard.server.domain.predictions import PredictCall
from smallguard.server.settings import Settings
from smallguard.verifiers import BundleInfo, ExtractedField, ModelKind, Prediction, Status, VerifierRegistry
from smallguard.verifiers.rule import Rule
from tests.conftest import MODELS

INVOICE = BundleInfo("invoices", ModelKind.EXTRACTOR, ("invoice_number", "date", "currency", "discount", "subtotal",
                                                         "tax", "total"))
MONEY = {"discount": "money", "subtotal": "money", "tax": "money", "total": "money"}


def invoice(**values: str | None) -> Prediction:
    return Prediction(kind=ModelKind.EXTRACTOR, fields={name: ExtractedField(name, value, 0.9, 0.9)
                                                        for name, value in values.items()})


def rule(expr: str, **types: str) -> Rule:
    return Rule(expr, INVOICE, types={**MONEY, **types})


def test_money_is_exact_where_doubles_are_not() -> None:
    assert rule("subtotal + tax == total").check(invoice(subtotal="0.10", tax="0.20", total="0.30"), {}).status \
        is Status.PASSED
    as_doubles = Rule("subtotal + tax == total", INVOICE, types=dict.fromkeys(MONEY, "number"))
    assert as_doubles.check(invoice(subtotal="0.10", tax="0.20", total="0.30"), {}).status is Status.FAILED
    assert rule("total == money('0.30')").check(invoice(total="0.30"), {}).status is Status.PASSED
    assert rule("total == 1234567").check(invoice(total="12,345.67"), {}).status is Status.PASSED


@pytest.mark.parametrize(("expr", "values", "status"), [
    ("tax <= total", {"tax": "20.00", "total": "120.00"}, Status.PASSED),
    ("tax <= total", {"tax": "120.01", "total": "120.00"}, Status.FAILED),
    ("discount * 5 <= subtotal", {"discount": "20.00", "subtotal": "100.00"}, Status.PASSED),  # at most 20%
    ("discount * 5 <= subtotal", {"discount": "20.01", "subtotal": "100.00"}, Status.FAILED),
    ("'discount' in fields ? discount * 5 <= subtotal : true", {"subtotal": "100.00"}, Status.PASSED),
    ("iso4217(currency)", {"currency": "EUR"}, Status.PASSED),
    ("iso4217(currency)", {"currency": "EUX"}, Status.FAILED),
    ("date >= timestamp('2000-01-01T00:00:00Z') && date <= today", {"date": "2024-02-29"}, Status.PASSED),
    ("date >= timestamp('2000-01-01T00:00:00Z') && date <= today", {"date": "1999-12-31"}, Status.FAILED),
])
def test_rules_decide_on_typed_values(expr: str, values: dict[str, str], status: Status) -> None:
    assert rule(expr, date="date").check(invoice(**values), {}).status is status


def test_the_context_is_a_variable() -> None:
    eu = rule('context.region == "EU" ? currency in ["EUR", "SEK"] : true')
    assert eu.check(invoice(currency="USD"), {"region": "EU"}).status is Status.FAILED
    assert eu.check(invoice(currency="SEK"), {"region": "EU"}).status is Status.PASSED
    assert eu.check(invoice(currency="USD"), {"region": "US"}).status is Status.PASSED


def test_a_missing_field_skips_and_a_value_that_does_not_read_fails_naming_it() -> None:
    sums = rule("subtotal + tax == total")
    assert sums.check(invoice(subtotal="1.00", total="1.00"), {}).status is Status.SKIPPED
    assert sums.check(invoice(subtotal="1.00", tax="  ", total="1.00"), {}).message == "tax is missing"
    failed = sums.check(invoice(subtotal="1.00", tax="0.005", total="1.00"), {})
    assert (failed.status, failed.message) == (Status.FAILED, "tax is '0.005', not an amount with at most 2 decimals")
    bad_date = rule("date <= today", date="date").check(invoice(date="31/02/2024"), {})
    assert bad_date.status is Status.FAILED and "not a date in the format '%Y-%m-%d'" in bad_date.message


def test_a_failure_shows_the_values_read() -> None:
    result = rule("subtotal + tax == total").check(invoice(subtotal="100.00", tax="20.00", total="121.00"), {})
    assert result.message == "subtotal + tax == total (subtotal='100.00', tax='20.00', total='121.00')"
    assert rule("tax <= total").check(invoice(tax="1.00", total="2.00"), {}).message == "tax <= total"


@pytest.mark.parametrize(("expr", "types", "problem"), [
    ("subtotl + tax == total", MONEY, "expr 'subtotl + tax == total': column 1: undeclared reference to 'subtotl'"),
    ("tax <= currency", MONEY, "column 5: found no matching overload for '_<=_' applied to '(int, string)'"),
    ("discount <= subtotal * 0.2", MONEY, "column 22: found no matching overload for '_*_' applied to '(int, double)'"
                                          "; money is exact integer minor units"),
    ("tax <=", MONEY, "column 7: Syntax error"),
    ("total + 1", MONEY, "gives a int, not a bool"),
    ("true", {"totl": "money"}, "types names totl, which invoices does not have"),
    ("true", {"total": "cents"}, "types: total: 'cents'; expected one of string, money, number, integer, date"),
])
def test_a_rule_that_does_not_compile_is_refused_with_the_column(expr: str, types: dict[str, str],
                                                                 problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        Rule(expr, INVOICE, types=types)
    assert problem in str(caught.value)


RULES = """verifiers:
  - name: required
    use: rule
    params: {expr: "['invoice_number', 'date', 'currency', 'subtotal', 'tax', 'total'].all(f, f in fields)"}
    on_fail: escalate
  - name: not-greater
    use: rule
    params: {expr: "tax <= total", types: {tax: money, total: money}}
    on_fail: escalate
  - name: sum-equals
    use: rule
    params:
      expr: "subtotal + tax - total <= 1 && total - subtotal - tax <= 1"   # within one cent
      types: {subtotal: money, tax: money, total: money}
    on_fail: escalate
  - name: date-format
    use: rule
    params: {expr: "date >= timestamp('2000-01-01T00:00:00Z') && date <= today", types: {date: date}}
    on_fail: escalate
  - name: currency-code
    use: rule
    params: {expr: "iso4217(currency)"}
    on_fail: escalate
"""


def cel_twin(root: Path, yaml_verifiers: str) -> tuple[Path, Path]:
    """The invoice extractor as shipped (its Python verifiers) and a twin whose verifiers are CEL rules; neither
    escalates to another tier, so only the verifiers differ."""
    folders = []
    for name, verifiers in (("python", None), ("cel", yaml_verifiers)):
        folder = root / name
        shutil.copytree(MODELS / "invoice-extractor", folder, ignore=shutil.ignore_patterns("data", "report"))
        text = (folder / "bundle.yaml").read_text().split("\nescalation:")[0]
        text = text.replace("name: invoice-extractor", f"name: invoices-{name}", 1)
        if verifiers is not None:
            text = text.split("\nverifiers:")[0] + "\n" + verifiers
        (folder / "bundle.yaml").write_text(text)
        folders.append(folder)
    return folders[0], folders[1]


def test_a_bundle_of_cel_rules_reproduces_the_python_verifiers_on_the_test_set(tmp_path: Path) -> None:
    python, cel = cel_twin(tmp_path, RULES)
    guard = build_guard(Settings(), bundles=[python, cel], keep_feedback=False)
    data = MODELS / "invoice-extractor" / "data"
    texts = [json.loads(line)["text"] for name in ("test.jsonl", "unseen.jsonl")
             for line in (data / name).read_text().splitlines()]
    seen: dict[Status, int] = {}
    try:
        for text in texts:
            by_python = guard.predict(PredictCall("invoices-python", text=text))
            by_cel = guard.predict(PredictCall("invoices-cel", text=text))
            assert [(v.name, v.status) for v in by_cel.verifiers] == [(v.name, v.status) for v in by_python.verifiers]
            assert by_cel.decision is by_python.decision
            for v in by_cel.verifiers:
                seen[v.status] = seen.get(v.status, 0) + 1
    finally:
        guard.close()
    assert seen.get(Status.FAILED, 0) > 0 and seen.get(Status.PASSED, 0) > 0  # both verdicts were exercised


def test_a_misspelled_field_refuses_the_bundle_naming_the_rule_and_the_field(tmp_path: Path) -> None:
    _, cel = cel_twin(tmp_path, RULES.replace("tax <= total", "tax <= totl"))
    with pytest.raises(BundleError) as caught:
        build_guard(Settings(), bundles=[cel], keep_feedback=False, registry=VerifierRegistry.discover())
    message = str(caught.value)
    assert str(cel / "bundle.yaml") in message and "verifier 'not-greater'" in message
    assert "column 8: undeclared reference to 'totl'" in message


def test_a_rule_that_cannot_be_evaluated_raises_so_the_runner_fails_closed() -> None:
    with pytest.raises(RuntimeError, match="divide by zero"):
        rule("total / (subtotal - subtotal) == 1").check(invoice(subtotal="1.00", total="1.00"), {})


def test_a_classifier_rule_reads_the_label_and_its_probability() -> None:
    digits = BundleInfo("digits", ModelKind.CLASSIFIER, labels=tuple("0123456789"))
    confident_or_small = Rule("label in ['0', '1'] || probability >= 0.99", digits)
    sure = Prediction(kind=ModelKind.CLASSIFIER, label="7", probability=0.995)
    unsure = Prediction(kind=ModelKind.CLASSIFIER, label="7", probability=0.9)
    assert confident_or_small.check(sure, {}).status is Status.PASSED
    assert confident_or_small.check(unsure, {}).status is Status.FAILED
    with pytest.raises(ValueError, match="undeclared reference to 'total'"):
        Rule("total > 0", digits)
