"""The decision rules of DESIGN.md: the most severe outcome wins."""

import pytest

from smallguard.server.core.policy import decide
from smallguard.server.domain.predictions import Decision, ReasonCode, VerifierOutcome
from smallguard.verifiers import Status


def outcome(status: Status, on_fail: Decision = Decision.ESCALATE, name: str = "v") -> VerifierOutcome:
    return VerifierOutcome(name, "use", status, f"{name} {status.value}", on_fail, 0.1)


def test_confident_and_verified_is_answered() -> None:
    decision, reasons = decide(0.95, 0.9, Decision.ABSTAIN, [outcome(Status.PASSED)], calibrated=True)
    assert decision is Decision.ANSWER
    assert reasons == ()


def test_low_confidence_takes_the_policy_action_and_says_why() -> None:
    decision, reasons = decide(0.5, 0.9, Decision.ABSTAIN, [], calibrated=True)
    assert decision is Decision.ABSTAIN
    assert [r.code for r in reasons] == [ReasonCode.LOW_CONFIDENCE]
    assert "0.5000" in reasons[0].message and "0.9000" in reasons[0].message
    assert decide(0.5, 0.9, Decision.ESCALATE, [], calibrated=True)[0] is Decision.ESCALATE


def test_confidence_equal_to_threshold_is_answered() -> None:
    assert decide(0.9, 0.9, Decision.ABSTAIN, [], calibrated=True)[0] is Decision.ANSWER


@pytest.mark.parametrize("on_fail", [Decision.ABSTAIN, Decision.ESCALATE])
def test_failed_verifier_takes_its_on_fail(on_fail: Decision) -> None:
    decision, reasons = decide(0.99, 0.5, Decision.ABSTAIN, [outcome(Status.FAILED, on_fail, "tax")], True)
    assert decision is on_fail
    assert reasons[0].code is ReasonCode.VERIFIER_FAILED and reasons[0].verifier == "tax"


def test_verifier_error_escalates_even_when_on_fail_is_abstain() -> None:
    decision, reasons = decide(0.99, 0.5, Decision.ABSTAIN, [outcome(Status.ERROR, Decision.ABSTAIN)], True)
    assert decision is Decision.ESCALATE
    assert reasons[0].code is ReasonCode.VERIFIER_ERROR


def test_most_severe_wins_and_every_reason_is_kept() -> None:
    outcomes = [outcome(Status.FAILED, Decision.ABSTAIN, "a"), outcome(Status.FAILED, Decision.ESCALATE, "b"),
                outcome(Status.SKIPPED, Decision.ESCALATE, "c")]
    decision, reasons = decide(0.1, 0.5, Decision.ABSTAIN, outcomes, calibrated=True)
    assert decision is Decision.ESCALATE
    assert [(r.code, r.verifier) for r in reasons] == [
        (ReasonCode.VERIFIER_FAILED, "a"), (ReasonCode.VERIFIER_FAILED, "b"), (ReasonCode.LOW_CONFIDENCE, "")]


def test_uncalibrated_is_always_said_but_does_not_change_the_decision() -> None:
    decision, reasons = decide(0.99, 0.0, Decision.ABSTAIN, [], calibrated=False)
    assert decision is Decision.ANSWER
    assert [r.code for r in reasons] == [ReasonCode.UNCALIBRATED]
