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

A bundle with escalation tiers is replayed through its cascade, really calling the tiers (a
``bundle`` tier is loaded from the bundle's sibling folders, the model repository). The tables
above then describe the small model's own decisions, the decision table what callers got, and
a table per tier shows how many requests reached it, how many it answered, right and wrong, and
what its calls cost; ``--max-tier 0`` replays the small model alone.
Exit codes: 0 evaluated; 2 bad bundle, data or options.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from smallguard.server.commands.console import bundle_command, progress_columns
from smallguard.server.commands.labelled_data import Example
from smallguard.server.core.guard import Guard
from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.judge import answer_of, judge
from smallguard.server.domain.predictions import Decision, PredictOutcome, ReasonCode
from smallguard.server.settings import Settings
from smallguard.verifiers import Prediction

THRESHOLD_REASONS = frozenset({ReasonCode.LOW_CONFIDENCE})
VERIFIER_REASONS = frozenset({ReasonCode.VERIFIER_FAILED, ReasonCode.VERIFIER_ERROR})
POLICIES = ("model alone", "threshold only", "verifiers only", "both")


@dataclass(frozen=True, slots=True)
class TierTurn:
    """One escalation tier's turn at one example."""

    name: str
    decision: str
    right: bool | None  # None: the tier gave no prediction (it failed, or was not called)
    calls: int
    cost: float
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Replayed:
    """One example's outcome: the small model's decision, whether its prediction was right, which defences
    objected; and when the cascade went on, each tier's turn and what the caller finally got."""

    decision: str
    right: bool
    threshold: bool  # held back by the calibrated threshold
    verifiers: bool  # held back by a verifier that failed or errored
    tiers: tuple[TierTurn, ...] = ()
    final_decision: str = ""  # "": the small model's decision stood
    final_right: bool = False
    answered_by: str = ""
    seconds: float = 0.0

    @property
    def outcome(self) -> tuple[str, bool]:
        """What the caller got: the decision and whether the prediction in it was right."""
        return (self.final_decision, self.final_right) if self.final_decision else (self.decision, self.right)


@dataclass(frozen=True, slots=True)
class TierRow:
    """One tier over the whole replay (the first row is the small model itself)."""

    tier: str
    reached: int
    answered: int
    right: int  # answered and right
    wrong: int  # answered and wrong: silent errors it let through
    calls: int
    cost: float
    mean_latency_ms: float


@dataclass(frozen=True, slots=True)
class CascadeSummary:
    tiers: Sequence[TierRow]
    answered: int
    coverage: float
    silent_errors: int
    silent_error_rate: float
    mean_cost: float  # per request, in the tiers' cost unit (the small model's own call is not counted)
    mean_latency_ms: float  # per request, the whole Predict


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
    cascade: CascadeSummary | None = None  # None: no escalation tier was configured or called
    mean_latency_ms: float = 0.0  # per request, the whole Predict in process

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "accuracy": self.accuracy, "decisions": dict(self.decisions),
                "caught": dict(self.caught), "policies": [asdict(row) for row in self.policies],
                "cascade": None if self.cascade is None else asdict(self.cascade),
                "mean_latency_ms": self.mean_latency_ms}


def replayed(outcome: PredictOutcome, right: Callable[[Prediction], bool], seconds: float = 0.0) -> Replayed:
    """``outcome`` judged by ``right``: the small model's part and, when it escalated to tiers, theirs."""
    if not outcome.tiers:
        codes = {reason.code for reason in outcome.reasons}
        return Replayed(outcome.decision.name, right(outcome.prediction), bool(codes & THRESHOLD_REASONS),
                        bool(codes & VERIFIER_REASONS), seconds=seconds)
    small, *tiers = outcome.tiers
    codes = {reason.code for reason in small.reasons}
    assert small.prediction is not None
    turns = tuple(TierTurn(t.name, t.decision.name, None if t.prediction is None else right(t.prediction), t.calls,
                           t.cost, t.latency_ms) for t in tiers)
    return Replayed(small.decision.name, right(small.prediction), bool(codes & THRESHOLD_REASONS),
                    bool(codes & VERIFIER_REASONS), turns, outcome.decision.name, right(outcome.prediction),
                    outcome.answered_by, seconds)


def summarise(results: Iterable[Replayed]) -> Evaluation:
    """The tables, from the replayed outcomes."""
    results = list(results)
    n = len(results)
    decisions: dict[str, Counter[str]] = {d.name: Counter(right=0, wrong=0) for d in Decision}
    for r in results:
        decision, right = r.outcome
        decisions[decision]["right" if right else "wrong"] += 1
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
                      {key: caught.get(key, 0) for key in ("threshold", "verifiers", "both", "neither")}, rows,
                      _cascade(results) if any(r.tiers for r in results) else None,
                      sum(r.seconds for r in results) / n * 1000.0)


