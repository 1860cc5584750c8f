"""The invoice-extractor bundle's adapter: text to model feeds, model outputs to typed fields.

Pure numpy and standard library, so serving needs neither scikit-learn nor the generator.

How the extractor works (candidate ranking):

1. ``candidates(text)`` finds everything that could be a field value with hand-written
   patterns: every amount (``1,234.56``, ``1.234,56``, ``1 234,56``, ``1'234.56``, OCR-damaged
   ``1,2O4.S6``), every date (numeric, ISO, English/German/French/Spanish month names), every
   currency code or symbol, and every identifier-like token (``INV-2024-0012``, ``2024/0457``).
2. ``encode(text)`` turns each candidate into one feature row: hashed words around it (the
   word just left of it, the rest of its line to the left, the word to its right, the column
   header above it, the line above when it stands alone) plus a few numbers (position, its size
   among the document's amounts, token shape). Feed ``features``: float32 ``[candidates, FEATURE_DIM]`` (536).
3. The ONNX model (a small multi-label MLP) scores every row for every field:
   ``probabilities`` float32 ``[candidates, 6]``, columns in ``FIELDS`` order, each an
   independent probability that this candidate is that field's value.
4. ``decode(text, outputs)`` recomputes the same candidates and, per field, takes the candidate
   of the right kind with the highest probability; its normalised value is the answer and its
   probability the raw confidence. No candidate of the right kind: ``(None, 0.0)``.

The model never sees arithmetic between amounts (whether subtotal + tax == total): that is what
the bundle's verifiers check, so they have something to catch.

Normalisation choices (documented limits): ``a/b/yyyy`` and ``a.b.yyyy`` are read day first
unless only month first makes a real date, or another numeric date of the same document does
(dates in one document share a format: with ``12/25/2024`` beside it, ``03/05/2024`` is 5 March;
alone, it is read as 3 May);
two-digit years are 20xx; ``$`` alone is USD, ``kr`` alone SEK and ``kr.`` DKK.
"""

from __future__ import annotations

import bisect
import functools
import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

import numpy as np

FIELDS: tuple[str, ...] = ("invoice_number", "date", "currency", "subtotal", "tax", "total")
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
HASH_DIM = 512
KINDS: tuple[str, ...] = ("amount", "date", "currency", "ident")
FIELD_KIND = {"invoice_number": "ident", "date": "date", "currency": "currency",
              "subtotal": "amount", "tax": "amount", "total": "amount"}

CURRENCY_CODES = frozenset({
    "USD", "EUR", "GBP", "CHF", "CAD", "AUD", "NZD", "SGD", "HKD", "INR", "SEK", "NOK", "DKK", "PLN", "CZK",
    "HUF", "JPY", "CNY", "ZAR", "BRL", "MXN", "TRY", "RON", "ILS", "AED",
})
# Longest first, so "CA$" wins over "$" at the same place.
CURRENCY_SYMBOLS: dict[str, str] = {
    "US$": "USD", "CA$": "CAD", "AU$": "AUD", "NZ$": "NZD", "HK$": "HKD", "SFr.": "CHF", "Rs.": "INR",
    "C$": "CAD", "A$": "AUD", "S$": "SGD", "R$": "BRL", "Fr.": "CHF", "kr.": "DKK", "Rs": "INR", "kr": "SEK",
    "zł": "PLN", "Kč": "CZK", "$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR",
}
MONTHS: dict[str, int] = {}
for _names in (
    ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
     "december"),
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ("januar", "februar", "märz", "april", "mai", "juni", "juli", "august", "september", "oktober", "november",
     "dezember"),
    ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre",
     "décembre"),
    ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre",
     "diciembre"),
):
    for _number, _name in enumerate(_names, start=1):
        MONTHS[_name] = _number
MONTHS.update({"sept": 9, "maerz": 3, "marz": 3, "fevrier": 2, "aout": 8, "decembre": 12, "mrz": 3, "okt": 10,
               "dez": 12})

