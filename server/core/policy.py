"""The decision rules of DESIGN.md, in one pure function.

The most severe outcome wins (ESCALATE over ABSTAIN over ANSWER):
verifier error -> ESCALATE; verifier failed -> its on_fail; calibrated confidence below the
threshold (the document's, or any field's own) -> the policy's on_low_confidence; otherwise ANSWER.
"""

from __future__ import annotations

from collections.abc import Sequence

from smallguard.server.domain.predictions import Decision, FieldBelowThreshold, Reason, ReasonCode, VerifierOutcome
from smallguard.verifiers import Status


def decide(
    confidence: float,
    threshold: float,
    on_low_confidence: Decision,
    outcomes: Sequence[VerifierOutcome],
    calibrated: bool,
    low_fields: Sequence[FieldBelowThreshold] = (),
) -> tuple[Decision, tuple[Reason, ...]]:
    decision, reasons = _verified(outcomes)  # a list of its own, added to below
    if confidence < threshold:
        decision = max(decision, on_low_confidence)
        reasons.append(_low_confidence(confidence, threshold))
    for low in low_fields:
        decision = max(decision, on_low_confidence)
        reasons.append(Reason(ReasonCode.LOW_CONFIDENCE, f"field {low.name}: confidence {low.confidence:.4f} "
                                                         f"is below its threshold {low.threshold:.4f}"))
    if not calibrated:
        reasons.append(_UNCALIBRATED)
    return decision, tuple(reasons)


def decide_many(confidences: Sequence[float], threshold: float, on_low_confidence: Decision,
                outcomes: Sequence[Sequence[VerifierOutcome]],
                calibrated: bool) -> tuple[list[Decision], list[tuple[Reason, ...]]]:
    """``decide`` for each of a batch's predictions (with no field thresholds: a classifier's). The verifiers'
    part is worked out once for each distinct outcomes object (the items a verifier answered alike share
    theirs) and every item at or above the threshold shares its tuple of reasons."""
    suffix = () if calibrated else (_UNCALIBRATED,)
    verdicts: dict[int, tuple[Sequence[VerifierOutcome], Decision, tuple[Reason, ...]]] = {}
    decisions, reasons = [], []
    for confidence, items in zip(confidences, outcomes, strict=True):
        verdict = verdicts.get(id(items))
        if verdict is None or verdict[0] is not items:
            decision, verified = _verified(items)
            verdict = verdicts[id(items)] = (items, decision, (*verified, *suffix))
        if confidence < threshold:
            decisions.append(max(verdict[1], on_low_confidence))
            reasons.append((*verdict[2][:len(verdict[2]) - len(suffix)], _low_confidence(confidence, threshold),
                            *suffix))
        else:
            decisions.append(verdict[1])
            reasons.append(verdict[2])
    return decisions, reasons


def _verified(outcomes: Sequence[VerifierOutcome]) -> tuple[Decision, list[Reason]]:
    """The decision the verifiers' outcomes alone make, and their reasons."""
    decision = Decision.ANSWER
    reasons: list[Reason] = []
    for outcome in outcomes:
        if outcome.status is Status.ERROR:
            decision = max(decision, Decision.ESCALATE)
            reasons.append(Reason(ReasonCode.VERIFIER_ERROR, outcome.message, outcome.name))
        elif outcome.status is Status.FAILED:
            decision = max(decision, outcome.on_fail)
            reasons.append(Reason(ReasonCode.VERIFIER_FAILED, outcome.message, outcome.name))
    return decision, reasons


def _low_confidence(confidence: float, threshold: float) -> Reason:
    return Reason(ReasonCode.LOW_CONFIDENCE, f"confidence {confidence:.4f} is below the threshold {threshold:.4f}")


_UNCALIBRATED = Reason(ReasonCode.UNCALIBRATED,
                       "this model has no verified calibration: its confidence is not a probability")


def escalate_when_drifted(decision: Decision, reasons: tuple[Reason, ...],
                          message: str) -> tuple[Decision, tuple[Reason, ...]]:
    """A bundle's ``on_drift: escalate`` while its model is drifted: an ANSWER becomes ESCALATE with a
    DRIFT reason (first, as the primary reason). ABSTAIN and ESCALATE already withhold the answer and stay."""
    if decision is not Decision.ANSWER:
        return decision, reasons
    return Decision.ESCALATE, (Reason(ReasonCode.DRIFT, message), *reasons)
