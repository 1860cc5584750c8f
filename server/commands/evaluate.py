"""`smallguard evaluate BUNDLE --data FILE`: what each defence catches, measured on labelled data.

Every example is replayed through the Guard's Predict path (the same input checks, model run,
calibration, verifiers and decision policy as a gRPC call; only the transport is skipped) and
its prediction is compared with the truth: a classifier's label, or every field of an
extraction exactly.

From the reasons each decision carries, the same run also shows what smaller guards would
have done, so the defences can be compared on identical predictions:

- model alone: answer everything;
- threshold only: hold back what is below the calibrated threshold (LOW_CONFIDENCE);
- verifiers only: hold back what a verifier failed or errored on;
- both: the decision the server really returned.

The headline is the silent-error rate: wrong and still answered, over all requests.
Exit codes: 0 evaluated; 2 bad bundle, data or options.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smallguard.server.commands.console import bundle_command, progress_columns
from smallguard.server.commands.labelled_data import Example
from smallguard.server.core.guard import Guard
from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.judge import answer_of, judge
from smallguard.server.domain.predictions import Decision, PredictOutcome, ReasonCode
from smallguard.server.settings import Settings

THRESHOLD_REASONS = frozenset({ReasonCode.LOW_CONFIDENCE})
VERIFIER_REASONS = frozenset({ReasonCode.VERIFIER_FAILED, ReasonCode.VERIFIER_ERROR})
POLICIES = ("model alone", "threshold only", "verifiers only", "both")


@dataclass(frozen=True, slots=True)
class Replayed:
    """One example's outcome: the decision, whether the prediction was right, which defences objected."""

    decision: str
    right: bool
    threshold: bool  # held back by the calibrated threshold
    verifiers: bool  # held back by a verifier that failed or errored


@dataclass(frozen=True, slots=True)
class PolicyRow:
    policy: str
    answered: int
    coverage: float
    silent_errors: int
    silent_error_rate: float  # wrong and answered, over all requests
    risk: float  # wrong among answered
    errors_caught: int
    right_held_back: int  # the price: right answers that were not given


@dataclass(frozen=True, slots=True)
class Evaluation:
    samples: int
    accuracy: float
    decisions: Mapping[str, Mapping[str, int]]  # decision -> {"right": n, "wrong": n}
    caught: Mapping[str, int]  # of the wrong predictions: by "threshold", "verifiers", "both", "neither"
    policies: Sequence[PolicyRow]

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "accuracy": self.accuracy, "decisions": dict(self.decisions),
                "caught": dict(self.caught), "policies": [asdict(row) for row in self.policies]}


def replayed(outcome: PredictOutcome, right: bool) -> Replayed:
    codes = {reason.code for reason in outcome.reasons}
    return Replayed(outcome.decision.name, right, bool(codes & THRESHOLD_REASONS), bool(codes & VERIFIER_REASONS))


def summarise(results: Iterable[Replayed]) -> Evaluation:
    """The tables, from the replayed outcomes."""
    results = list(results)
    n = len(results)
    decisions: dict[str, Counter[str]] = {d.name: Counter(right=0, wrong=0) for d in Decision}
    for r in results:
        decisions[r.decision]["right" if r.right else "wrong"] += 1
    wrong = [r for r in results if not r.right]
    caught = Counter(
        "both" if r.threshold and r.verifiers else "threshold" if r.threshold else "verifiers" if r.verifiers
        else "neither" for r in wrong)
    held_back = {
        "model alone": lambda r: False,
        "threshold only": lambda r: r.threshold,
        "verifiers only": lambda r: r.verifiers,
        "both": lambda r: r.decision != Decision.ANSWER.name,
    }
    rows = []
    for policy in POLICIES:
        answered = [r for r in results if not held_back[policy](r)]
        silent = sum(not r.right for r in answered)
        rows.append(PolicyRow(
            policy, len(answered), len(answered) / n, silent, silent / n,
            silent / len(answered) if answered else 0.0, len(wrong) - silent,
            sum(r.right for r in results) - sum(r.right for r in answered)))
    return Evaluation(n, sum(r.right for r in results) / n, {k: dict(v) for k, v in decisions.items()},
                      {key: caught.get(key, 0) for key in ("threshold", "verifiers", "both", "neither")}, rows)


