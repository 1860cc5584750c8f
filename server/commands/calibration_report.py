"""`smallguard calibrate --report DIR`: the pictures and the page that show a calibration worked.

A reliability diagram before and after (is a 0.9 really right nine times in ten?) and the
risk-coverage curve on the test part (what each threshold would answer, and how often it
would be wrong), with the chosen threshold and the target marked. Matplotlib's Agg backend
draws without a display, so this runs on servers and in CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from smallguard.server.calibration.procedure import CalibrationRun, Evaluation

RELIABILITY = "reliability.png"
RISK_COVERAGE = "risk_coverage.png"
REPORT = "REPORT.md"
METRICS = (("ece", "ECE (equal width)"), ("ece_equal_mass", "ECE (equal mass)"), ("mce", "MCE"),
           ("brier", "Brier"), ("nll", "NLL"), ("accuracy", "accuracy"))


def risk_coverage(confidences: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct confidence t (descending): the share answered at >= t and their error rate."""
    order = np.argsort(-confidences, kind="stable")
    conf, wrong = confidences[order], ~correct[order]
    last_of_tie = np.r_[conf[1:] != conf[:-1], True]  # ">= t" answers every case tied at t
    answered = np.arange(1, len(conf) + 1)[last_of_tie]
    errors = np.cumsum(wrong)[last_of_tie]
    return conf[last_of_tie], answered / len(conf), errors / answered


def write_report(folder: Path, run: CalibrationRun, document: dict[str, Any], title: str,
                 appendix: str = "") -> list[Path]:
    """Write the two PNGs and REPORT.md (ending with ``appendix``) into ``folder``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_reliability_png(folder / RELIABILITY, run),
             _risk_coverage_png(folder / RISK_COVERAGE, run, document.get("test", run.test)),
             folder / REPORT]
    paths[2].write_text(_markdown(run, document, title) + appendix, encoding="utf-8")
    return paths


def _reliability_png(path: Path, run: CalibrationRun) -> Path:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True, sharey="row",
                                gridspec_kw={"height_ratios": [3, 1]})
    for column, (name, evaluation) in enumerate((("before", run.before), ("after", run.after))):
        _reliability_axes(axes[0][column], axes[1][column], evaluation,
                          f"{name} calibration (ECE {evaluation.metrics['ece']:.4f})")
    axes[0][0].set_ylabel("accuracy in bin")
    axes[1][0].set_ylabel("cases (log)")
    figure.suptitle(f"Reliability on the test part ({len(run.after.correct)} cases)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _reliability_axes(axis: Any, counts: Any, evaluation: Evaluation, title: str) -> None:
    """Accuracy per confidence bin as bars, the bin's mean confidence as a tick, and the bin sizes below."""
    filled = [b for b in evaluation.bins if b.count > 0]
    lower = np.array([b.lower for b in filled])
    width = np.array([b.upper - b.lower for b in filled])
    axis.bar(lower, [b.accuracy for b in filled], width=width, align="edge", color="#4c72b0",
             edgecolor="white", label="accuracy")
    axis.scatter(lower + width / 2, [b.confidence for b in filled], marker="_", s=300, color="#dd8452",
                 linewidths=2.5, zorder=3, label="mean confidence")
    axis.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=1, label="perfect calibration")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_title(title)
    axis.legend(loc="upper left", fontsize=8)
    counts.bar(lower, [b.count for b in filled], width=width, align="edge", color="#8c8c8c", edgecolor="white")
    counts.set_yscale("log")
    counts.set_xlabel("confidence")


def _risk_coverage_png(path: Path, run: CalibrationRun, test: dict[str, Any]) -> Path:
    """The curve of the calibrated confidence, and the point the served rule reached on the test part."""
    import matplotlib.pyplot as plt

    _, coverage, risk = risk_coverage(run.after.confidences, run.after.correct)
    figure, axis = plt.subplots(figsize=(6.4, 4.6))
    axis.plot(coverage, risk, color="#4c72b0", label="calibrated confidence, test part")
    axis.axhline(run.choice.target_risk, color="#c44e52", linestyle="--",
                 label=f"target risk {run.choice.target_risk:g}")
    axis.scatter([test["coverage"]], [test["risk"]], color="#c44e52", zorder=3,
                 label=f"threshold {run.choice.threshold:.4f}: coverage {test['coverage']:.1%}, "
                       f"risk {test['risk']:.1%}")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, max(float(risk.max()) * 1.1, run.choice.target_risk * 2))
    axis.set_xlabel("coverage (share answered)")
    axis.set_ylabel("risk (error rate among answered)")
    axis.set_title("Risk-coverage on the test part")
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _markdown(run: CalibrationRun, document: dict[str, Any], title: str) -> str:
    guarantee, test = document["guarantee"], document.get("test", run.test)
    rows = "\n".join(f"| {label} | {run.before.metrics[key]:.4f} | {run.after.metrics[key]:.4f} |"
                     for key, label in METRICS)
    scores = ""
    if run.method_scores:
        listed = ", ".join(f"{name} {score:.4f}" for name, score in sorted(run.method_scores.items(),
                                                                             key=lambda item: item[1]))
        scores = f"\n`--method auto` compared cross-validated NLL on the fit part: {listed}.\n"
    return f"""# Calibration report: {title}

Fitted {document['fitted_at']} with method **{document['method']}** on {run.fit_samples} cases
(parameters: `{document['params']}`).
{scores}
## Metrics on the test part ({len(run.after.correct)} cases, never used for fitting)

| metric | before | after |
|---|---|---|
{rows}

![reliability before and after]({RELIABILITY})

## Threshold

**{guarantee['statement']}**

Threshold **{run.choice.threshold:.6f}**, chosen on {guarantee['samples']} cases the fit never saw
({guarantee['procedure']}): it answered {guarantee['answered']} of them
(coverage {guarantee['expected_coverage']:.1%}) with an empirical risk of {guarantee['empirical_risk']:.2%}
and a {1 - guarantee['delta']:.0%} upper bound of {guarantee['risk_upper_bound']:.2%}.
On the test part it answered {test['answered']} of {test['samples']} (coverage {test['coverage']:.1%})
with a realised risk of {test['risk']:.2%}.

![risk-coverage curve]({RISK_COVERAGE})
"""
