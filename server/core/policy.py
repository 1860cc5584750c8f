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
    decision = Decision.ANSWER
    reasons: list[Reason] = []
    for outcome in outcomes:
        if outcome.status is Status.ERROR:
            decision = max(decision, Decision.ESCALATE)
            reasons.append(Reason(ReasonCode.VERIFIER_ERROR, outcome.message, outcome.name))
        elif outcome.status is Status.FAILED:
            decision = max(decision, outcome.on_fail)
            reasons.append(Reason(ReasonCode.VERIFIER_FAILED, outcome.message, outcome.name))
    if confidence < threshold:
        decision = max(decision, on_low_confidence)
        reasons.append(Reason(ReasonCode.LOW_CONFIDENCE,
                              f"confidence {confidence:.4f} is below the threshold {threshold:.4f}"))
    for low in low_fields:
        decision = max(decision, on_low_confidence)
        reasons.append(Reason(ReasonCode.LOW_CONFIDENCE, f"field {low.name}: confidence {low.confidence:.4f} "
                                                         f"is below its threshold {low.threshold:.4f}"))
    if not calibrated:
        reasons.append(Reason(ReasonCode.UNCALIBRATED,
                              "this model has no verified calibration: its confidence is not a probability"))
    return decision, tuple(reasons)


def escalate_when_drifted(decision: Decision, reasons: tuple[Reason, ...],
                          message: str) -> tuple[Decision, tuple[Reason, ...]]:
    """A bundle's ``on_drift: escalate`` while its model is drifted: an ANSWER becomes ESCALATE with a
    DRIFT reason (first, as the primary reason). ABSTAIN and ESCALATE already withhold the answer and stay."""
    if decision is not Decision.ANSWER:
        return decision, reasons
    return Decision.ESCALATE, (Reason(ReasonCode.DRIFT, message), *reasons)
