"""An extractor's calibration: one map per field, one for the document, thresholds that hold together.

Each field has one raw score (the adapter's confidence in the value it chose) and one event to
forecast: the value is exactly right. So each field gets a binary map (Platt, isotonic or
histogram binning; ``auto`` picks by cross-validated NLL) and its own certified threshold.
The document's score is the product of the calibrated field confidences, mapped again by a
binary map to P(every field is right): fields do not err independently, so the product alone
is not a probability.

The threshold part of the data is halved, so that every guarantee is computed on cases that
nothing it depends on was chosen on:

- the first half certifies each field's threshold (rule: answer the field when its calibrated
  confidence reaches it);
- the second half certifies the document threshold for the rule the server applies: answer
  when the document confidence reaches it *and* every field reaches its own threshold (those
  are fixed by then, so the rule family is fixed before this half is looked at).

Each field test runs at delta / (2 k) and the document's at delta / 2 (Bonferroni), so all
k + 1 guarantees hold together with probability at least 1 - delta.

The document map is fitted on the fit part, where the field maps were fitted too, so the
document score it sees there is a little optimistic; that costs calibration quality on the
test part (which is measured and reported), never the guarantee, which rests on the halves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from smallguard.server.calibration.binary import BINARY_METHODS
from smallguard.server.calibration.checks import CalibrationError
from smallguard.server.calibration.measures import DEFAULT_BINS, binary_summary, reliability
from smallguard.server.calibration.methods import METHODS
from smallguard.server.calibration.procedure import AUTO, CalibrationRun, Evaluation, Split, coverage_and_risk
from smallguard.server.calibration.threshold import choose_threshold, coverage_steps


@dataclass(frozen=True, slots=True)
class FieldScores:
    """Per field, the raw score and whether the extracted value was exactly right, for n documents."""

    scores: Mapping[str, np.ndarray]
    correct: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        sizes = {len(v) for v in (*self.scores.values(), *self.correct.values())}
        if set(self.scores) != set(self.correct) or len(sizes) != 1:
            raise CalibrationError("scores and correct must name the same fields, each with one value per document")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.scores)

    def documents_correct(self) -> np.ndarray:
        return np.logical_and.reduce([np.asarray(c, dtype=bool) for c in self.correct.values()])


@dataclass(frozen=True, slots=True)
class ExtractorRun:
    """Every field's run, the document's, and what the served rule did on the test part."""

    fields: Mapping[str, CalibrationRun]
    document: CalibrationRun
    test: Mapping[str, float | int]  # the served rule: document threshold and every field threshold
    field_delta: float
    document_delta: float
    confidences: np.ndarray  # the served document confidence of every calibration document
    answered: np.ndarray  # whether the served rule answers it (the drift reference's decision mix)

    @property
    def simultaneous_statement(self) -> str:
        delta = self.document_delta * 2
        return (f"The {len(self.fields) + 1} guarantees (each field and the document) hold together with "
                f"probability at least {1 - delta:.0%} (Bonferroni: delta {self.field_delta:.4g} per field, "
                f"{self.document_delta:.4g} for the document).")


def binary_evaluation(confidences: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_BINS) -> Evaluation:
    conf, hit = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=bool)
    return Evaluation(conf, hit, binary_summary(conf, hit, n_bins), reliability(conf, hit, n_bins))


def fit_binary_method(method: str, scores: np.ndarray, correct: np.ndarray, seed: int = 0) -> tuple[object, dict]:
    """Fit the named binary map, or with ``auto`` the one with the best cross-validated NLL."""
    if method == AUTO:
        from smallguard.server.calibration.selection import select_binary_method

        selection = select_binary_method(scores, correct, seed=seed)
        return selection.calibrator, dict(selection.scores)
    if method not in BINARY_METHODS:
        known = ", ".join(sorted(BINARY_METHODS))
        why = " (it rescales class logits; a field has one score)" if method in METHODS else ""
        raise CalibrationError(f"method {method!r} cannot calibrate an extractor{why}; expected {AUTO} or {known}")
    return BINARY_METHODS[method].fit_binary(scores, correct), {}


def run_field_calibration(
    data: FieldScores,
    split: Split,
    *,
    method: str,
    target_risk: float,
    delta: float,
    test: FieldScores,
    seed: int = 0,
    threshold_steps: int | None = None,
) -> ExtractorRun:
    """Fit on ``split.fit``, certify thresholds on the two halves of ``split.threshold``, measure on ``test``.
    ``threshold_steps``: as for ``run_calibration``, for every field and the document."""
    half = len(split.threshold) // 2
    fields_part, document_part = split.threshold[:half], split.threshold[half:]
    field_delta, document_delta = delta / (2 * len(data.names)), delta / 2
    runs: dict[str, CalibrationRun] = {}
    calibrated = {}  # per field: calibrated confidence on every calibration document
    calibrated_test = {}
    for name in data.names:
        s, hit = np.asarray(data.scores[name], dtype=np.float64), np.asarray(data.correct[name], dtype=bool)
        calibrator, method_scores = fit_binary_method(method, s[split.fit], hit[split.fit], seed)
        calibrated[name] = calibrator.confidence(s)  # type: ignore[attr-defined]
        calibrated_test[name] = calibrator.confidence(test.scores[name])  # type: ignore[attr-defined]
        choice = choose_threshold(calibrated[name][fields_part], hit[fields_part], target_risk, field_delta,
                                  _grid(calibrated[name][fields_part], threshold_steps))
        runs[name] = CalibrationRun(calibrator, choice, len(split.fit),  # type: ignore[arg-type]
                                    binary_evaluation(test.scores[name], test.correct[name]),
                                    binary_evaluation(calibrated_test[name], test.correct[name]), method_scores)
    right, right_test = data.documents_correct(), test.documents_correct()
    product, product_test = _product(calibrated), _product(calibrated_test)
    calibrator, method_scores = fit_binary_method(method, product[split.fit], right[split.fit], seed)
    passes = _fields_pass(calibrated, runs)
    served = np.where(passes, calibrator.confidence(product), 0.0)  # type: ignore[attr-defined]
    choice = choose_threshold(served[document_part], right[document_part], target_risk, document_delta,
                              _grid(served[document_part], threshold_steps))
    document_test = calibrator.confidence(product_test)  # type: ignore[attr-defined]
    document = CalibrationRun(calibrator, choice, len(split.fit),  # type: ignore[arg-type]
                              binary_evaluation(_product(test.scores), right_test),
                              binary_evaluation(document_test, right_test), method_scores)
    answered = (document_test >= choice.threshold) & _fields_pass(calibrated_test, runs)
    confidences = calibrator.confidence(product)  # type: ignore[attr-defined]
    return ExtractorRun(runs, document, coverage_and_risk(answered, right_test), field_delta, document_delta,
                        confidences, (confidences >= choice.threshold) & passes)


def _product(confidences: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.prod(np.vstack([np.asarray(c, dtype=np.float64) for c in confidences.values()]), axis=0)


def _fields_pass(confidences: Mapping[str, np.ndarray], runs: Mapping[str, CalibrationRun]) -> np.ndarray:
    return np.logical_and.reduce([confidences[name] >= runs[name].choice.threshold for name in runs])


def _grid(confidences: np.ndarray, steps: int | None) -> np.ndarray | None:
    return None if steps is None else coverage_steps(confidences, steps)