def _cascade(results: list[Replayed]) -> CascadeSummary:
    """Per tier (the small model first): requests reached, answered right and wrong, calls and cost; then the
    system's coverage, silent errors and mean cost and latency per request."""
    n = len(results)
    names = list(dict.fromkeys(turn.name for r in results for turn in r.tiers))
    small_answered = [r for r in results if r.decision == Decision.ANSWER.name]
    rows = [TierRow("model", n, len(small_answered), sum(r.right for r in small_answered),
                    sum(not r.right for r in small_answered), n, 0.0, 0.0)]
    for name in names:
        turns = [turn for r in results for turn in r.tiers if turn.name == name]
        answered = [turn for turn in turns if turn.decision == Decision.ANSWER.name]
        called = [turn for turn in turns if turn.calls]
        rows.append(TierRow(name, len(turns), len(answered), sum(bool(t.right) for t in answered),
                            sum(not t.right for t in answered), sum(t.calls for t in turns), sum(t.cost for t in turns),
                            sum(t.latency_ms for t in called) / len(called) if called else 0.0))
    final = [r.outcome for r in results]
    answered_final = [right for decision, right in final if decision == Decision.ANSWER.name]
    silent = sum(not right for right in answered_final)
    return CascadeSummary(rows, len(answered_final), len(answered_final) / n, silent, silent / n,
                          sum(sum(t.cost for t in r.tiers) for r in results) / n,
                          sum(r.seconds for r in results) / n * 1000.0)


def add_evaluate_command(commands: Any) -> None:
    """Register the sub-command (``commands`` is the parser's sub-parsers object)."""
    parser = bundle_command(
        commands, "evaluate", "replay labelled data through Predict: coverage, silent errors, what each defence caught",
        __doc__, evaluate_command, data_help="labelled data, .jsonl or .csv (as for calibrate)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--max-tier", type=int, default=None, metavar="N",
                        help="escalation tiers a request may reach (0: the small model alone; default: all)")


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
    if args.max_tier is not None:
        examples = [replace(e, call=replace(e.call, max_tier=args.max_tier)) for e in examples]
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
    """A Guard serving this bundle and the bundles its tiers name (from the same model repository: the
    folder's siblings), assembled as the server's is, without a feedback record."""
    from smallguard.server.assembly import build_guard
    from smallguard.server.bundle.bundle_file import read_bundle
    from smallguard.server.bundle.loader import bundle_folders
    from smallguard.server.domain.tier_spec import BundleTarget

    spec = read_bundle(folder)
    wanted = {tier.target.bundle for tier in spec.escalation if isinstance(tier.target, BundleTarget)}
    siblings = [other for other in bundle_folders(folder.resolve().parent) if other.resolve() != folder.resolve()]
    tiers = [other for other in siblings if read_bundle(other, require_calibration=False).name in wanted]
    guard = build_guard(settings, bundles=[folder, *tiers], keep_feedback=False)
    return guard, guard.report(spec.name).model.spec


def _replay(guard: Guard, spec: BundleSpec, examples: list[Example], console: Any, title: str) -> list[Replayed]:
    from rich.progress import Progress

    results = []
    with Progress(*progress_columns(), console=console) as progress:
        for example in progress.track(examples, description=title):
            truth = example.fields if spec.is_extractor else spec.labels[example.label]
            started = time.perf_counter()
            outcome = guard.predict(example.call)
            seconds = time.perf_counter() - started
            results.append(replayed(outcome, lambda p, truth=truth: judge(spec, answer_of(p), truth).correct, seconds))
    return results


def _print(console: Any, title: str, evaluation: Evaluation) -> None:
    from rich.table import Table

    decisions = Table(title=f"{title}: {evaluation.samples} requests, model accuracy {evaluation.accuracy:.2%}, "
                            f"mean latency {evaluation.mean_latency_ms:.2f} ms")
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
    if evaluation.cascade is not None:
        _print_cascade(console, evaluation.cascade, evaluation.samples)


def _print_cascade(console: Any, cascade: CascadeSummary, samples: int) -> None:
    from rich.table import Table

    table = Table(title="the cascade: who answered (the small model first, then each tier it escalated to)")
    for column in ("tier", "reached", "answered", "share of requests", "right", "wrong (silent)", "calls", "cost",
                   "mean latency"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    for row in cascade.tiers:
        latency = "-" if row.tier == "model" else f"{row.mean_latency_ms:.2f} ms"
        table.add_row(row.tier, str(row.reached), str(row.answered), f"{row.answered / samples:.1%}", str(row.right),
                      str(row.wrong), str(row.calls), f"{row.cost:g}", latency)
    console.print(table)
    console.print(f"system: answered {cascade.answered} of {samples} ({cascade.coverage:.1%}), silent errors "
                  f"{cascade.silent_errors} ({cascade.silent_error_rate:.2%} of requests), mean cost "
                  f"{cascade.mean_cost:.3f} per request, mean latency {cascade.mean_latency_ms:.2f} ms per request",
                  highlight=False)
