"""What a CEL rule costs per check, against the built-in Python verifier that checks the same thing:
``subtotal + tax == total`` (money, exact) as ``use: rule`` and as ``use: sum-equals``, on the same prediction,
alternating rounds in one process.

    .venv/bin/python benchmarks/rule_cost.py [--checks N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time

from smallguard.verifiers import BundleInfo, ExtractedField, ModelKind, Prediction
from smallguard.verifiers.builtin import SumEquals
from smallguard.verifiers.rule import Rule

FIELDS = ("invoice_number", "date", "currency", "subtotal", "tax", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    values = {"invoice_number": "INV-7", "date": "2024-03-01", "currency": "EUR", "subtotal": "1,000.00",
              "tax": "200.00", "total": "1200.00"}
    prediction = Prediction(kind=ModelKind.EXTRACTOR,
                            fields={n: ExtractedField(n, v, 0.9, 0.9) for n, v in values.items()})
    bundle = BundleInfo("invoices", ModelKind.EXTRACTOR, FIELDS)
    verifiers = {
        "built-in sum-equals": SumEquals(["subtotal", "tax"], "total", tolerance="0"),
        "CEL rule": Rule("subtotal + tax == total", bundle, types=dict.fromkeys(("subtotal", "tax", "total"), "money")),
        "CEL rule, 4 clauses": Rule("subtotal + tax == total && tax <= total && iso4217(currency) && "
                                    "date <= today", bundle, types={"subtotal": "money", "tax": "money",
                                                                    "total": "money", "date": "date"}),
    }
    timings: dict[str, list[float]] = {name: [] for name in verifiers}
    for _ in range(args.rounds):
        for name, verifier in verifiers.items():
            started = time.perf_counter()
            for _ in range(args.checks):
                verifier.check(prediction, {})
            timings[name].append((time.perf_counter() - started) / args.checks * 1e6)
    base = statistics.median(timings["built-in sum-equals"])
    for name, values_ in timings.items():
        median = statistics.median(values_)
        print(f"{name:>22}: {median:6.1f} us per check ({median / base:.2f}x the built-in)")


if __name__ == "__main__":
    main()