_MONTH = "|".join(sorted((re.escape(m) for m in MONTHS), key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th)?"
DATE_RE = re.compile(
    rf"(?<![\w.,/-])(?:"
    rf"\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}"
    rf"|\d{{1,2}}[-/.]\d{{1,2}}[-/.](?:\d{{4}}|\d{{2}})"
    rf"|\d{{1,2}}{_ORD}\.?[ -]?(?:de )?(?:{_MONTH})\.?,?[ -](?:de )?\d{{4}}"
    rf"|(?:{_MONTH})\.? \d{{1,2}}{_ORD},? \d{{4}}"
    rf")(?![\w/]|[.,-]\d)",
    re.IGNORECASE,
)
_D = "[0-9OolIS]"  # a digit, or a letter OCR often reads for one
AMOUNT_RE = re.compile(
    rf"(?<![0-9.,'])[0-9](?:{_D}{{0,2}}(?:[,.'\u00a0\u202f ]{_D}{{3}})+|{_D}*)[.,]{_D}{{2}}(?![0-9]|[.,'][0-9])"
)
_CODES = "|".join(sorted(CURRENCY_CODES))
_SYMBOLS = "|".join(re.escape(s) for s in sorted(CURRENCY_SYMBOLS, key=len, reverse=True))
CURRENCY_RE = re.compile(rf"(?<![A-Za-z])(?:{_CODES}|{_SYMBOLS})(?![A-Za-z])")
IDENT_RE = re.compile(r"(?<![A-Za-z0-9/_\-])[A-Za-z0-9](?:[A-Za-z0-9/_\-]*[A-Za-z0-9])?")
WORD_RE = re.compile(r"[^\W_]+|[#%@=$€£¥₹]")
OCR_DIGITS = str.maketrans({"O": "0", "o": "0", "l": "1", "I": "1", "|": "1", "S": "5"})
OCR_LETTERS = str.maketrans({"0": "o", "1": "l", "5": "s"})
_AFFIX = re.compile(rf"^(?:{_CODES}|{_SYMBOLS})\s*|\s*(?:{_CODES}|{_SYMBOLS})$")


def normalize_amount(text: str) -> str | None:
    """``"1.234,56 €"``, ``"$1,234.56"``, ``"1 234,56"``, ``"1,2O4.S6"`` -> ``"1234.56"``; None if not an amount.

    The decimal mark is the last ``.`` or ``,`` followed by one or two digits; any other
    separator must group thousands (three digits), so ``1,234`` is 1234.00, not 1.23.
    """
    s = text.strip()
    negative = False
    for _ in range(3):  # the sign or parentheses may stand outside or inside a currency code or symbol
        if len(s) > 1 and s[0] == "(" and s[-1] == ")":
            negative, s = True, s[1:-1]
        s = s.strip(" \u00a0\u202f")
        if s[:1] == "-" or s[-1:] == "-":
            negative = True
        s = _AFFIX.sub("", s.strip("+- \u00a0\u202f"))
    s = s.translate(OCR_DIGITS)
    if not re.fullmatch(r"[0-9][0-9.,'\u00a0\u202f ]*", s):
        return None
    match = re.fullmatch(r"(.*?)([.,])([0-9]{1,2})", s)
    whole, frac = (match.group(1), match.group(3)) if match else (s, "0")
    separators = set(re.findall(r"[.,'\u00a0\u202f ]", whole))
    if len(separators) > 1 or (match and match.group(2) in separators):
        return None
    groups = re.split(r"[.,'\u00a0\u202f ]", whole)
    if len(groups) > 1 and (not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:])):
        return None
    try:
        value = Decimal(f"{''.join(groups)}.{frac}")
    except InvalidOperation:
        return None
    return f"{-value if negative and value else value:.2f}"


_NUMERIC_DATE = re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](?:\d{4}|\d{2})")


def month_first(dates: Sequence[str]) -> bool:
    """Do a document's numeric dates show month first (some ``a/b/yyyy`` with b > 12, and none with a > 12)?"""
    orders = set()
    for text in dates:
        if m := _NUMERIC_DATE.fullmatch(text.strip()):
            first, second = int(m[1]), int(m[2])
            if first <= 12 < second:
                orders.add("month")
            elif second <= 12 < first:
                orders.add("day")
    return orders == {"month"}