def add_evaluate_command(commands: Any) -> None:
    """Register the sub-command (``commands`` is the parser's sub-parsers object)."""
    parser = bundle_command(
        commands, "evaluate", "replay labelled data through Predict: coverage, silent errors, what each defence caught",
        __doc__, evaluate_command, data_help="labelled data, .jsonl or .csv (as for calibrate)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")


def evaluate_command(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from smallguard.server.commands.labelled_data import read_labelled
    from smallguard.server.domain.errors import GuardError

    # Wide enough for the tables in logs and pipes too (rich assumes 80 columns off a terminal).
    console, out = Console(stderr=True, soft_wrap=True), Console(soft_wrap=True, width=max(Console().width, 132))
    try:
        guard, spec = _guard(args.bundle, settings)
        examples = read_labelled(args.data, spec)
    except (GuardError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    try:
        evaluation = summarise(_replay(guard, spec, examples, console, f"replaying {args.data.name}"))
    finally:
        guard.close()
    _print(out, f"{spec.name} {spec.version} on {args.data.name}", evaluation)
    if args.json:
        args.json.write_text(json.dumps(evaluation.to_json(), indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {args.json}", highlight=False)
    return 0


def _guard(folder: Path, settings: Settings) -> tuple[Guard, BundleSpec]:
    """A Guard serving just this bundle, assembled as the server's is (without a feedback record)."""
    from smallguard.server.assembly import build_guard

    guard = build_guard(settings, bundles=[folder], keep_feedback=False)
    (report,) = guard.reports()
    return guard, report.model.spec


def _replay(guard: Guard, spec: BundleSpec, examples: list[Example], console: Any, title: str) -> list[Replayed]:
    from rich.progress import Progress


    results = []
    with Progress(*progress_columns(), console=console) as progress:
        for example in progress.track(examples, description=title):
            outcome = guard.predict(example.call)
            results.append(replayed(outcome, _right(outcome, spec, example)))
    return results


def _right(outcome: PredictOutcome, spec: BundleSpec, example: Example) -> bool:
    truth = example.fields if spec.is_extractor else spec.labels[example.label]
    return judge(spec, answer_of(outcome.prediction), truth).correct


def _print(console: Any, title: str, evaluation: Evaluation) -> None:
    from rich.table import Table

    decisions = Table(title=f"{title}: {evaluation.samples} requests, model accuracy {evaluation.accuracy:.2%}")
    for column in ("decision", "requests", "right", "wrong"):
        decisions.add_column(column, justify="left" if column == "decision" else "right")
    for name, counts in evaluation.decisions.items():
        decisions.add_row(name, str(counts["right"] + counts["wrong"]), str(counts["right"]), str(counts["wrong"]))
    console.print(decisions)
    policies = Table(title="what each defence does (same predictions)")
    for column in ("guard", "answered", "coverage", "silent errors", "silent-error rate", "risk when answered",
                   "errors caught", "right held back"):
        policies.add_column(column, justify="left" if column == "guard" else "right")
    for row in evaluation.policies:
        policies.add_row(row.policy, str(row.answered), f"{row.coverage:.1%}", str(row.silent_errors),
                         f"{row.silent_error_rate:.2%}", f"{row.risk:.2%}", str(row.errors_caught),
                         str(row.right_held_back))
    console.print(policies)
    caught = evaluation.caught
    total = sum(caught.values())
    console.print(f"errors: {total}; caught by the threshold alone {caught['threshold']}, by verifiers alone "
                  f"{caught['verifiers']}, by both {caught['both']}; missed by both {caught['neither']}",
                  highlight=False)
