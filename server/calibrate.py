"""`smallguard calibrate BUNDLE --data FILE`: fit, prove and certify a bundle's calibration.

Runs the bundle's own model (the same onnxruntime session and input checks as Predict) on
labelled held-out data, fits a calibration method, measures it on a part the fit never saw,
chooses the threshold for a target risk with a finite-sample guarantee, and writes
calibration.json. It refuses to write a threshold that cannot keep its promise: when no
threshold meets the target, it says so and exits 1.

Exit codes: 0 written; 1 no threshold can be certified; 2 bad bundle, data or options.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("smallguard")

DEFAULT_TARGET_RISK = 0.03
DEFAULT_DELTA = 0.05


def add_calibrate_command(commands: Any) -> None:
    """Register the sub-command (``commands`` is the parser's sub-parsers object)."""
    parser = commands.add_parser(
        "calibrate", help="fit and measure a bundle's calibration, choose its threshold, write calibration.json",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=lambda args, _settings: calibrate_command(args))
    parser.add_argument("bundle", type=Path, help="the bundle folder (holding bundle.yaml)")
    parser.add_argument("--data", type=Path, required=True, help="labelled held-out data, .jsonl or .csv")
    parser.add_argument("--test", type=Path, default=None,
                        help="a separate labelled test file; without it, --test-fraction of --data is held out")
    parser.add_argument("--method", default="auto",
                        help="auto (best cross-validated NLL), temperature, platt, isotonic or histogram")
    parser.add_argument("--target-risk", type=float, default=DEFAULT_TARGET_RISK,
                        help="highest tolerable error rate among answered cases (default %(default)s)")
    parser.add_argument("--delta", type=float, default=DEFAULT_DELTA,
                        help="allowed probability that the guarantee fails (default %(default)s)")
    parser.add_argument("--test-fraction", type=float, default=0.3,
                        help="share of --data held out for measurement when --test is not given (default %(default)s)")
    parser.add_argument("--fit-fraction", type=float, default=0.5,
                        help="share of the rest used to fit; the remainder chooses the threshold (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split (default %(default)s)")
    parser.add_argument("--report", type=Path, default=None,
                        help="write reliability.png, risk_coverage.png and REPORT.md into this folder")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write calibration.json (default: the file bundle.yaml names)")


def calibrate_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from smallguard.server.bundle import read_bundle
    from smallguard.server.calibration import CalibrationError, NoValidThresholdError, write_calibration
    from smallguard.server.calibration.procedure import run_calibration, split_indices
    from smallguard.server.errors import GuardError
    from smallguard.server.labelled_data import read_labelled

    console = Console(stderr=True)
    try:
        spec = read_bundle(args.bundle, require_calibration=False)
        _check_options(args, spec)
        examples = read_labelled(args.data, spec)
        tests = read_labelled(args.test, spec) if args.test else None
    except (GuardError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    try:
        logits, labels = _score(spec, examples, console, f"scoring {args.data.name}")
        test_logits, test_labels = (_score(spec, tests, console, f"scoring {args.test.name}") if tests
                                    else (None, None))
        split = split_indices(len(labels), 0.0 if tests else args.test_fraction, args.fit_fraction, args.seed)
        _check_enough(len(split.threshold), args.target_risk, args.delta)
        run = run_calibration(logits, labels, split, method=args.method, target_risk=args.target_risk,
                              delta=args.delta, test_logits=test_logits, test_labels=test_labels, seed=args.seed)
    except NoValidThresholdError as exc:
        console.print(f"[red]no threshold written:[/red] {exc.problem}", highlight=False)
        return 1
    except CalibrationError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    output = args.output or spec.calibration_path or spec.folder / "calibration.json"
    document = write_calibration(output, run.calibrator, run.choice, fit_samples=run.fit_samples,
                                 before=run.before.metrics, after=run.after.metrics,
                                 evaluated_samples=len(run.after.correct), test=run.test,
                                 evaluated_on=("the --test file" if tests else
                                               "held-out test part of --data (never used for fitting)"))
    _print_summary(Console(), spec.name, run, document, output)
    if args.report:
        from smallguard.server.calibration_report import write_report

        for path in write_report(args.report, run, document, f"{spec.name} {spec.version}"):
            Console().print(f"wrote {path}", highlight=False)
    if spec.calibration_path is None:
        console.print("[yellow]note:[/yellow] bundle.yaml says 'uncalibrated: true'; remove it (and name "
                      f"{output.name} under 'calibration') to serve this calibration", highlight=False)
    return 0


def _check_options(args: argparse.Namespace, spec: Any) -> None:
    from smallguard.verifiers import ModelKind

    if spec.kind is not ModelKind.CLASSIFIER:
        raise ValueError(f"{spec.file}: calibrating {spec.kind.value} bundles is not supported yet")
    if not 0 < args.target_risk < 1:
        raise ValueError(f"--target-risk={args.target_risk}: expected a number between 0 and 1, e.g. 0.03")
    if not 0 < args.delta < 1:
        raise ValueError(f"--delta={args.delta}: expected a number between 0 and 1, e.g. 0.05")
    if args.test is None and not 0 < args.test_fraction < 1:
        raise ValueError(f"--test-fraction={args.test_fraction}: expected a number between 0 and 1")
    if not 0 < args.fit_fraction < 1:
        raise ValueError(f"--fit-fraction={args.fit_fraction}: expected a number between 0 and 1")
    from smallguard.server.calibration import METHODS

    if args.method != "auto" and args.method not in METHODS:
        raise ValueError(f"--method={args.method!r}: expected auto or one of {', '.join(sorted(METHODS))}")


def _check_enough(threshold_samples: int, target_risk: float, delta: float) -> None:
    """Refuse early when even a perfect model could not certify the target on this much data."""
    from smallguard.server.calibration import NoValidThresholdError, samples_needed

    needed = samples_needed(target_risk, delta)
    if threshold_samples < needed:
        raise NoValidThresholdError(
            f"too few samples for the requested guarantee: the threshold part has {threshold_samples} cases, "
            f"but certifying an error rate of at most {target_risk:g} with probability {1 - delta:g} needs at "
            f"least {needed} answered cases even with no errors; give more labelled data, a larger share "
            "for the threshold (--fit-fraction), or relax --target-risk / --delta")


def _score(spec: Any, examples: list[Any], console: Any, title: str) -> tuple[np.ndarray, np.ndarray]:
    """Run the bundle's model on every example, with a progress bar; return logits and label indices."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from smallguard.server.calibration import logits_from_probabilities
    from smallguard.server.runtime import OnnxModel

    model = OnnxModel(spec)
    rows = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        for example in progress.track(examples, description=title):
            rows.append(np.asarray(model.run(example.feeds), dtype=np.float64).reshape(-1))
    scores = np.vstack(rows)
    logits = logits_from_probabilities(scores) if spec.output_type == "probabilities" else scores
    return logits, np.array([example.label for example in examples], dtype=np.intp)


def _print_summary(console: Any, name: str, run: Any, document: dict[str, Any], output: Path) -> None:
    from rich.table import Table

    from smallguard.server.calibration_report import METRICS

    table = Table(title=f"{name}: calibration on {len(run.after.correct)} held-out cases")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for key, label in METRICS:
        table.add_row(label, f"{run.before.metrics[key]:.4f}", f"{run.after.metrics[key]:.4f}")
    console.print(table)
    if run.method_scores:
        ranked = ", ".join(f"{m} {s:.4f}" for m, s in sorted(run.method_scores.items(), key=lambda item: item[1]))
        console.print(f"method: {document['method']} (auto, by cross-validated NLL: {ranked})", highlight=False)
    else:
        console.print(f"method: {document['method']}", highlight=False)
    guarantee, test = document["guarantee"], run.test
    console.print(f"threshold: {run.choice.threshold:.6f}  expected coverage {guarantee['expected_coverage']:.1%} "
                  f"({guarantee['answered']}/{guarantee['samples']}), test coverage {test['coverage']:.1%}, "
                  f"test risk {test['risk']:.2%}", highlight=False)
    console.print(guarantee["statement"], highlight=False)
    console.print(f"wrote {output}", highlight=False)

