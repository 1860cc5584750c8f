"""The invoice-extractor adapter on its own: normalisation, candidates, encode() and decode().

Most texts here are written by hand rather than drawn from generate.py, so the adapter is held to
what its docstring claims, not only to what the generator happens to print.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pycountry
import pytest

from smallguard.server.bundle.adapter import Adapter, load_adapter
from smallguard.server.bundle.bundle_file import read_bundle
from tests.models.invoice_modules import INVOICE, load

adapter = load("adapter")

ENGLISH = ("Northwind Traders Ltd\nInvoice No: INV-2024-0012\nInvoice date: March 5th, 2024\n"
           "Subtotal: £1,234.56\nVAT 20%: £246.91\nTotal: £1,481.47\n")
GERMAN = ("Rechnung Nr. RE-73643\nRechnungsdatum: 5. März 2024\nNettobetrag 1.234,56 €\n"
          "MwSt. 19 % 234,57 €\nRechnungsbetrag 1.469,13 €\n")
FRENCH = ("Facture n° F2024-527\nDate : 1 août 2024\nTotal HT 1 234,56 EUR\nTVA 20 % 246,91 EUR\n"
          "Total TTC 1 481,47 EUR\n")
SPANISH = ("Factura nº 2024/0457\nFecha: 5 de marzo de 2024\nBase imponible 1.234,56 €\nIVA 21 % 259,26 €\n"
           "Total factura 1.493,82 €\n")
NO_NUMBERS = "Thank you for your business!\nPayment terms: net thirty days.\n"


def kinds_and_values(text: str) -> list[tuple[str, str]]:
    return [(c.kind, c.value) for c in adapter.candidates(text)]


# --- amounts -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("1,234.56", "1234.56"),            # US grouping
    ("1.234,56", "1234.56"),            # European grouping
    ("1 234,56", "1234.56"),            # French grouping with a space
    ("1\u00a0234,56", "1234.56"),       # ... a no-break space
    ("1\u202f234,56", "1234.56"),       # ... a narrow no-break space
    ("1'234.56", "1234.56"),            # Swiss grouping
    ("1,2O4.S6", "1204.56"),            # OCR read O for 0 and S for 5
    ("1.234.567,89", "1234567.89"),
    ("1,234,567.89", "1234567.89"),
    ("1 234 567,89", "1234567.89"),
    ("1234.5", "1234.50"),              # one decimal digit
    ("1,5", "1.50"),
    ("1,234", "1234.00"),               # a separator before three digits groups thousands
    ("1.234", "1234.00"),
    ("1234", "1234.00"),
    ("$1,234.56", "1234.56"),           # currency symbols and codes around the number
    ("1.234,56 €", "1234.56"),
    ("EUR 1.234,56", "1234.56"),
    ("1,234.56 USD", "1234.56"),
    ("CHF 1'234.56", "1234.56"),
    ("-12.50", "-12.50"),               # signs: leading, trailing, accounting parentheses
    ("12.50-", "-12.50"),
    ("(12.50)", "-12.50"),
    ("-$12.50", "-12.50"),
    ("$-12.50", "-12.50"),              # the sign inside the currency symbol
    ("USD -12.50", "-12.50"),
    ("-12,50 €", "-12.50"),
    ("-0.00", "0.00"),                  # no negative zero
])
def test_amount_formats_normalise_to_two_decimal_strings(text: str, expected: str) -> None:
    assert adapter.normalize_amount(text) == expected


@pytest.mark.parametrize("text", [
    "", "abc", "EUR", "1,23,456.78", "12,3456.78", "1,234.567", "1.234.56", "1,234,56", "1.234,567", "1.2.3",
    "12:30",
])
def test_malformed_amounts_are_not_amounts(text: str) -> None:
    assert adapter.normalize_amount(text) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("Total due: $1,234.56", "1234.56"),
    ("Gesamtbetrag 1.234,56 €", "1234.56"),
    ("Total TTC 1 234,56 EUR", "1234.56"),
    ("Total TTC 1\u202f234,56 EUR", "1234.56"),
    ("Total CHF 1'234.56", "1234.56"),
    ("TOTAL: 1,2O4.S6", "1204.56"),
    ("Discount: -12.50", "-12.50"),
    ("Discount\n-12.50\n", "-12.50"),   # a sign at the start of a line
    ("Total 1,234.56USD", "1234.56"),
    ("EUR1.234,56", "1234.56"),
])
def test_amounts_are_found_in_text(text: str, expected: str) -> None:
    amounts = [c for c in adapter.candidates(text) if c.kind == "amount"]
    assert [c.value for c in amounts] == [expected]
    assert text[amounts[0].start:amounts[0].end] == amounts[0].raw


def test_numbers_without_two_decimals_and_percentages_are_not_amount_candidates() -> None:
    text = "Qty 12   VAT 8.875%   Ref 2024   Time 21:36   IBAN DE12 3456 7890\n"
    assert [c for c in adapter.candidates(text) if c.kind == "amount"] == []


# --- dates ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2024-03-05", "2024-03-05"),       # ISO, and year-first with other separators
    ("2024/03/05", "2024-03-05"),
    ("2024.3.5", "2024-03-05"),
    ("05/03/2024", "2024-03-05"),       # numeric dates are day first...
    ("05.03.2024", "2024-03-05"),
    ("05-03-2024", "2024-03-05"),
    ("5/3/2024", "2024-03-05"),
    ("03/05/2024", "2024-05-03"),       # ... even when a US reader means 5 March (documented)
    ("12/25/2024", "2024-12-25"),       # ... unless only month first makes a real date
    ("02/29/2024", "2024-02-29"),
    ("13/12/2024", "2024-12-13"),
    ("05/03/24", "2024-03-05"),         # two-digit years are 20xx
    ("31.12.99", "2099-12-31"),
    ("March 5, 2024", "2024-03-05"),    # English month names, long and short, month or day first
    ("March 5th, 2024", "2024-03-05"),
    ("Mar 5, 2024", "2024-03-05"),
    ("Mar. 5, 2024", "2024-03-05"),
    ("Sept. 5, 2024", "2024-09-05"),
    ("5 Mar 2024", "2024-03-05"),
    ("05-Mar-2024", "2024-03-05"),
    ("1st January 2024", "2024-01-01"),
    ("22nd Feb 2024", "2024-02-22"),
    ("3rd MAY 2024", "2024-05-03"),
    ("5. März 2024", "2024-03-05"),     # German
    ("5. Maerz 2024", "2024-03-05"),
    ("24. Dez 2024", "2024-12-24"),
    ("1 août 2024", "2024-08-01"),      # French, with and without the accent
    ("1 aout 2024", "2024-08-01"),
    ("5 février 2024", "2024-02-05"),
    ("5 de marzo de 2024", "2024-03-05"),  # Spanish
    ("5 marzo 2024", "2024-03-05"),
])
def test_date_formats_normalise_to_iso(text: str, expected: str) -> None:
    assert adapter.normalize_date(text) == expected


@pytest.mark.parametrize("text", [
    "", "31/02/2024", "29/02/2023", "13/13/2024", "00/05/2024", "2024-13-01", "2024-02-30", "5 Foo 2024",
    "March 32, 2024", "12.30",
])
def test_impossible_or_malformed_dates_are_not_dates(text: str) -> None:
    assert adapter.normalize_date(text) is None


MONTH_NAMES = {
    "en": "January February March April May June July August September October November December",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
}


@pytest.mark.parametrize("language", sorted(MONTH_NAMES))
def test_every_month_name_is_found_in_text(language: str) -> None:
    for month, name in enumerate(MONTH_NAMES[language].split(), start=1):
        expected = [("date", f"2024-{month:02d}-07")]
        for written in (f"7 {name} 2024", f"7 {name.upper()} 2024"):
            assert kinds_and_values(f"Date: {written}\n") == expected, written
        if language == "en":
            assert kinds_and_values(f"Date: {name} 7, 2024\n") == expected, name


@pytest.mark.parametrize(("text", "expected"), [
    ("Date: 05/03/24  Due: 12/25/2024\n", ["2024-05-03", "2024-12-25"]),  # the due date shows month first
    ("Date: 05/03/24  Due: 25/12/2024\n", ["2024-03-05", "2024-12-25"]),  # ... or day first
    ("Date: 05/03/2024  Due: 06/04/2024\n", ["2024-03-05", "2024-04-06"]),  # nothing settles it: day first
    ("Rechnungsdatum: 5. März 2024\n", ["2024-03-05"]),
    ("Fecha: 5 de marzo de 2024\n", ["2024-03-05"]),
    ("Issued 2024-03-05, paid 2024-04-01.\n", ["2024-03-05", "2024-04-01"]),
    ("Date: 31/02/2024\n", []),         # not a real date: no date candidate
])
def test_dates_are_found_in_text(text: str, expected: list[str]) -> None:
    assert [c.value for c in adapter.candidates(text) if c.kind == "date"] == expected


# --- currencies ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("USD", "USD"), ("usd", "USD"), (" EUR ", "EUR"), ("CHF", "CHF"), ("SEK", "SEK"),
    ("$", "USD"),                       # documented: "$" alone is USD
    ("kr", "SEK"),                      # documented: "kr" alone is SEK...
    ("kr.", "DKK"),                     # ... and "kr." DKK
    ("US$", "USD"), ("CA$", "CAD"), ("C$", "CAD"), ("A$", "AUD"), ("AU$", "AUD"), ("NZ$", "NZD"),
    ("HK$", "HKD"), ("S$", "SGD"), ("R$", "BRL"), ("€", "EUR"), ("£", "GBP"), ("¥", "JPY"), ("₹", "INR"),
    ("Rs.", "INR"), ("Rs", "INR"), ("zł", "PLN"), ("Kč", "CZK"), ("Fr.", "CHF"), ("SFr.", "CHF"),
])
def test_currency_symbols_and_codes_normalise_to_iso_codes(text: str, expected: str) -> None:
    assert adapter.normalize_currency(text) == expected


@pytest.mark.parametrize("text", ["", "XYZ", "EURO", "Dollar", "$$", "1.00"])
def test_unknown_currencies_are_none(text: str) -> None:
    assert adapter.normalize_currency(text) is None


def test_every_currency_the_adapter_can_answer_is_a_real_iso_4217_code() -> None:
    answers = set(adapter.CURRENCY_CODES) | set(adapter.CURRENCY_SYMBOLS.values())
    not_iso = sorted(code for code in answers if pycountry.currencies.get(alpha_3=code) is None)
    assert not_iso == []


@pytest.mark.parametrize(("text", "expected"), [
    ("Moms 25%: 246,91 kr.\n", ["DKK"]),
    ("Att betala: 1 234,56 kr\n", ["SEK"]),
    ("Total: $12.50\n", ["USD"]),
    ("Total: CA$12.50, US$4.00, NZ$3.00\n", ["CAD", "USD", "NZD"]),  # the longest symbol wins
    ("Amounts in CHF; Fr. 12.50\n", ["CHF", "CHF"]),
    ("Mrs Smith, Frankfurt, USDA grade\n", []),  # letters around a code or symbol: not a currency
])
def test_currencies_are_found_in_text(text: str, expected: list[str]) -> None:
    assert [c.value for c in adapter.candidates(text) if c.kind == "currency"] == expected


# --- identifiers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("Invoice No: INV-2024-0012\n", ["INV-2024-0012"]),
    ("Invoice: 2024/0457\n", ["2024/0457"]),  # not a date
    ("Invoice #12345\n", ["12345"]),
    ("Ref. INV/24/0012.\n", ["INV/24/0012"]),
    ("Rechnung Nr. RE_2024_7\n", ["RE_2024_7"]),
    ("PO AB   No 12   ABCDEF\n", []),        # no digit, or shorter than three characters
    ("Ref " + "A1" * 13 + "\n", []),         # longer than 25 characters
])
def test_identifiers(text: str, expected: list[str]) -> None:
    assert [c.value for c in adapter.candidates(text) if c.kind == "ident"] == expected


# --- candidates on whole documents ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    (ENGLISH, [("ident", "INV-2024-0012"), ("date", "2024-03-05"), ("currency", "GBP"), ("amount", "1234.56"),
               ("currency", "GBP"), ("amount", "246.91"), ("currency", "GBP"), ("amount", "1481.47")]),
    (GERMAN, [("ident", "RE-73643"), ("date", "2024-03-05"), ("amount", "1234.56"), ("currency", "EUR"),
              ("amount", "234.57"), ("currency", "EUR"), ("amount", "1469.13"), ("currency", "EUR")]),
    (FRENCH, [("ident", "F2024-527"), ("date", "2024-08-01"), ("amount", "1234.56"), ("currency", "EUR"),
              ("amount", "246.91"), ("currency", "EUR"), ("amount", "1481.47"), ("currency", "EUR")]),
    (SPANISH, [("ident", "2024/0457"), ("date", "2024-03-05"), ("amount", "1234.56"), ("currency", "EUR"),
               ("amount", "259.26"), ("currency", "EUR"), ("amount", "1493.82"), ("currency", "EUR")]),
], ids=["en", "de", "fr", "es"])
def test_candidates_of_handwritten_invoices(text: str, expected: list[tuple[str, str]]) -> None:
    found = adapter.candidates(text)
    assert [(c.kind, c.value) for c in found] == expected
    for before, after in itertools.pairwise(found):
        assert before.end <= after.start, f"{before} overlaps {after}"
    assert all(text[c.start:c.end] == c.raw for c in found)


# --- encode --------------------------------------------------------------------------------------

HANDWRITTEN = (ENGLISH, GERMAN, FRENCH, SPANISH, NO_NUMBERS, "")


@pytest.mark.parametrize("text", HANDWRITTEN, ids=["en", "de", "fr", "es", "no-numbers", "empty"])
def test_encode_gives_one_float32_row_per_candidate(text: str) -> None:
    feeds = adapter.encode(text)
    assert set(feeds) == {adapter.INPUT_NAME}
    x = feeds[adapter.INPUT_NAME]
    found = adapter.candidates(text)
    assert x.dtype == np.float32
    assert x.shape == (len(found), adapter.FEATURE_DIM)
    assert adapter.HASH_DIM + len(adapter.DENSE) == adapter.FEATURE_DIM
    hashed, dense = x[:, :adapter.HASH_DIM], x[:, adapter.HASH_DIM:]
    assert np.all(hashed >= 0) and np.array_equal(hashed, np.round(hashed)), "hashed words are counts"
    assert np.all((dense >= 0) & (dense <= 1)), "the dense features are scaled to [0, 1]"
    kind_columns = [adapter.DENSE.index(f"kind_{kind}") for kind in adapter.KINDS]
    for row, candidate in zip(dense, found, strict=True):
        one_hot = [adapter.KINDS[k] for k, column in enumerate(kind_columns) if row[column] == 1.0]
        assert one_hot == [candidate.kind]
        assert row[kind_columns].sum() == 1.0


def test_texts_without_numbers_have_no_candidates() -> None:
    assert adapter.candidates("") == []
    assert adapter.candidates(NO_NUMBERS) == []


def test_encode_is_deterministic_within_and_across_processes() -> None:
    """The features feed a trained model: they must not move with dict order or Python's hash seed."""
    digest = _digest(ENGLISH + GERMAN + FRENCH)
    assert _digest(ENGLISH + GERMAN + FRENCH) == digest
    program = (
        "import hashlib, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('invoice_adapter', {str(INVOICE / 'adapter.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        "x = module.encode(sys.stdin.read())[module.INPUT_NAME]\n"
        "print(hashlib.sha256(str(x.shape).encode() + x.tobytes()).hexdigest())\n"
    )
    for hash_seed in ("0", "4242"):
        result = subprocess.run([sys.executable, "-c", program], input=ENGLISH + GERMAN + FRENCH, text=True,
                                capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert result.stdout.strip() == digest, f"PYTHONHASHSEED={hash_seed}"


def _digest(text: str) -> str:
    x = adapter.encode(text)[adapter.INPUT_NAME]
    return hashlib.sha256(str(x.shape).encode() + x.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def session() -> Iterator[ort.InferenceSession]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the skl2onnx graph's harmless shape-merge warning
    yield ort.InferenceSession(str(INVOICE / "model.onnx"), options, providers=["CPUExecutionProvider"])


def run_model(session: ort.InferenceSession, text: str) -> dict[str, np.ndarray]:
    (probabilities,) = session.run([adapter.OUTPUT_NAME], adapter.encode(text))
    return {adapter.OUTPUT_NAME: probabilities}


def test_encode_output_is_what_model_onnx_takes(session: ort.InferenceSession) -> None:
    (declared,) = session.get_inputs()
    assert (declared.name, declared.type, declared.shape[1:]) == (adapter.INPUT_NAME, "tensor(float)",
                                                                   [adapter.FEATURE_DIM])
    outputs = {output.name: output for output in session.get_outputs()}
    assert outputs[adapter.OUTPUT_NAME].shape[1:] == [len(adapter.FIELDS)]
    for text in HANDWRITTEN:
        probabilities = run_model(session, text)[adapter.OUTPUT_NAME]
        assert probabilities.shape == (len(adapter.candidates(text)), len(adapter.FIELDS))


# --- decode --------------------------------------------------------------------------------------

def scores(text: str, by_value: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
    """Model outputs for ``text``: ``by_value[field][candidate value]`` where given, else 0."""
    found = adapter.candidates(text)
    p = np.zeros((len(found), len(adapter.FIELDS)), dtype=np.float32)
    for k, name in enumerate(adapter.FIELDS):
        for i, candidate in enumerate(found):
            p[i, k] = by_value.get(name, {}).get(candidate.value, 0.0)
    return {adapter.OUTPUT_NAME: p}


def test_decode_takes_the_most_probable_candidate_of_the_fields_kind() -> None:
    outputs = scores(ENGLISH, {
        "invoice_number": {"INV-2024-0012": 0.3, "GBP": 0.9},         # a currency cannot be the number
        "date": {"2024-03-05": 0.8, "1481.47": 0.95},
        "currency": {"GBP": 0.4},
        "subtotal": {"1234.56": 0.6, "1481.47": 0.2},
        "tax": {"246.91": 0.55, "1234.56": 0.25, "INV-2024-0012": 0.99},
        "total": {"1481.47": 0.7, "1234.56": 0.6, "2024-03-05": 0.99},  # a date cannot be the total
    })
    decoded = adapter.decode(ENGLISH, outputs)
    assert list(decoded) == list(adapter.FIELDS)
    assert decoded == {
        "invoice_number": ("INV-2024-0012", pytest.approx(0.3)),
        "date": ("2024-03-05", pytest.approx(0.8)),
        "currency": ("GBP", pytest.approx(0.4)),
        "subtotal": ("1234.56", pytest.approx(0.6)),
        "tax": ("246.91", pytest.approx(0.55)),
        "total": ("1481.47", pytest.approx(0.7)),
    }
    assert all(type(score) is float for _, score in decoded.values())


def test_decode_returns_normalised_values_not_the_printed_text() -> None:
    decoded = adapter.decode(GERMAN, scores(GERMAN, {"total": {"1469.13": 0.9}, "date": {"2024-03-05": 0.9}}))
    assert decoded["total"][0] == "1469.13"
    assert decoded["date"][0] == "2024-03-05"
    assert decoded["currency"][0] == "EUR"


def test_decode_gives_none_and_zero_for_a_field_with_no_candidate_of_its_kind() -> None:
    text = "Invoice No: INV-7\nTotal: 12.50 EUR\n"  # no date
    found = adapter.candidates(text)
    outputs = {adapter.OUTPUT_NAME: np.full((len(found), len(adapter.FIELDS)), 0.9, dtype=np.float32)}
    decoded = adapter.decode(text, outputs)
    assert decoded["date"] == (None, 0.0)
    assert decoded["invoice_number"] == ("INV-7", pytest.approx(0.9))
    assert decoded["total"] == ("12.50", pytest.approx(0.9))


@pytest.mark.parametrize("text", ["", NO_NUMBERS], ids=["empty", "no-numbers"])
def test_decode_of_a_text_without_candidates_is_all_none(session: ort.InferenceSession, text: str) -> None:
    decoded = adapter.decode(text, run_model(session, text))
    assert decoded == {name: (None, 0.0) for name in adapter.FIELDS}


def test_decode_keeps_scores_in_unit_interval() -> None:
    outputs = scores(ENGLISH, {"subtotal": {"1234.56": 1.5}, "tax": {"246.91": -0.2, "1234.56": -0.7,
                                                                      "1481.47": -0.9}})
    decoded = adapter.decode(ENGLISH, outputs)
    assert decoded["subtotal"] == ("1234.56", 1.0)
    assert decoded["tax"] == ("246.91", 0.0)  # still the highest, clipped at 0
    assert all(0.0 <= score <= 1.0 for _, score in decoded.values())


def test_decode_refuses_outputs_that_do_not_fit_the_texts_candidates() -> None:
    wrong = {adapter.OUTPUT_NAME: np.zeros((3, len(adapter.FIELDS)), dtype=np.float32)}
    with pytest.raises(ValueError, match=r"probabilities has shape \(3, 6\); expected \(8, 6\)"):
        adapter.decode(ENGLISH, wrong)


def test_model_scores_of_handwritten_invoices_are_probabilities(session: ort.InferenceSession) -> None:
    for text in (ENGLISH, GERMAN, FRENCH, SPANISH):
        decoded = adapter.decode(text, run_model(session, text))
        for name, (value, score) in decoded.items():
            assert value is not None, name  # every field has candidates of its kind in these texts
            assert 0.0 <= score <= 1.0, name


# --- the server's contract -----------------------------------------------------------------------

def test_the_bundle_adapter_passes_the_servers_contract_check(session: ort.InferenceSession) -> None:
    spec = read_bundle(INVOICE)
    assert spec.adapter_path == INVOICE / "adapter.py"
    loaded = load_adapter(spec.adapter_path, spec.fields)
    assert isinstance(loaded, Adapter)
    assert loaded.fields == tuple(adapter.FIELDS)
    feeds = loaded.encode(ENGLISH)
    (probabilities,) = session.run([adapter.OUTPUT_NAME], feeds)
    decoded = loaded.decode(ENGLISH, {adapter.OUTPUT_NAME: probabilities})  # raises on any contract breach
    assert set(decoded) == set(spec.fields)
    assert loaded.decode("", {adapter.OUTPUT_NAME: np.zeros((0, len(spec.fields)), np.float32)}) == {
        name: (None, 0.0) for name in spec.fields}


@pytest.mark.parametrize("unit", ["$ ", "(1.00)", "12.00 ", "INV-1 "])
def test_hostile_text_costs_linear_work(unit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line of thousands of candidates once cost quadratic time (4,000 characters of "$ " took seconds): each
    candidate's context scanned its whole line. Counted in words normalised, not timed: doubling the text may
    no more than double the work."""
    calls = 0
    word = adapter._word

    def counting(token: str) -> str:
        nonlocal calls
        calls += 1
        return word(token)

    monkeypatch.setattr(adapter, "_word", counting)
    work = []
    for repeat in (300, 600):
        calls = 0
        adapter._candidates.cache_clear()
        adapter.encode(unit * repeat)
        work.append(calls)
    assert work[1] <= 2.1 * work[0], work
