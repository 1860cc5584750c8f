"""The built-in verifiers: the business rules most bundles need.

They are registered in ``pyproject.toml`` under group ``smallguard.verifiers`` exactly as a
third-party plugin would be, so operators and tests reach them the same way.

Values are read with ``Prediction.value(name)``: an extracted field, or the classifier's
label under ``"label"``. Extracted values are strings, so numbers are parsed as ``Decimal``:
money compares exactly (``0.10 + 0.20 == 0.30``) and a tolerance means what it says.
A field the model did not find makes a check SKIPPED, not FAILED: presence is the job of
``required``, and one missing field should produce one reason, not one per rule. A value
that is present but not a number (or not a date) FAILS: the model produced garbage.

Every constructor validates its params and raises ``ValueError`` naming the parameter, so
a bundle with a mistake is refused at start-up, not at the first request.
"""

from __future__ import annotations

import functools
import heapq
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

import pycountry

from smallguard.verifiers.verifier_types import CheckResult, Prediction

__all__ = [
    "Compare",
    "CurrencyCode",
    "DateFormat",
    "InRange",
    "LabelAllowed",
    "NotGreater",
    "Required",
    "SumEquals",
]

Number = int | float | str

# Each operator, with the tolerance applied on the side that makes the check more lenient.
_OPERATORS: dict[str, Callable[[Decimal, Decimal, Decimal], bool]] = {
    "<": lambda a, b, tol: a < b + tol,
    "<=": lambda a, b, tol: a <= b + tol,
    ">": lambda a, b, tol: a > b - tol,
    ">=": lambda a, b, tol: a >= b - tol,
    "==": lambda a, b, tol: abs(a - b) <= tol,
    "!=": lambda a, b, tol: abs(a - b) > tol,
}
# DateFormat's latest: the date when the check runs.
TODAY = "today"
ISO_4217 = frozenset(currency.alpha_3 for currency in pycountry.currencies)  # the currency codes there are
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")


class _Unusable(Exception):
    """A value cannot be checked; carries the CheckResult (skipped or failed) that says why."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.message)
        self.result = result


# --- params ------------------------------------------------------------------------------


def _param_name(value: object, param: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{param} must be a non-empty field name, got {value!r}")
    return value


def _param_names(value: object, param: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{param} must be a non-empty list of field names, got {value!r}")
    return tuple(_param_name(item, f"each of {param}") for item in value)


def _param_number(value: object, param: str) -> Decimal:
    """A number from YAML (int, float or string) as an exact Decimal; floats via their shortest repr."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{param} must be a number, got {value!r}")
    parsed = parse_number(str(value))
    if parsed is None:
        raise ValueError(f"{param} must be a finite number, got {value!r}")
    return parsed


def _param_tolerance(value: object) -> Decimal:
    tolerance = _param_number(value, "tolerance")
    if tolerance < 0:
        raise ValueError(f"tolerance must be zero or positive, got {value!r}")
    return tolerance


