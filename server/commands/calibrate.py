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

from smallguard.server.commands.console import bundle_command, progress_columns
from smallguard.server.settings import Settings

log = logging.getLogger("smallguard")

DEFAULT_TARGET_RISK = 0.03
DEFAULT_DELTA = 0.05


def add_calibrate_command(commands: Any) -> None:
    """Register the sub-command (``commands`` is the parser's sub-parsers object)."""
    parser = bundle_command(
        commands, "calibrate", "fit and measure a bundle's calibration, choose its threshold, write calibration.json",
        __doc__, calibrate_command, data_help="labelled held-out data, .jsonl or .csv")
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
    parser.add_argument("--threshold-steps", type=int, default=None, metavar="N",
                        help="test thresholds at N coverage steps (1/N of the cases each) instead of at every "
                             "observed confidence: one early confident error then ends the search less often")
    parser.add_argument("--report", type=Path, default=None,
                        help="write reliability.png, risk_coverage.png and REPORT.md into this folder")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write calibration.json (default: the file bundle.yaml names)")


def calibrate_command(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from smallguard.server.bundle.bundle_file import read_bundle
    from smallguard.server.calibration import CalibrationError, NoValidThresholdError
    from smallguard.server.commands.labelled_data import read_labelled
    from smallguard.server.domain.errors import GuardError

    # soft_wrap: messages stay whole lines in logs and pipes instead of being cut at 80 columns.
    console, out = Console(stderr=True, soft_wrap=True), Console(soft_wrap=True)
    try:
        spec = read_bundle(args.bundle, require_calibration=False)
        _check_options(args, spec)
        examples = read_labelled(args.data, spec)
        tests = read_labelled(args.test, spec) if args.test else None
    except (GuardError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    output = args.output or spec.calibration_path or spec.folder / "calibration.json"
    calibrate = _calibrate_extractor if spec.is_extractor else _calibrate_classifier
    try:
        run, document, notes = calibrate(args, spec, examples, tests, console, output, settings.intra_op_threads)
    except NoValidThresholdError as exc:
        console.print(f"[red]no threshold written:[/red] {exc.problem}", highlight=False)
        return 1
    except (CalibrationError, GuardError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    _print_summary(out, spec.name, run, document, output)
    for note in notes:
        out.print(note, highlight=False)
    if args.report:
        from smallguard.server.commands.calibration_report import write_report

        appendix = _fields_markdown(document) if spec.is_extractor else ""
        for path in write_report(args.report, run, document, f"{spec.name} {spec.version}", appendix):
            out.print(f"wrote {path}", highlight=False)
    if spec.calibration_path is None:
        console.print("[yellow]note:[/yellow] bundle.yaml says 'uncalibrated: true'; remove it (and name "
                      f"{output.name} under 'calibration') to serve this calibration", highlight=False)
    return 0


def _calibrate_classifier(args: argparse.Namespace, spec: Any, examples: list[Any], tests: list[Any] | None,
                          console: Any, output: Path, threads: int) -> tuple[Any, dict[str, Any], list[str]]:
    from smallguard.server.calibration import write_calibration
    from smallguard.server.calibration.procedure import run_calibration, split_indices

    logits, labels = _score(spec, examples, console, f"scoring {args.data.name}", threads)
    test_logits, test_labels = (_score(spec, tests, console, f"scoring {args.test.name}", threads) if tests
                                else (None, None))
    split = split_indices(len(labels), 0.0 if tests else args.test_fraction, args.fit_fraction, args.seed)
    _check_enough(len(split.threshold), args.target_risk, args.delta)
    run = run_calibration(logits, labels, split, method=args.method, target_risk=args.target_risk,
                          delta=args.delta, test_logits=test_logits, test_labels=test_labels, seed=args.seed,
                          threshold_steps=args.threshold_steps)
    document = write_calibration(output, run.calibrator, run.choice, fit_samples=run.fit_samples,
                                 before=run.before.metrics, after=run.after.metrics,
                                 evaluated_samples=len(run.after.correct), test=run.test,
                                 evaluated_on=_evaluated_on(args), extra={"procedure": _procedure(args, run)})
    from smallguard.server.observability.drift import write_reference_beside

    reference = write_reference_beside(output, spec, [e.feeds for e in examples], run.calibrator.probabilities(logits),
                                       run.choice.threshold, source=str(args.data))
    return run, document, [f"wrote {reference} (the drift reference)"]


def _calibrate_extractor(args: argparse.Namespace, spec: Any, examples: list[Any], tests: list[Any] | None,
                         console: Any, output: Path, threads: int) -> tuple[Any, dict[str, Any], list[str]]:
    from smallguard.server.calibration import write_calibration
    from smallguard.server.calibration.fields import run_field_calibration
    from smallguard.server.calibration.procedure import split_indices

    data = _score_fields(spec, examples, console, f"extracting {args.data.name}", threads)
    split = split_indices(len(examples), 0.0 if tests else args.test_fraction, args.fit_fraction, args.seed)
    test = (_score_fields(spec, tests, console, f"extracting {args.test.name}", threads) if tests
            else _subset(data, split.test))
    half = len(split.threshold) // 2
    _check_enough(half, args.target_risk, args.delta / (2 * len(spec.fields)))
    run = run_field_calibration(data, split, method=args.method, target_risk=args.target_risk, delta=args.delta,
                                test=test, seed=args.seed, threshold_steps=args.threshold_steps)
    document_run = run.document
    guarantee = {**document_run.choice.guarantee(),
                 "rule": "answer when the document confidence and every field's confidence reach their thresholds",
                 "simultaneous": run.simultaneous_statement}
    fields = {name: _field_entry(field_run) for name, field_run in run.fields.items()}
    document = write_calibration(
        output, document_run.calibrator, document_run.choice, fit_samples=document_run.fit_samples,  # type: ignore[arg-type]
        before=document_run.before.metrics, after=document_run.after.metrics,
        evaluated_samples=len(document_run.after.correct), test=run.test, evaluated_on=_evaluated_on(args),
        extra={"guarantee": guarantee, "procedure": _procedure(args, document_run), "fields": fields})
    from smallguard.server.domain.predictions import Decision
    from smallguard.server.observability.drift import write_reference_beside

    decisions = [Decision.ANSWER if answered else spec.policy.on_low_confidence for answered in run.answered]
    reference = write_reference_beside(output, spec, [e.feeds for e in examples], run.confidences,
                                       document_run.choice.threshold, source=str(args.data), decisions=decisions)
    notes = [f"field {name}: {entry['method']}, threshold {entry['threshold']:.4f}, test accuracy "
             f"{entry['metrics']['after']['accuracy']:.2%}, ECE {entry['metrics']['before']['ece']:.4f} -> "
             f"{entry['metrics']['after']['ece']:.4f}" for name, entry in fields.items()]
    return document_run, document, [*notes, run.simultaneous_statement, f"wrote {reference} (the drift reference)"]


def _field_entry(run: Any) -> dict[str, Any]:
    return {
        "method": run.calibrator.name,
        "params": run.calibrator.to_params(),
        "threshold": run.choice.threshold,
        "guarantee": run.choice.guarantee(),
        "metrics": {"samples": len(run.after.correct), "before": dict(run.before.metrics),
                    "after": dict(run.after.metrics)},
        "test": run.test,
        **({"method_selection": dict(run.method_scores)} if run.method_scores else {}),
    }


def _procedure(args: argparse.Namespace, run: Any) -> dict[str, Any]:
    """How the file was made, so that anyone can reproduce it: the data, the split and the method choice."""
    procedure: dict[str, Any] = {
        "command": "smallguard calibrate", "data": args.data.name, "test": args.test.name if args.test else None,
        "requested_method": args.method, "seed": args.seed, "fit_fraction": args.fit_fraction,
        "test_fraction": None if args.test else args.test_fraction, "threshold_steps": args.threshold_steps}
    if run.method_scores:
        procedure["method_selection"] = {"criterion": "cross-validated NLL on the fit part (lower is better)",
                                         "scores": dict(run.method_scores)}
    return procedure


def _evaluated_on(args: argparse.Namespace) -> str:
    if args.test:
        return f"{args.test.name} (the --test file, never used for fitting)"
    return f"held-out test part of {args.data.name} (never used for fitting)"


def _check_options(args: argparse.Namespace, spec: Any) -> None:
    if not 0 < args.target_risk < 1:
        raise ValueError(f"--target-risk={args.target_risk}: expected a number between 0 and 1, e.g. 0.03")
    if not 0 < args.delta < 1:
        raise ValueError(f"--delta={args.delta}: expected a number between 0 and 1, e.g. 0.05")
    if args.threshold_steps is not None and not 2 <= args.threshold_steps <= 100_000:
        raise ValueError(f"--threshold-steps={args.threshold_steps}: expected a whole number from 2 to 100000, "
                         "e.g. 100")
    if args.test is None and not 0 < args.test_fraction < 1:
        raise ValueError(f"--test-fraction={args.test_fraction}: expected a number between 0 and 1")
    if not 0 < args.fit_fraction < 1:
        raise ValueError(f"--fit-fraction={args.fit_fraction}: expected a number between 0 and 1")
    from smallguard.server.calibration import BINARY_METHODS, METHODS

    allowed = BINARY_METHODS if spec.is_extractor else METHODS
    if args.method != "auto" and args.method not in allowed:
        kind = "an extractor (one score per field)" if spec.is_extractor else "a classifier"
        raise ValueError(f"--method={args.method!r}: for {kind}, expected auto or one of {', '.join(sorted(allowed))}")


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


def _score(spec: Any, examples: list[Any], console: Any, title: str, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the bundle's model on every example, with a progress bar; return logits and label indices."""
    from rich.progress import Progress

    from smallguard.server.bundle.onnx_session import OnnxModel
    from smallguard.server.calibration import logits_from_probabilities

    model = OnnxModel(spec, threads)
    rows = []
    with Progress(*progress_columns(), console=console, transient=False) as progress:
        for example in progress.track(examples, description=title):
            rows.append(np.asarray(model.run(example.feeds), dtype=np.float64).reshape(-1))
    scores = np.vstack(rows)
    logits = logits_from_probabilities(scores) if spec.output_type == "probabilities" else scores
    return logits, np.array([example.label for example in examples], dtype=np.intp)


def _score_fields(spec: Any, examples: list[Any], console: Any, title: str, threads: int) -> Any:
    """Run the bundle's adapter and model on every document; per field, the raw score and whether it was right."""
    from rich.progress import Progress

    from smallguard.server.bundle.adapter import load_adapter
    from smallguard.server.bundle.onnx_session import OnnxModel
    from smallguard.server.calibration.fields import FieldScores
    from smallguard.server.core.extractor import ExtractorHead
    from smallguard.server.domain.judge import answer_of, judge

    head = ExtractorHead(OnnxModel(spec, threads), load_adapter(spec.adapter_path, spec.fields), None)
    scores = {name: np.zeros(len(examples)) for name in spec.fields}
    correct = {name: np.zeros(len(examples), dtype=bool) for name in spec.fields}
    with Progress(*progress_columns(), console=console) as progress:
        for i, example in enumerate(progress.track(examples, description=title)):
            prediction = head.predict(example.feeds).prediction
            wrong = judge(spec, answer_of(prediction), example.fields).wrong_fields
            for name in spec.fields:
                scores[name][i] = prediction.fields[name].raw_confidence
                correct[name][i] = name not in wrong
    return FieldScores(scores, correct)


def _subset(data: Any, rows: np.ndarray) -> Any:
    from smallguard.server.calibration.fields import FieldScores

    return FieldScores({k: v[rows] for k, v in data.scores.items()}, {k: v[rows] for k, v in data.correct.items()})


def _fields_markdown(document: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {entry['method']} | {entry['metrics']['after']['accuracy']:.2%} | "
        f"{entry['metrics']['before']['ece']:.4f} | {entry['metrics']['after']['ece']:.4f} | "
        f"{entry['threshold']:.4f} | {entry['guarantee']['expected_coverage']:.1%} | {entry['test']['coverage']:.1%} | "
        f"{entry['test']['risk']:.2%} |" for name, entry in document["fields"].items())
    return f"""
## Fields

Each field's confidence is the calibrated probability that its value is exactly right; its
threshold is certified for target risk {document['guarantee']['target_risk']:g} at delta
{next(iter(document['fields'].values()))['guarantee']['delta']:.4g}. {document['guarantee']['simultaneous']}

| field | method | test accuracy | ECE before | ECE after | threshold | expected coverage | test coverage | test risk |
|---|---|---|---|---|---|---|---|---|
{rows}

The document rule answers only when the document confidence and every field reach their thresholds.
"""


def _print_summary(console: Any, name: str, run: Any, document: dict[str, Any], output: Path) -> None:
    from rich.table import Table

    from smallguard.server.commands.calibration_report import METRICS

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
    guarantee, test = document["guarantee"], document.get("test", run.test)
    console.print(f"threshold: {run.choice.threshold:.6f}  expected coverage {guarantee['expected_coverage']:.1%} "
                  f"({guarantee['answered']}/{guarantee['samples']}), test coverage {test['coverage']:.1%}, "
                  f"test risk {test['risk']:.2%}", highlight=False)
    console.print(guarantee["statement"], highlight=False)
    console.print(f"wrote {output}", highlight=False)