def normalize_date(text: str, month_first: bool = False) -> str | None:
    """``"05/03/2024"``, ``"March 5th, 2024"``, ``"5. März 2024"`` -> ``"2024-03-05"``; None if no real date.
    ``month_first``: read an ambiguous ``a/b/yyyy`` as month first (the document's other dates say so)."""
    s = re.sub(r"(\d)(?:st|nd|rd|th)\b", r"\1", text.strip().lower())
    s = re.sub(r"\bde\b", " ", s)
    found: tuple[int, int, int] | None = None
    if m := re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", s):
        found = int(m[1]), int(m[2]), int(m[3])
    elif m := re.fullmatch(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})", s):
        first, second, year = int(m[1]), int(m[2]), int(m[3])
        year += 2000 if len(m[3]) == 2 else 0
        day, month = (second, first) if first <= 12 < second or (month_first and second <= 12) else (first, second)
        found = year, month, day
    elif m := re.fullmatch(r"(\d{1,2})\.?[\s-]*([^\W\d_]+)\.?,?[\s-]+(\d{4})", s):
        if m[2] in MONTHS:
            found = int(m[3]), MONTHS[m[2]], int(m[1])
    elif (m := re.fullmatch(r"([^\W\d_]+)\.?\s+(\d{1,2}),?\s+(\d{4})", s)) and m[1] in MONTHS:
        found = int(m[3]), MONTHS[m[1]], int(m[2])
    if found is None:
        return None
    try:
        return date(*found).isoformat()
    except ValueError:
        return None


def normalize_currency(text: str) -> str | None:
    """``"€"`` -> ``"EUR"``, ``"CA$"`` -> ``"CAD"``, ``"usd"`` -> ``"USD"``; None if not a known code or symbol."""
    s = text.strip()
    if s.upper() in CURRENCY_CODES:
        return s.upper()
    return CURRENCY_SYMBOLS.get(s)


@dataclass(frozen=True)
class Candidate:
    """A span of the text that could be a field value, with its normalised value."""

    kind: str
    start: int
    end: int
    raw: str
    value: str


def candidates(text: str) -> list[Candidate]:
    """Every date, amount, currency and identifier in ``text``, in text order; spans never overlap."""
    return list(_candidates(text))


# encode() and decode() of one request read the same text: its candidates (about a quarter of the
# extractor's time) are found once. A few entries cover the requests in flight on every thread.
@functools.lru_cache(maxsize=64)
def _candidates(text: str) -> tuple[Candidate, ...]:
    found: list[Candidate] = []
    taken_starts: list[int] = []  # the spans taken so far, sorted and disjoint: each check is a bisection
    taken_ends: list[int] = []

    def free(start: int, end: int) -> bool:
        i = bisect.bisect_right(taken_starts, start)
        return (i == 0 or taken_ends[i - 1] <= start) and (i == len(taken_starts) or taken_starts[i] >= end)

    def add(kind: str, start: int, end: int, value: str | None) -> None:
        if value is not None and free(start, end):
            found.append(Candidate(kind, start, end, text[start:end], value))
            i = bisect.bisect_right(taken_starts, start)
            taken_starts.insert(i, start)
            taken_ends.insert(i, end)

    dates = list(DATE_RE.finditer(text))
    order = month_first([m.group() for m in dates])
    for m in dates:
        add("date", m.start(), m.end(), normalize_date(m.group(), order))
    for m in AMOUNT_RE.finditer(text):
        start = m.start()
        if start >= 1 and text[start - 1] == "-" and (start == 1 or text[start - 2] in " \t\n:=("):
            start -= 1  # a sign written against the number
        add("amount", start, m.end(), normalize_amount(text[start:m.end()]))
    for m in CURRENCY_RE.finditer(text):
        add("currency", m.start(), m.end(), normalize_currency(m.group()))
    for m in IDENT_RE.finditer(text):
        token = m.group()
        if 3 <= len(token) <= 25 and any(c.isdigit() for c in token):
            add("ident", m.start(), m.end(), token)
    return tuple(sorted(found, key=lambda c: c.start))


def _word(token: str) -> str:
    """A context word, with OCR digit-for-letter swaps undone; numbers collapse to ``<n>``."""
    lowered = token.lower()
    if sum(c.isalpha() for c in lowered) >= 2:
        lowered = lowered.translate(OCR_LETTERS)
    return "<n>" if any(c.isdigit() for c in lowered) else lowered


def _shape(token: str) -> str:
    shape = re.sub(r"[A-Za-z]+", "A", re.sub(r"[0-9]+", "9", token))
    return shape[:12]


def _bucket(feature: str) -> int:
    return zlib.crc32(feature.encode("utf-8")) % HASH_DIM


DENSE: tuple[str, ...] = (
    *(f"kind_{k}" for k in KINDS), "line_pos", "col_pos", "last_on_line", "alone_on_line", "amounts_on_line",
    "amount_ratio_to_max", "amount_rank", "amount_is_max", "amount_negative", "amount_percent", "amount_repeats",
    "amount_log", "amount_order", "date_chrono_rank", "date_order", "ident_letters", "ident_length",
    "ident_digit_share", "ident_separator", "currency_is_code",
)
FEATURE_DIM = HASH_DIM + len(DENSE)