def _param_choice(value: object, param: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{param} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return str(value)


# --- reading a prediction ------------------------------------------------------------------


def parse_number(text: str) -> Decimal | None:
    """``"1234.5"``, ``"-3"``, ``"1e3"`` or ``"1,234.50"`` (comma thousands groups); None otherwise."""
    text = text.strip()
    if not text.isascii() or "_" in text:  # Decimal would take "1_000" and non-ASCII digits
        return None
    if _GROUPED.fullmatch(text):
        text = text.replace(",", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _present(prediction: Prediction, name: str) -> str:
    value = prediction.value(name)
    if value is None or not value.strip():
        raise _Unusable(CheckResult.skipped(f"{name} is missing"))
    return value


def _number(prediction: Prediction, name: str) -> Decimal:
    value = _present(prediction, name)
    number = parse_number(value)
    if number is None:
        raise _Unusable(CheckResult.failed(f"{name} is {value!r}, which is not a number"))
    return number


def _checked(check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except _Unusable as unusable:
        return unusable.result


# --- the verifiers -------------------------------------------------------------------------


class Compare:
    """``field op other`` (another field) or ``field op value`` (a constant), within ``tolerance``.

    ``op`` is one of ``<  <=  >  >=  ==  !=``. The tolerance is the rounding slack of money:
    it widens what passes for the first five, and for ``!=`` values within it count as equal.
    """

    inline = True  # pure and fast: runs on the request's thread

    def __init__(
        self, field: str, op: str, other: str | None = None, value: Number | None = None, tolerance: Number = 0
    ) -> None:
        self.field = _param_name(field, "field")
        self.op = _param_choice(op, "op", list(_OPERATORS))
        if (other is None) == (value is None):
            raise ValueError("give exactly one of other (a field name) or value (a constant)")
        self.other = None if other is None else _param_name(other, "other")
        self.value = None if value is None else _param_number(value, "value")
        self.tolerance = _param_tolerance(tolerance)

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        return _checked(lambda: self._check(prediction))

    def _check(self, prediction: Prediction) -> CheckResult:
        left = _number(prediction, self.field)
        if self.other is None:
            right, right_name = self.value or Decimal(0), "the limit"
        else:
            right, right_name = _number(prediction, self.other), self.other
        within = f" (tolerance {self.tolerance})" if self.tolerance else ""
        statement = f"{self.field} {left} {self.op} {right_name} {right}{within}"
        if _OPERATORS[self.op](left, right, self.tolerance):
            return CheckResult.passed(statement)
        return CheckResult.failed(f"expected {statement}, which does not hold")


class NotGreater(Compare):
    """``field <= than`` within ``tolerance``: tax must not exceed the total."""

    def __init__(self, field: str, than: str, tolerance: Number = 0) -> None:
        super().__init__(field, "<=", other=_param_name(than, "than"), tolerance=tolerance)


class SumEquals:
    """The ``parts`` add up to ``total`` within ``tolerance`` (default one cent).

    ``missing_parts``: ``skip`` (default) skips the check when a part is missing; ``zero``
    counts a missing part as 0, for optional lines such as a discount.
    """

    inline = True  # pure and fast: runs on the request's thread

    def __init__(
        self, parts: Sequence[str], total: str, tolerance: Number = "0.01", missing_parts: str = "skip"
    ) -> None:
        self.parts = _param_names(parts, "parts")
        self.total = _param_name(total, "total")
        self.tolerance = _param_tolerance(tolerance)
        self.missing_parts = _param_choice(missing_parts, "missing_parts", ["skip", "zero"])

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        return _checked(lambda: self._check(prediction))

    def _part(self, prediction: Prediction, name: str) -> Decimal:
        if self.missing_parts == "zero" and not (prediction.value(name) or "").strip():
            return Decimal(0)
        return _number(prediction, name)

    def _check(self, prediction: Prediction) -> CheckResult:
        total = _number(prediction, self.total)
        parts = {name: self._part(prediction, name) for name in self.parts}
        added = sum(parts.values(), Decimal(0))
        terms = " + ".join(f"{name} {value}" for name, value in parts.items())
        if abs(added - total) <= self.tolerance:
            return CheckResult.passed(f"{terms} = {added}, {self.total} is {total}")
        return CheckResult.failed(f"{terms} = {added}, but {self.total} is {total} "
                                  f"(off by {abs(added - total)}, tolerance {self.tolerance})")


class InRange:
    """``min <= field <= max``; either bound may be left out, not both."""

    inline = True  # pure and fast: runs on the request's thread

    def __init__(self, field: str, min: Number | None = None, max: Number | None = None) -> None:
        self.field = _param_name(field, "field")
        if min is None and max is None:
            raise ValueError("give min, max or both")
        self.min = None if min is None else _param_number(min, "min")
        self.max = None if max is None else _param_number(max, "max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {min!r} is greater than max {max!r}")

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        return _checked(lambda: self._check(prediction))

    def _check(self, prediction: Prediction) -> CheckResult:
        value = _number(prediction, self.field)
        low = "-inf" if self.min is None else self.min
        high = "inf" if self.max is None else self.max
        if (self.min is None or value >= self.min) and (self.max is None or value <= self.max):
            return CheckResult.passed(f"{self.field} {value} is within [{low}, {high}]")
        return CheckResult.failed(f"{self.field} {value} is outside [{low}, {high}]")


class Required:
    """Every one of ``fields`` is present and not blank."""

    inline = True  # pure and fast: runs on the request's thread

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = _param_names(fields, "fields")

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        missing = [name for name in self.fields if not (prediction.value(name) or "").strip()]
        if missing:
            return CheckResult.failed(f"missing: {', '.join(missing)}")
        return CheckResult.passed(f"present: {', '.join(self.fields)}")


class DateFormat:
    """``field`` is a date that exists, written in ``format`` (strptime codes, default ISO).

    ``earliest`` and ``latest`` (ISO dates, inclusive) bound it. They are constants, so a verdict
    can be replayed, except ``latest: today``: the UTC date when the check runs, for the one rule
    that needs the clock (an invoice is not issued in the future).
    """

    inline = True  # pure and fast: runs on the request's thread

    def __init__(
        self, field: str, format: str = "%Y-%m-%d", earliest: str | None = None, latest: str | None = None
    ) -> None:
        self.field = _param_name(field, "field")
        if not isinstance(format, str) or "%" not in format or not _round_trips(format):
            raise ValueError(f"format must be a strptime format of a date such as '%Y-%m-%d', got {format!r}")
        self.format = format
        self.earliest = _param_date(earliest, "earliest")
        self.latest_is_today = latest == TODAY
        self.latest = None if self.latest_is_today else _param_date(latest, "latest")
        if self.earliest and self.latest and self.earliest > self.latest:
            raise ValueError(f"earliest {earliest!r} is after latest {latest!r}")

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        return _checked(lambda: self._check(prediction))

    def _check(self, prediction: Prediction) -> CheckResult:
        text = _present(prediction, self.field).strip()
        try:
            day = datetime.strptime(text, self.format).date()
        except ValueError:
            return CheckResult.failed(f"{self.field} {text!r} is not a date in the format {self.format!r}")
        if self.earliest and day < self.earliest:
            return CheckResult.failed(f"{self.field} {day.isoformat()} is before {self.earliest.isoformat()}")
        latest = datetime.now(UTC).date() if self.latest_is_today else self.latest
        if latest and day > latest:
            when = f"today ({latest.isoformat()})" if self.latest_is_today else latest.isoformat()
            return CheckResult.failed(f"{self.field} {day.isoformat()} is after {when}")
        return CheckResult.passed(f"{self.field} is {day.isoformat()}")


def _round_trips(format: str) -> bool:
    """A format that strptime can read back a date it wrote (catches unknown directives at start-up)."""
    sample = datetime(2001, 2, 3)
    try:
        return datetime.strptime(sample.strftime(format), format).date() == sample.date()
    except ValueError:
        return False


def _param_date(value: object, param: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # YAML reads an unquoted 2024-01-31 00:00:00 as a datetime
        if value.time() != datetime.min.time() or value.tzinfo is not None:
            raise ValueError(f"{param} must be a date without a time of day, got {value!r}")
        return value.date()
    if isinstance(value, date):  # YAML reads an unquoted 2024-01-31 as a date
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        extra = " or 'today'" if param == "latest" else ""
        raise ValueError(f"{param} must be an ISO date such as 2024-01-31{extra}, got {value!r}") from None


class CurrencyCode:
    """``field`` is an ISO 4217 currency code (upper case, e.g. ``USD``), optionally one of ``allowed``."""

    inline = True  # pure and fast: runs on the request's thread

    def __init__(self, field: str, allowed: Sequence[str] | None = None) -> None:
        self.field = _param_name(field, "field")
        self.known = ISO_4217
        self.allowed = None if allowed is None else frozenset(_param_names(allowed, "allowed"))
        unknown = sorted((self.allowed or frozenset()) - self.known)
        if unknown:
            raise ValueError(f"allowed names codes that are not ISO 4217: {', '.join(unknown)}")

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        return _checked(lambda: self._check(prediction))

    def _check(self, prediction: Prediction) -> CheckResult:
        code = _present(prediction, self.field).strip()
        if code not in self.known:
            return CheckResult.failed(f"{self.field} {code!r} is not an ISO 4217 currency code such as 'USD'")
        if self.allowed is not None and code not in self.allowed:
            return CheckResult.failed(f"{self.field} {code} is not one of {', '.join(sorted(self.allowed))}")
        return CheckResult.passed(f"{self.field} is {code}")


class LabelAllowed:
    """The label (or ``field``) is one the request may receive.

    Three ways to say what is allowed:
    - ``context_key`` alone: the request's context holds the allowed labels, ``separator``-joined;
    - ``allowed`` as a list: a fixed set;
    - ``allowed`` as a mapping with ``context_key``: the context value picks the set (per customer).
    ``when_missing`` (``skip`` or ``fail``) says what happens when the context has no such key,
    or the mapping has no entry for its value.
    """

    inline = True  # pure and fast: runs on the request's thread

    def __init__(
        self,
        context_key: str | None = None,
        allowed: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        field: str = "label",
        when_missing: str = "skip",
        separator: str = ",",
    ) -> None:
        self.field = _param_name(field, "field")
        self.when_missing = _param_choice(when_missing, "when_missing", ["skip", "fail"])
        if not isinstance(separator, str) or not separator:
            raise ValueError(f"separator must be a non-empty string, got {separator!r}")
        self.separator = separator
        self.context_key = None if context_key is None else _param_name(context_key, "context_key")
        self.fixed: frozenset[str] | None = None
        self.by_context: dict[str, frozenset[str]] | None = None
        if isinstance(allowed, Mapping):
            if self.context_key is None:
                raise ValueError("allowed as a mapping needs context_key, whose value picks the entry")
            self.by_context = {str(key): frozenset(_param_names(labels, f"allowed[{key!r}]"))
                               for key, labels in allowed.items()}
        elif allowed is not None:
            if self.context_key is not None:
                raise ValueError("give context_key or a fixed allowed list, not both "
                                 "(or make allowed a mapping from context values to lists)")
            self.fixed = frozenset(_param_names(allowed, "allowed"))
        elif self.context_key is None:
            raise ValueError("give context_key, allowed, or both")

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        return _checked(lambda: self._check(prediction, context))

    def check_many(self, predictions: Sequence[Prediction], contexts: Sequence[Mapping[str, str]]
                   ) -> list[CheckResult]:
        """``check`` for each item of a batch. A result depends only on the item's value and its context's
        ``context_key`` entry, so items that share both share one result, worked out once."""
        key, field, check = self.context_key, self.field, self.check
        seen: dict[tuple[str | None, str | None], CheckResult] = {}
        results = []
        for prediction, context in zip(predictions, contexts, strict=True):
            pair = (None if key is None else context.get(key), prediction.value(field))
            result = seen.get(pair)
            if result is None:
                result = seen[pair] = check(prediction, context)
            results.append(result)
        return results

    def _check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        value = _present(prediction, self.field).strip()
        allowed, source = self._allowed(context)
        if allowed is None:
            return CheckResult.failed(source) if self.when_missing == "fail" else CheckResult.skipped(source)
        if value in allowed:
            return CheckResult.passed(f"{self.field} {value!r} is allowed by {source}")
        return CheckResult.failed(f"{self.field} {value!r} is not allowed by {source}: {_listed(allowed)}")

    def _allowed(self, context: Mapping[str, str]) -> tuple[frozenset[str] | None, str]:
        """The allowed set and where it came from; or None and why there is none."""
        if self.fixed is not None:
            return self.fixed, "the bundle"
        key = self.context_key
        given = context.get(key) if key is not None else None
        if given is None:
            return None, f"the request context has no {key!r}"
        if self.by_context is None:
            return _label_set(given, self.separator), f"context {key!r}"
        labels_for = self.by_context.get(given)
        if labels_for is None:
            return None, f"the bundle lists no allowed labels for {key} {given!r}"
        return labels_for, f"the bundle for {key} {given!r}"


_LISTED = 20  # labels a failure message names; a caller's list may hold hundreds of thousands


def _listed(labels: frozenset[str]) -> str:
    """The allowed labels, sorted, as a message names them: the first _LISTED, and how many there are in all."""
    shown = heapq.nsmallest(_LISTED, labels)  # sorted, without sorting them all
    more = f", ... ({len(labels)} in all)" if len(labels) > _LISTED else ""
    return ", ".join(shown) + more


# Lists longer than this are split for their request alone: the cache keeps what it holds, and 256 lists of a few
# MiB each (a caller's to choose, within the request size limit) would keep gigabytes.
_CACHED_LIST_CHARS = 4096


def _label_set(given: str, separator: str) -> frozenset[str]:
    """A context's list of labels as a set; callers send the same few short lists again and again."""
    if len(given) > _CACHED_LIST_CHARS:
        return _split(given, separator)
    return _cached_split(given, separator)


def _split(given: str, separator: str) -> frozenset[str]:
    return frozenset(part.strip() for part in given.split(separator) if part.strip())


_cached_split = functools.lru_cache(maxsize=256)(_split)

