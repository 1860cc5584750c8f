"""A purchase-order limit read from the request context, plus two deliberately bad verifiers."""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from smallguard.verifiers import CheckResult, Prediction


class PoLimit:
    """The invoice ``field`` must not exceed the purchase-order amount in ``context[context_key]``."""

    def __init__(self, field: str = "total", context_key: str = "po_amount") -> None:
        if not field or not context_key:
            raise ValueError("field and context_key must be non-empty")
        self.field = field
        self.context_key = context_key

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        limit_text = context.get(self.context_key)
        value_text = prediction.value(self.field)
        if limit_text is None or value_text is None:
            return CheckResult.skipped(f"needs {self.field} and context {self.context_key!r}")
        try:
            value, limit = Decimal(value_text), Decimal(limit_text)
        except InvalidOperation:
            return CheckResult.failed(f"{self.field} {value_text!r} or limit {limit_text!r} is not a number")
        if value > limit:
            return CheckResult.failed(f"{self.field} {value} exceeds the purchase order's {limit}")
        return CheckResult.passed(f"{self.field} {value} is within the purchase order's {limit}")


class AlwaysRaises:
    """A buggy verifier: every check raises."""

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        raise RuntimeError("this verifier is broken on purpose")


class Sleepy:
    """A slow verifier: every check takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"seconds must be zero or positive, got {seconds!r}")
        self.seconds = seconds

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        time.sleep(self.seconds)
        return CheckResult.passed(f"slept {self.seconds} s")
