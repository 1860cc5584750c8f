"""The built-in verifiers: what passes, what fails, what is skipped, and which params are refused."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping

import pytest

from smallguard.verifiers import (
    CheckResult,
    ExtractedField,
    ModelKind,
    Prediction,
    Status,
    VerifierRegistry,
)
from smallguard.verifiers.builtin import (
    Compare,
    CurrencyCode,
    DateFormat,
    InRange,
    LabelAllowed,
    NotGreater,
    Required,
    SumEquals,
)

PASSED, FAILED, SKIPPED = Status.PASSED, Status.FAILED, Status.SKIPPED
NO_CONTEXT: Mapping[str, str] = {}


def extracted(**values: str | None) -> Prediction:
    """An extractor prediction whose fields hold ``values`` (None: the model found nothing)."""
    return Prediction(
        kind=ModelKind.EXTRACTOR,
        fields={name: ExtractedField(name, value, 0.9, 0.9) for name, value in values.items()},
    )


def classified(label: str | None) -> Prediction:
    return Prediction(kind=ModelKind.CLASSIFIER, label=label, probability=0.9)


def status_of(verifier: object, prediction: Prediction, context: Mapping[str, str] = NO_CONTEXT) -> Status:
    return verifier.check(prediction, context).status  # type: ignore[attr-defined]


# --- Compare -------------------------------------------------------------------------------

# (op, left, right, expected): each op on both sides of its boundary.
BOUNDARIES = [
    ("<", "1.99", "2", PASSED),
    ("<", "2", "2", FAILED),
    ("<=", "2", "2", PASSED),
    ("<=", "2.01", "2", FAILED),
    (">", "2.01", "2", PASSED),
    (">", "2", "2", FAILED),
    (">=", "2", "2", PASSED),
    (">=", "1.99", "2", FAILED),
    ("==", "2.00", "2", PASSED),
    ("==", "2.01", "2", FAILED),
    ("==", "1.99", "2", FAILED),
    ("!=", "2.01", "2", PASSED),
    ("!=", "1.99", "2", PASSED),
    ("!=", "2.0", "2", FAILED),
]


@pytest.mark.parametrize(("op", "left", "right", "expected"), BOUNDARIES)
@pytest.mark.parametrize("against", ["other", "value"])
def test_compare_each_op_at_its_boundary(op: str, left: str, right: str, expected: Status, against: str) -> None:
    if against == "other":
        verifier, prediction = Compare("a", op, other="b"), extracted(a=left, b=right)
    else:
        verifier, prediction = Compare("a", op, value=right), extracted(a=left)
    result = verifier.check(prediction, NO_CONTEXT)
    assert result.status is expected, result.message
    assert "a" in result.message and op in result.message


# (op, within, beyond, right): `within` fails without tolerance and passes with 0.01; `beyond` still fails.
TOLERANCE_CASES = [
    ("<", "2", "2.01", "2"),
    ("<=", "2.01", "2.02", "2"),
    (">", "2", "1.99", "2"),
    (">=", "1.99", "1.98", "2"),
    ("==", "2.01", "2.02", "2"),
    ("==", "1.99", "1.98", "2"),
]


@pytest.mark.parametrize(("op", "within", "beyond", "right"), TOLERANCE_CASES)
def test_compare_tolerance_widens_what_passes_and_no_further(op: str, within: str, beyond: str, right: str) -> None:
    strict, lenient = Compare("a", op, other="b"), Compare("a", op, other="b", tolerance="0.01")
    assert status_of(strict, extracted(a=within, b=right)) is FAILED
    assert status_of(lenient, extracted(a=within, b=right)) is PASSED
    assert status_of(lenient, extracted(a=beyond, b=right)) is FAILED
    assert "tolerance 0.01" in lenient.check(extracted(a=within, b=right), NO_CONTEXT).message


@pytest.mark.parametrize(("left", "expected"), [("2.01", FAILED), ("1.99", FAILED), ("2.02", PASSED), ("1.98", PASSED)])
def test_compare_not_equal_treats_values_within_tolerance_as_equal(left: str, expected: Status) -> None:
    assert status_of(Compare("a", "!=", value=2, tolerance="0.01"), extracted(a=left)) is expected


@pytest.mark.parametrize(
    ("verifier", "value", "expected"),
    [
        (Compare("a", "==", value="0.3"), "0.30", PASSED),
        (Compare("a", "==", value=0.3), "0.3", PASSED),  # a float param is read by its shortest repr, exactly
        (Compare("a", "==", value=0, tolerance=0.3), "0.3", PASSED),  # Decimal(0.3) would be 0.2999...
        (Compare("a", "==", value=0, tolerance=0.3), "0.30000000000000001", FAILED),
        (Compare("a", "<", value="0.3"), "0.29999999999999999999", PASSED),
        (Compare("a", ">=", value=-5), "-5.000", PASSED),
        (Compare("a", "==", value="1e3"), "1000", PASSED),
        (Compare("a", "==", value=0), "-0", PASSED),
        (Compare("a", "<", value=0), "-0.01", PASSED),
        (Compare("a", ">", value=0), "0", FAILED),
    ],
)
def test_compare_is_exact_decimal_arithmetic(verifier: Compare, value: str, expected: Status) -> None:
    assert status_of(verifier, extracted(a=value)) is expected


def test_compare_other_field_values_are_exact_too() -> None:
    assert status_of(Compare("a", "==", other="b"), extracted(a="0.30", b="0.3")) is PASSED
    assert status_of(Compare("a", "<", other="b"), extracted(a="0.3", b="0.30000000000000000001")) is PASSED


@pytest.mark.parametrize(
    ("value", "limit"),
    [("1,234.50", "1234.5"), (" 1,234.50 ", "1234.5"), ("-1,234,567.00", "-1234567"), ("1,000", "1000"),
     ("1234.50", "1,234.5")],
)
def test_compare_reads_comma_thousands_groups(value: str, limit: str) -> None:
    assert status_of(Compare("a", "==", value=limit), extracted(a=value)) is PASSED


@pytest.mark.parametrize("value", ["abc", "12,34", "1,2345.00", "1.2.3", "NaN", "Infinity", "-inf", "12 EUR", "$12"])
@pytest.mark.parametrize("side", ["field", "other"])
def test_compare_fails_a_value_that_is_not_a_number_and_names_it(value: str, side: str) -> None:
    prediction = extracted(amount=value, limit="5") if side == "field" else extracted(amount="5", limit=value)
    result = Compare("amount", "<=", other="limit").check(prediction, NO_CONTEXT)
    assert result.status is FAILED
    assert ("amount" if side == "field" else "limit") in result.message
    assert value in result.message


@pytest.mark.parametrize("missing", [None, "", "   "])
@pytest.mark.parametrize("side", ["field", "other"])
def test_compare_skips_when_a_field_is_missing(missing: str | None, side: str) -> None:
    prediction = extracted(amount=missing, limit="5") if side == "field" else extracted(amount="5", limit=missing)
    result = Compare("amount", "<=", other="limit").check(prediction, NO_CONTEXT)
    assert result.status is SKIPPED
    assert ("amount" if side == "field" else "limit") in result.message


def test_compare_skips_when_the_field_is_absent_from_the_prediction() -> None:
    result = Compare("amount", "<", value=5).check(extracted(other="1"), NO_CONTEXT)
    assert result.status is SKIPPED and "amount" in result.message


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"field": "a", "op": "=<", "value": 1}, "op"),
        ({"field": "a", "op": "=", "value": 1}, "op"),
        ({"field": "a", "op": "", "value": 1}, "op"),
        ({"field": "a", "op": "<", "other": "b", "value": 1}, "other"),
        ({"field": "a", "op": "<"}, "value"),
        ({"field": "a", "op": "<", "value": 1, "tolerance": -0.01}, "tolerance"),
        ({"field": "a", "op": "<", "value": 1, "tolerance": "-1"}, "tolerance"),
        ({"field": "a", "op": "<", "value": 1, "tolerance": True}, "tolerance"),
        ({"field": "a", "op": "<", "value": 1, "tolerance": "a cent"}, "tolerance"),
        ({"field": "", "op": "<", "value": 1}, "field"),
        ({"field": "   ", "op": "<", "value": 1}, "field"),
        ({"field": None, "op": "<", "value": 1}, "field"),
        ({"field": "a", "op": "<", "other": ""}, "other"),
        ({"field": "a", "op": "<", "value": True}, "value"),
        ({"field": "a", "op": "<", "value": False}, "value"),
        ({"field": "a", "op": "<", "value": "ten"}, "value"),
        ({"field": "a", "op": "<", "value": "nan"}, "value"),
        ({"field": "a", "op": "<", "value": float("inf")}, "value"),
        ({"field": "a", "op": "<", "value": [1]}, "value"),
    ],
)
def test_compare_refuses_bad_params_naming_the_parameter(params: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{named}\b"):
        Compare(**params)  # type: ignore[arg-type]


# --- NotGreater ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tax", "total", "expected"),
    [("12.50", "100.00", PASSED), ("100", "100.00", PASSED), ("0", "0", PASSED), ("100.01", "100", FAILED),
     ("1,000.00", "999.99", FAILED), ("-1", "0", PASSED)],
)
def test_not_greater(tax: str, total: str, expected: Status) -> None:
    result = NotGreater("tax", than="total").check(extracted(tax=tax, total=total), NO_CONTEXT)
    assert result.status is expected, result.message
    assert "tax" in result.message and "total" in result.message


@pytest.mark.parametrize(("tax", "expected"), [("100.05", PASSED), ("100.06", FAILED)])
def test_not_greater_tolerance(tax: str, expected: Status) -> None:
    assert status_of(NotGreater("tax", "total", tolerance="0.05"), extracted(tax=tax, total="100")) is expected


@pytest.mark.parametrize("prediction", [extracted(tax="5"), extracted(total="5"), extracted(tax="", total="5")])
def test_not_greater_skips_a_missing_side(prediction: Prediction) -> None:
    assert status_of(NotGreater("tax", "total"), prediction) is SKIPPED


@pytest.mark.parametrize(
    ("params", "named"),
    [({"field": "tax", "than": ""}, "than"), ({"field": "", "than": "total"}, "field"),
     ({"field": "tax", "than": "total", "tolerance": -1}, "tolerance")],
)
def test_not_greater_refuses_bad_params(params: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{named}\b"):
        NotGreater(**params)  # type: ignore[arg-type]


# --- SumEquals -----------------------------------------------------------------------------

NET_TAX = ["net", "tax"]


@pytest.mark.parametrize(
    ("total", "expected"),
    [("12.50", PASSED), ("12.51", PASSED), ("12.49", PASSED), ("12.52", FAILED), ("12.48", FAILED)],
)
def test_sum_equals_default_tolerance_is_one_cent(total: str, expected: Status) -> None:
    result = SumEquals(NET_TAX, "total").check(extracted(net="10.00", tax="2.50", total=total), NO_CONTEXT)
    assert result.status is expected, result.message


def test_sum_equals_failure_says_how_far_off() -> None:
    result = SumEquals(NET_TAX, "total").check(extracted(net="10.00", tax="2.50", total="12.52"), NO_CONTEXT)
    assert result.status is FAILED
    assert re.search(r"off by 0\.02\b", result.message), result.message
    assert "total" in result.message and "12.52" in result.message and "12.50" in result.message


@pytest.mark.parametrize(
    ("values", "total", "expected"),
    [
        (["0.1", "0.2"], "0.3", PASSED),
        (["0.1", "0.1", "0.1"], "0.3", PASSED),
        (["0.1", "0.2"], "0.30000000000000004", FAILED),
        (["1,000.00", "234.50"], "1,234.50", PASSED),
        (["100", "-15.25"], "84.75", PASSED),
        (["1e2", "0.5"], "100.5", PASSED),
    ],
)
def test_sum_equals_adds_exactly(values: list[str], total: str, expected: Status) -> None:
    names = [f"p{i}" for i in range(len(values))]
    prediction = extracted(total=total, **dict(zip(names, values, strict=True)))
    assert status_of(SumEquals(names, "total", tolerance=0), prediction) is expected


def test_sum_equals_custom_tolerance() -> None:
    verifier = SumEquals(NET_TAX, "total", tolerance="0.05")
    assert status_of(verifier, extracted(net="10", tax="2.5", total="12.55")) is PASSED
    assert status_of(verifier, extracted(net="10", tax="2.5", total="12.56")) is FAILED


@pytest.mark.parametrize("missing", [None, "", "  "])
def test_sum_equals_skips_when_a_part_is_missing_by_default(missing: str | None) -> None:
    result = SumEquals(NET_TAX, "total").check(extracted(net="10", tax=missing, total="10"), NO_CONTEXT)
    assert result.status is SKIPPED and "tax" in result.message


def test_sum_equals_skips_when_a_part_is_absent_from_the_prediction() -> None:
    assert status_of(SumEquals(NET_TAX, "total"), extracted(net="10", total="10")) is SKIPPED


@pytest.mark.parametrize("missing", [None, "", "  "])
@pytest.mark.parametrize(("total", "expected"), [("10.00", PASSED), ("12.50", FAILED)])
def test_sum_equals_counts_a_missing_part_as_zero_when_asked(missing: str | None, total: str, expected: Status) -> None:
    verifier = SumEquals(["net", "discount"], "total", missing_parts="zero")
    result = verifier.check(extracted(net="10.00", discount=missing, total=total), NO_CONTEXT)
    assert result.status is expected, result.message


def test_sum_equals_counts_an_absent_part_as_zero_when_asked() -> None:
    verifier = SumEquals(["net", "discount"], "total", missing_parts="zero")
    assert status_of(verifier, extracted(net="10", total="10")) is PASSED


@pytest.mark.parametrize("missing_parts", ["skip", "zero"])
@pytest.mark.parametrize("total", [None, "", "  "])
def test_sum_equals_skips_a_missing_total(missing_parts: str, total: str | None) -> None:
    result = SumEquals(NET_TAX, "total", missing_parts=missing_parts).check(
        extracted(net="10", tax="2", total=total), NO_CONTEXT
    )
    assert result.status is SKIPPED and "total" in result.message


@pytest.mark.parametrize("missing_parts", ["skip", "zero"])
@pytest.mark.parametrize(("net", "total", "named"), [("ten", "10", "net"), ("10", "n/a", "total")])
def test_sum_equals_fails_a_value_that_is_not_a_number(missing_parts: str, net: str, total: str, named: str) -> None:
    result = SumEquals(NET_TAX, "total", missing_parts=missing_parts).check(
        extracted(net=net, tax="0", total=total), NO_CONTEXT
    )
    assert result.status is FAILED and named in result.message


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"parts": "net", "total": "total"}, "parts"),
        ({"parts": [], "total": "total"}, "parts"),
        ({"parts": None, "total": "total"}, "parts"),
        ({"parts": ["net", ""], "total": "total"}, "parts"),
        ({"parts": ["net", 3], "total": "total"}, "parts"),
        ({"parts": NET_TAX, "total": ""}, "total"),
        ({"parts": NET_TAX, "total": "total", "missing_parts": "ignore"}, "missing_parts"),
        ({"parts": NET_TAX, "total": "total", "missing_parts": None}, "missing_parts"),
        ({"parts": NET_TAX, "total": "total", "tolerance": "-0.01"}, "tolerance"),
    ],
)
def test_sum_equals_refuses_bad_params(params: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{named}\b"):
        SumEquals(**params)  # type: ignore[arg-type]


# --- InRange -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "value", "expected"),
    [
        ({"min": 0}, "0", PASSED),
        ({"min": 0}, "0.00", PASSED),
        ({"min": 0}, "-0.01", FAILED),
        ({"min": 0}, "1e9", PASSED),
        ({"max": 100}, "100", PASSED),
        ({"max": 100}, "100.01", FAILED),
        ({"max": 100}, "-1,000", PASSED),
        ({"min": 1, "max": 10}, "1", PASSED),
        ({"min": 1, "max": 10}, "10", PASSED),
        ({"min": 1, "max": 10}, "5.5", PASSED),
        ({"min": 1, "max": 10}, "0.99", FAILED),
        ({"min": 1, "max": 10}, "10.01", FAILED),
        ({"min": "0.1", "max": 0.3}, "0.3", PASSED),
        ({"min": "0.1", "max": 0.3}, "0.30000000000000001", FAILED),
        ({"min": 5, "max": 5}, "5", PASSED),
        ({"min": 5, "max": 5}, "5.01", FAILED),
    ],
)
def test_in_range_bounds_are_inclusive(bounds: dict[str, object], value: str, expected: Status) -> None:
    result = InRange("amount", **bounds).check(extracted(amount=value), NO_CONTEXT)  # type: ignore[arg-type]
    assert result.status is expected, result.message
    assert "amount" in result.message


@pytest.mark.parametrize(("value", "expected"), [(None, SKIPPED), ("", SKIPPED), ("lots", FAILED)])
def test_in_range_missing_skips_and_garbage_fails(value: str | None, expected: Status) -> None:
    assert status_of(InRange("amount", min=0), extracted(amount=value)) is expected


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"field": "amount", "min": 10, "max": 1}, "min"),
        ({"field": "amount"}, "min"),
        ({"field": "", "min": 1}, "field"),
        ({"field": "amount", "min": "low"}, "min"),
        ({"field": "amount", "max": True}, "max"),
    ],
)
def test_in_range_refuses_bad_params(params: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{named}\b"):
        InRange(**params)  # type: ignore[arg-type]


# --- Required ------------------------------------------------------------------------------


def test_required_lists_every_missing_field() -> None:
    verifier = Required(["vendor", "invoice_no", "due_date", "total"])
    result = verifier.check(extracted(vendor="ACME", invoice_no=None, total="  "), NO_CONTEXT)
    assert result.status is FAILED
    listed = re.findall(r"\w+", result.message)
    assert {"invoice_no", "due_date", "total"} <= set(listed)
    assert "vendor" not in listed


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_required_counts_blank_strings_as_missing(blank: str) -> None:
    result = Required(["vendor"]).check(extracted(vendor=blank), NO_CONTEXT)
    assert result.status is FAILED and "vendor" in result.message


def test_required_passes_when_everything_is_present() -> None:
    result = Required(["vendor", "total"]).check(extracted(vendor="ACME", total="0"), NO_CONTEXT)
    assert result.status is PASSED and result.message


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [(classified("3"), PASSED), (classified("0"), PASSED), (classified(None), FAILED), (classified(""), FAILED),
     (extracted(other="3"), FAILED)],
)
def test_required_reads_the_classifier_label(prediction: Prediction, expected: Status) -> None:
    assert status_of(Required(["label"]), prediction) is expected


@pytest.mark.parametrize("fields", ["vendor", [], None, ["vendor", ""], ["vendor", None]])
def test_required_refuses_bad_params(fields: object) -> None:
    with pytest.raises(ValueError, match=r"\bfields\b"):
        Required(fields)  # type: ignore[arg-type]


# --- DateFormat ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-31", PASSED),
        (" 2024-01-31 ", PASSED),
        ("2024-02-29", PASSED),  # leap year
        ("2023-02-29", FAILED),
        ("2023-02-30", FAILED),
        ("2024-13-01", FAILED),
        ("2024-04-31", FAILED),
        ("31/01/2024", FAILED),
        ("2024-01-31T10:00:00", FAILED),
        ("yesterday", FAILED),
    ],
)
def test_date_format_iso_by_default(value: str, expected: Status) -> None:
    result = DateFormat("due").check(extracted(due=value), NO_CONTEXT)
    assert result.status is expected, result.message
    assert "due" in result.message


def test_date_format_failure_names_the_value_and_the_format() -> None:
    result = DateFormat("due").check(extracted(due="2023-02-30"), NO_CONTEXT)
    assert "2023-02-30" in result.message and "%Y-%m-%d" in result.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("31/01/2024", PASSED), ("29/02/2024", PASSED), ("30/02/2024", FAILED), ("2024-01-31", FAILED),
     ("01/31/2024", FAILED)],
)
def test_date_format_other_format(value: str, expected: Status) -> None:
    assert status_of(DateFormat("due", format="%d/%m/%Y"), extracted(due=value)) is expected


@pytest.mark.parametrize(
    "bounds",
    [{"earliest": "2024-01-01", "latest": "2024-12-31"},
     {"earliest": datetime.date(2024, 1, 1), "latest": datetime.date(2024, 12, 31)}],
    ids=["str", "date"],
)
@pytest.mark.parametrize(
    ("value", "expected", "word"),
    [("2024-01-01", PASSED, ""), ("2024-12-31", PASSED, ""), ("2024-06-15", PASSED, ""),
     ("2023-12-31", FAILED, "before"), ("2025-01-01", FAILED, "after")],
)
def test_date_format_bounds_are_inclusive(bounds: dict[str, object], value: str, expected: Status, word: str) -> None:
    result = DateFormat("due", **bounds).check(extracted(due=value), NO_CONTEXT)  # type: ignore[arg-type]
    assert result.status is expected, result.message
    assert word in result.message


@pytest.mark.parametrize(("bound", "value"), [({"earliest": "2024-01-01"}, "31/12/2023"),
                                              ({"latest": "2024-01-01"}, "02/01/2024")])
def test_date_format_bounds_compare_dates_not_text(bound: dict[str, str], value: str) -> None:
    verifier = DateFormat("due", format="%d/%m/%Y", **bound)
    assert status_of(verifier, extracted(due=value)) is FAILED
    assert status_of(verifier, extracted(due="01/01/2024")) is PASSED


def test_date_format_accepts_a_datetime_bound_as_yaml_may_give_one() -> None:
    # YAML reads an unquoted `2024-01-01 00:00:00` as a datetime, which is a subclass of date.
    # Either the constructor refuses it, or checks compare it as a date; check() must not raise.
    try:
        verifier = DateFormat("due", earliest=datetime.datetime(2024, 1, 1))  # type: ignore[arg-type]
    except ValueError:
        return
    assert status_of(verifier, extracted(due="2024-01-02")) is PASSED
    assert status_of(verifier, extracted(due="2023-12-31")) is FAILED


@pytest.mark.parametrize("value", [None, "", "   "])
def test_date_format_skips_a_missing_date(value: str | None) -> None:
    assert status_of(DateFormat("due"), extracted(due=value)) is SKIPPED


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"field": "due", "format": "YYYY-MM-DD"}, "format"),
        ({"field": "due", "format": ""}, "format"),
        ({"field": "due", "format": None}, "format"),
        ({"field": "due", "earliest": "2024-02-30"}, "earliest"),
        ({"field": "due", "latest": "tomorrow"}, "latest"),
        ({"field": "due", "earliest": "2024-12-31", "latest": "2024-01-01"}, "earliest"),
        ({"field": "", "format": "%Y"}, "field"),
    ],
)
def test_date_format_refuses_bad_params(params: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{named}\b"):
        DateFormat(**params)  # type: ignore[arg-type]


def test_date_format_refuses_an_unknown_strptime_directive_at_construction() -> None:
    # The module promises a bundle with a mistake is refused at start-up, not at the first request.
    with pytest.raises(ValueError, match=r"\bformat\b"):
        DateFormat("due", format="%Y-%Q")


# --- CurrencyCode --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [("USD", PASSED), ("EUR", PASSED), ("JPY", PASSED), (" EUR ", PASSED), ("XYZ", FAILED), ("usd", FAILED),
     ("Usd", FAILED), ("US", FAILED), ("USDD", FAILED), ("$", FAILED), ("840", FAILED)],
)
def test_currency_code_is_an_upper_case_iso_4217_code(code: str, expected: Status) -> None:
    result = CurrencyCode("currency").check(extracted(currency=code), NO_CONTEXT)
    assert result.status is expected, result.message
    assert "currency" in result.message


@pytest.mark.parametrize(("code", "expected"), [("USD", PASSED), ("EUR", PASSED), ("GBP", FAILED), ("XYZ", FAILED)])
def test_currency_code_allowed_restricts(code: str, expected: Status) -> None:
    result = CurrencyCode("currency", allowed=["USD", "EUR"]).check(extracted(currency=code), NO_CONTEXT)
    assert result.status is expected, result.message
    if code == "GBP":
        assert "EUR" in result.message and "USD" in result.message


@pytest.mark.parametrize("value", [None, "", " "])
def test_currency_code_skips_a_missing_code(value: str | None) -> None:
    assert status_of(CurrencyCode("currency"), extracted(currency=value)) is SKIPPED


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"field": "currency", "allowed": ["USD", "XYZ"]}, r"XYZ"),
        ({"field": "currency", "allowed": ["usd"]}, r"usd"),
        ({"field": "currency", "allowed": "USD"}, r"\ballowed\b"),
        ({"field": "currency", "allowed": []}, r"\ballowed\b"),
        ({"field": "", "allowed": ["USD"]}, r"\bfield\b"),
    ],
)
def test_currency_code_refuses_bad_params(params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CurrencyCode(**params)  # type: ignore[arg-type]


# --- LabelAllowed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "allowed", "expected"),
    [("3", "1, 3 ,7", PASSED), ("1", "1, 3 ,7", PASSED), ("7", "1, 3 ,7", PASSED), ("2", "1, 3 ,7", FAILED),
     ("3", "3", PASSED), ("3", "13,33", FAILED), ("3", "", FAILED), ("3", " , ", FAILED)],
)
def test_label_allowed_from_a_context_list(label: str, allowed: str, expected: Status) -> None:
    result = LabelAllowed(context_key="allowed_labels").check(classified(label), {"allowed_labels": allowed})
    assert result.status is expected, result.message
    assert "allowed_labels" in result.message


def test_label_allowed_failure_lists_what_is_allowed() -> None:
    result = LabelAllowed(context_key="allowed_labels").check(classified("2"), {"allowed_labels": "7, 1,3"})
    assert result.status is FAILED and "'2'" in result.message and "1, 3, 7" in result.message


def test_label_allowed_keeps_no_long_list_in_its_cache() -> None:
    """A caller chooses the list: a long one (here 400,000 distinct labels, 3 MiB) is checked, then forgotten."""
    from smallguard.verifiers import builtin

    verifier = LabelAllowed(context_key="allowed_labels")
    cached = builtin._cached_split.cache_info().currsize
    long_list = ",".join(f"label-{i}" for i in range(400_000))
    assert verifier.check(classified("label-399999"), {"allowed_labels": long_list}).status is Status.PASSED
    failed = verifier.check(classified("2"), {"allowed_labels": long_list + ",x"})
    assert failed.status is Status.FAILED and len(failed.message) < 1000  # names 20 labels and the count
    assert failed.message.endswith(", ... (400001 in all)")
    assert builtin._cached_split.cache_info().currsize == cached
    assert verifier.check(classified("2"), {"allowed_labels": "1,2"}).status is Status.PASSED  # a short one is
    assert builtin._cached_split.cache_info().currsize in (cached, cached + 1)  # cached (or already was)


def test_label_allowed_separator() -> None:
    verifier = LabelAllowed(context_key="allowed", separator="|")
    assert status_of(verifier, classified("a,b"), {"allowed": "a,b|c"}) is PASSED
    assert status_of(verifier, classified("a"), {"allowed": "a,b|c"}) is FAILED


@pytest.mark.parametrize(("when_missing", "expected"), [("skip", SKIPPED), ("fail", FAILED)])
def test_label_allowed_without_the_context_key(when_missing: str, expected: Status) -> None:
    verifier = LabelAllowed(context_key="allowed_labels", when_missing=when_missing)
    result = verifier.check(classified("3"), {"other": "3"})
    assert result.status is expected and "allowed_labels" in result.message


@pytest.mark.parametrize(("label", "expected"), [("cat", PASSED), ("dog", PASSED), ("bird", FAILED), ("Cat", FAILED)])
def test_label_allowed_fixed_list_ignores_the_context(label: str, expected: Status) -> None:
    verifier = LabelAllowed(allowed=["cat", "dog"], when_missing="fail")
    assert status_of(verifier, classified(label)) is expected
    assert status_of(verifier, classified(label), {"allowed_labels": label}) is expected


PER_CUSTOMER = {"acme": ["1", "2"], "globex": ["3"], 42: ["9"]}


@pytest.mark.parametrize(
    ("customer", "label", "expected"),
    [("acme", "1", PASSED), ("acme", "2", PASSED), ("acme", "3", FAILED), ("globex", "3", PASSED),
     ("globex", "1", FAILED), ("42", "9", PASSED)],
)
def test_label_allowed_per_context_value(customer: str, label: str, expected: Status) -> None:
    result = LabelAllowed(context_key="customer", allowed=PER_CUSTOMER).check(classified(label), {"customer": customer})
    assert result.status is expected, result.message
    assert customer in result.message


@pytest.mark.parametrize("context", [{"customer": "initech"}, {"customer": "ACME"}, {}])
@pytest.mark.parametrize(("when_missing", "expected"), [("skip", SKIPPED), ("fail", FAILED)])
def test_label_allowed_unmapped_context_value(context: dict[str, str], when_missing: str, expected: Status) -> None:
    verifier = LabelAllowed(context_key="customer", allowed=PER_CUSTOMER, when_missing=when_missing)
    result = verifier.check(classified("1"), context)
    assert result.status is expected
    assert context.get("customer", "customer") in result.message


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"context_key": "allowed_labels", "allowed": ["1"]}, r"context_key"),
        ({"allowed": {"acme": ["1"]}}, r"context_key"),
        ({}, r"context_key"),
        ({"context_key": "k", "when_missing": "ignore"}, r"when_missing"),
        ({"context_key": "k", "when_missing": None}, r"when_missing"),
        ({"context_key": "k", "separator": ""}, r"separator"),
        ({"context_key": ""}, r"context_key"),
        ({"context_key": "k", "field": ""}, r"field"),
        ({"allowed": []}, r"allowed"),
        ({"allowed": "cat"}, r"allowed"),
        ({"context_key": "customer", "allowed": {"acme": "1"}}, r"allowed\['acme'\]"),
        ({"context_key": "customer", "allowed": {"acme": []}}, r"allowed\['acme'\]"),
    ],
)
def test_label_allowed_refuses_bad_params(params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LabelAllowed(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [(extracted(currency="EUR"), PASSED), (extracted(currency="GBP"), FAILED), (extracted(currency=None), SKIPPED),
     (extracted(label="EUR"), SKIPPED)],
)
def test_label_allowed_on_an_extracted_field(prediction: Prediction, expected: Status) -> None:
    verifier = LabelAllowed(context_key="currencies", field="currency")
    result = verifier.check(prediction, {"currencies": "USD, EUR"})
    assert result.status is expected, result.message
    assert "currency" in result.message


@pytest.mark.parametrize("when_missing", ["skip", "fail"])
def test_label_allowed_skips_a_prediction_without_a_label(when_missing: str) -> None:
    verifier = LabelAllowed(allowed=["1"], when_missing=when_missing)
    assert status_of(verifier, classified(None)) is SKIPPED


@pytest.mark.parametrize("verifier", [
    LabelAllowed(context_key="allowed_labels"),
    LabelAllowed(context_key="customer", allowed=PER_CUSTOMER, when_missing="fail"),
    LabelAllowed(allowed=["1", "3"]),
    LabelAllowed(context_key="currencies", field="currency"),
], ids=["context list", "per context value", "fixed list", "extracted field"])
def test_label_allowed_over_a_batch_answers_each_item_as_alone(verifier: LabelAllowed) -> None:
    predictions = [classified(label) for label in ("1", "3", " 3 ", "", None, "1", "9")] + [
        extracted(currency="EUR"), extracted(currency="GBP"), extracted(currency=None)]
    contexts: list[Mapping[str, str]] = [
        {"allowed_labels": "1,2", "customer": "acme", "currencies": "EUR"}, {}, {"customer": "globex"},
        {"allowed_labels": "3"}, {"customer": "acme"}, {"allowed_labels": "1,2", "customer": "acme"},
        {"customer": "42", "allowed_labels": "9"}, {"currencies": "USD, EUR"}, {"currencies": "USD, EUR"}, {}]
    assert verifier.check_many(predictions, contexts) == [verifier.check(p, c)
                                                          for p, c in zip(predictions, contexts, strict=True)]


def test_label_allowed_over_a_batch_works_out_a_shared_answer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = LabelAllowed(context_key="allowed_labels")
    asked: list[tuple[str | None, Mapping[str, str]]] = []
    check = verifier.check
    monkeypatch.setattr(verifier, "check", lambda p, c: asked.append((p.label, c)) or check(p, c))
    predictions = [classified(label) for label in ("1", "1", "2", "1", "1", "1")]
    contexts: list[Mapping[str, str]] = [{"allowed_labels": "1"}, {"allowed_labels": "1", "other": "x"},
                                         {"allowed_labels": "1"}, {"allowed_labels": ""}, {}, {}]
    results = verifier.check_many(predictions, contexts)
    assert [r.status for r in results] == [PASSED, PASSED, FAILED, FAILED, SKIPPED, SKIPPED]
    assert [label for label, _ in asked] == ["1", "2", "1", "1"]  # an empty list and none at all are not the same


# --- every verifier ------------------------------------------------------------------------

INVOICE = extracted(net="10.00", tax="2.50", total="12.50", due="2024-01-31", currency="EUR", vendor="ACME")
GARBAGE = extracted(net="x", tax="y", total="z", due="soon", currency="eur", vendor=" ")
EMPTY = extracted()

EVERY_VERIFIER = [
    Compare("tax", "<", other="total"),
    Compare("total", ">=", value=100, tolerance="0.5"),
    NotGreater("tax", "total"),
    SumEquals(["net", "tax"], "total"),
    SumEquals(["net", "discount"], "total", missing_parts="zero"),
    InRange("total", min=0, max=1000),
    Required(["vendor", "total"]),
    DateFormat("due", earliest="2024-01-01"),
    CurrencyCode("currency", allowed=["USD"]),
    LabelAllowed(context_key="currencies", field="currency"),
    LabelAllowed(context_key="customer", allowed={"acme": ["3"]}, when_missing="fail"),
    LabelAllowed(allowed=["3"]),
]
CALLS = [
    (INVOICE, {"currencies": "EUR,USD", "customer": "acme"}),
    (GARBAGE, {"currencies": "USD"}),
    (EMPTY, {}),
    (classified("3"), {"customer": "acme"}),
    (classified("4"), {"customer": "globex"}),
]


@pytest.mark.parametrize("verifier", EVERY_VERIFIER, ids=lambda v: type(v).__name__)
def test_every_check_answers_with_a_message_and_keeps_no_state(verifier: object) -> None:
    first = [verifier.check(prediction, dict(context)) for prediction, context in CALLS]  # type: ignore[attr-defined]
    for result in first:
        assert isinstance(result, CheckResult)
        assert result.status in (PASSED, FAILED, SKIPPED)
        assert result.message.strip()
    again = [verifier.check(prediction, dict(context)) for prediction, context in reversed(CALLS)]  # type: ignore[attr-defined]
    assert again[::-1] == first


def test_every_verifier_sees_all_three_outcomes_in_these_examples() -> None:
    statuses = {verifier.check(p, c).status for verifier in EVERY_VERIFIER for p, c in CALLS}  # type: ignore[attr-defined]
    assert statuses == {PASSED, FAILED, SKIPPED}


# --- the registry --------------------------------------------------------------------------

BUILT_INS: dict[str, tuple[type, dict[str, object]]] = {
    "compare": (Compare, {"field": "tax", "op": "<=", "other": "total"}),
    "not-greater": (NotGreater, {"field": "tax", "than": "total"}),
    "sum-equals": (SumEquals, {"parts": ["net", "tax"], "total": "total"}),
    "range": (InRange, {"field": "total", "min": 0}),
    "required": (Required, {"fields": ["total"]}),
    "date-format": (DateFormat, {"field": "due"}),
    "currency-code": (CurrencyCode, {"field": "currency"}),
    "label-allowed": (LabelAllowed, {"context_key": "allowed_labels"}),
}


def test_the_registry_builds_every_built_in_by_its_entry_point_name() -> None:
    registry = VerifierRegistry.discover()
    assert set(BUILT_INS) <= set(registry.names())
    for name, (cls, params) in BUILT_INS.items():
        assert registry.distribution(name).startswith("smallguard=="), name
        verifier = registry.build(name, params)
        assert type(verifier) is cls, name
        assert verifier.check(INVOICE, {"allowed_labels": "x"}).status in (PASSED, FAILED, SKIPPED)


def test_date_format_latest_today_uses_the_utc_date_when_the_check_runs() -> None:
    today = datetime.datetime.now(datetime.UTC).date()
    day = datetime.timedelta(days=1)
    check = DateFormat("issued", latest="today")
    assert check.check(extracted(issued=today.isoformat()), NO_CONTEXT).status is PASSED
    assert check.check(extracted(issued=(today - 400 * day).isoformat()), NO_CONTEXT).status is PASSED
    future = check.check(extracted(issued=(today + 2 * day).isoformat()), NO_CONTEXT)
    assert future.status is FAILED and f"is after today ({today.isoformat()})" in future.message
    with pytest.raises(ValueError, match="ISO date such as 2024-01-31 or 'today'"):
        DateFormat("issued", latest="tomorrow")