_DIGIT_RE = re.compile(r"\d")


class _Line:
    """One line's words, found once: the per-candidate context below is then a bisection, not a scan of the
    line, so a long line of many candidates costs linear time (a line of 2,000 "$" took seconds)."""

    __slots__ = ("_text_after", "_words", "ends", "last_digit", "starts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        spans = [m.span() for m in WORD_RE.finditer(text)]
        self.starts = [a for a, _ in spans]
        self.ends = [b for _, b in spans]
        self.last_digit = -1
        for m in _DIGIT_RE.finditer(text):
            self.last_digit = m.start()
        self._words: list[str] | None = None
        self._text_after: list[bool] | None = None

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = [_word(self.text[a:b]) for a, b in zip(self.starts, self.ends, strict=True)]
        return self._words

    def left(self, col: int, count: int) -> tuple[list[str], bool]:
        """The last ``count`` words of ``text[:col]`` (a word cut by ``col`` counts as its part before it), and
        whether there is any."""
        k = bisect.bisect_right(self.ends, col)
        cut = [_word(self.text[self.starts[k]:col])] if k < len(self.starts) and self.starts[k] < col else []
        words = self.words[max(0, k - count):k] + cut
        return words[-count:], bool(words)

    def right(self, end_col: int) -> tuple[str | None, bool]:
        """The first word of ``text[end_col:]`` (None if none), and whether any of its words is text (starts with
        a letter or digit and is not a number)."""
        j = bisect.bisect_right(self.ends, end_col)
        if j == len(self.starts):
            return None, False
        after = self.text_after
        if self.starts[j] < end_col:
            first = _word(self.text[end_col:self.ends[j]])
            return first, _is_text(first) or (j + 1 < len(after) and after[j + 1])
        return self.words[j], after[j]

    def overlapping(self, col: int, end_col: int, count: int) -> list[str]:
        """Up to ``count`` words with a letter that overlap columns ``col - 2 .. end_col + 2``, in order."""
        hits = []
        for k in range(bisect.bisect_right(self.ends, col - 2), len(self.starts)):
            if self.starts[k] >= end_col + 2 or len(hits) == count:
                break
            if any(ch.isalpha() for ch in self.text[self.starts[k]:self.ends[k]]):
                hits.append(self.words[k])
        return hits

    @property
    def text_after(self) -> list[bool]:
        if self._text_after is None:
            flags, seen = [], False
            for word in reversed(self.words):
                seen = seen or _is_text(word)
                flags.append(seen)
            self._text_after = flags[::-1]
        return self._text_after


def _is_text(word: str) -> bool:
    return word[0].isalnum() and word != "<n>"


def _rows(text: str, cands: Sequence[Candidate]) -> np.ndarray:
    """One feature row per candidate: hashed context words, then the DENSE numbers."""
    x = np.zeros((len(cands), FEATURE_DIM), dtype=np.float32)
    if not cands:
        return x
    lines = text.split("\n")
    parsed: dict[int, _Line] = {}

    def line_at(index: int) -> _Line:
        found = parsed.get(index)
        if found is None:
            found = parsed[index] = _Line(lines[index])
        return found

    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    n_lines = max(1, sum(1 for line in lines if line.strip()) - 1)
    line_of = [bisect.bisect_right(starts, c.start) - 1 for c in cands]
    nonblank_before = np.cumsum([bool(line.strip()) for line in lines])
    amounts = [(i, Decimal(c.value)) for i, c in enumerate(cands) if c.kind == "amount"]
    values = sorted({abs(v) for _, v in amounts}, reverse=True)
    value_rank = {v: rank for rank, v in enumerate(values)}
    repeats = Counter(v for _, v in amounts)
    amount_order = {i: order for order, (i, _) in enumerate(amounts)}
    biggest = values[0] if values and values[0] else Decimal(1)
    dates = sorted({c.value for c in cands if c.kind == "date"})
    date_rank = {d: rank for rank, d in enumerate(dates)}
    date_seen: list[str] = []
    dense = {name: HASH_DIM + k for k, name in enumerate(DENSE)}
    per_line: dict[int, int] = {}
    for i, c in enumerate(cands):
        if c.kind == "amount":
            per_line[line_of[i]] = per_line.get(line_of[i], 0) + 1

    for i, c in enumerate(cands):
        row = x[i]
        li = line_of[i]
        here, col = line_at(li), c.start - starts[li]
        line, end_col = here.text, c.end - starts[li]
        left, any_left = here.left(col, 4)
        first_right, text_right = here.right(end_col)
        words = [f"L:{w}" for w in left]
        if any_left:
            words.append(f"L1:{left[-1]}")
        if first_right is not None:
            words.append(f"R1:{first_right}")
        words += [f"A:{w}" for w in _above(lines, line_at, li, col, end_col)]
        if not any_left:
            prev = next((j for j in range(li - 1, max(-1, li - 3), -1) if lines[j].strip()), None)
            if prev is not None:
                words += [f"P:{w}" for w in line_at(prev).words[-4:]]
        if c.kind == "ident":
            words.append(f"S:{_shape(c.raw)}")
        elif c.kind == "currency":
            words.append(f"T:{c.raw}")
        for w in words:
            row[_bucket(w)] += 1.0

        row[dense[f"kind_{c.kind}"]] = 1.0
        row[dense["line_pos"]] = (nonblank_before[li] - 1) / n_lines
        row[dense["col_pos"]] = min(col / 80.0, 1.0)
        row[dense["last_on_line"]] = float(not text_right and here.last_digit < end_col)
        row[dense["alone_on_line"]] = float(not any_left)
        row[dense["amounts_on_line"]] = min(per_line.get(li, 0), 4) / 4.0
        if c.kind == "amount":
            v = Decimal(c.value)
            row[dense["amount_ratio_to_max"]] = float(abs(v) / biggest)
            row[dense["amount_rank"]] = value_rank[abs(v)] / max(1, len(values) - 1)
            row[dense["amount_is_max"]] = float(abs(v) == values[0])
            row[dense["amount_negative"]] = float(v < 0)
            row[dense["amount_percent"]] = float(line[end_col:end_col + 2].strip().startswith("%"))
            row[dense["amount_repeats"]] = min(repeats[v] - 1, 3) / 3.0
            row[dense["amount_log"]] = min(np.log10(float(abs(v)) + 1.0) / 6.0, 1.0)
            row[dense["amount_order"]] = amount_order[i] / max(1, len(amounts) - 1)
        elif c.kind == "date":
            row[dense["date_chrono_rank"]] = date_rank[c.value] / max(1, len(dates) - 1)
            row[dense["date_order"]] = min(len(date_seen), 3) / 3.0
            date_seen.append(c.value)
        elif c.kind == "ident":
            row[dense["ident_letters"]] = float(any(ch.isalpha() for ch in c.raw))
            row[dense["ident_length"]] = min(len(c.raw), 20) / 20.0
            row[dense["ident_digit_share"]] = sum(ch.isdigit() for ch in c.raw) / len(c.raw)
            row[dense["ident_separator"]] = float(any(ch in "-/_" for ch in c.raw))
        else:
            row[dense["currency_is_code"]] = float(c.raw.upper() in CURRENCY_CODES)
    return x


def _above(lines: list[str], line_at: Callable[[int], _Line], li: int, col: int, end_col: int) -> list[str]:
    """Words of the nearest line above that has words over this column (a table or grid header)."""
    for j in range(li - 1, max(-1, li - 13), -1):
        if not lines[j].strip():
            return []
        hits = line_at(j).overlapping(col, end_col, 3)
        if hits:
            return hits
    return []


def encode(text: str) -> dict[str, np.ndarray]:
    """The model's feeds for one document: ``features`` float32 ``[candidates, FEATURE_DIM]`` (may be 0 rows)."""
    return {INPUT_NAME: _rows(text, _candidates(text))}


def decode(text: str, outputs: dict[str, np.ndarray]) -> dict[str, tuple[str | None, float]]:
    """Per field, the best candidate's normalised value and its probability; ``(None, 0.0)`` if none fits."""
    cands = _candidates(text)
    scores = np.asarray(outputs[OUTPUT_NAME], dtype=np.float64)
    if scores.shape != (len(cands), len(FIELDS)):
        raise ValueError(f"{OUTPUT_NAME} has shape {scores.shape}; expected ({len(cands)}, {len(FIELDS)}) "
                         "for this text's candidates")
    result: dict[str, tuple[str | None, float]] = {}
    for k, name in enumerate(FIELDS):
        allowed = [i for i, c in enumerate(cands) if c.kind == FIELD_KIND[name]]
        if not allowed:
            result[name] = (None, 0.0)
            continue
        best = max(allowed, key=lambda i: scores[i, k])
        result[name] = (cands[best].value, float(np.clip(scores[best, k], 0.0, 1.0)))
    return result
