"""Protobuf messages of the review-queue RPCs from the stored cases (plain JSON details) and back."""

from __future__ import annotations

from typing import Any

from smallguard.server.core.review import QueueCounts, input_text, truth_of
from smallguard.server.store.review_cases import CaseRow
from smallguard.v1 import guard_pb2 as pb

_STATUS = {"passed": pb.VerifierResult.PASSED, "failed": pb.VerifierResult.FAILED,
           "error": pb.VerifierResult.ERROR, "skipped": pb.VerifierResult.SKIPPED}


def review_case(case: CaseRow) -> pb.ReviewCase:
    details = case.details
    text, tensors = input_text(case)
    label, fields = truth_of(case) if case.truth is not None else ("", {})
    message = pb.ReviewCase(
        id=case.id, request_id=case.request_id, model=case.model, model_version=case.version,
        state=case.state.upper(), reason=case.reason, opened_at=case.opened_at, claimed_by=case.claimed_by or "",
        lease_until=case.lease_until or 0.0, closed_by=case.closed_by or "", closed_at=case.closed_at or 0.0,
        text=text, inputs_json=tensors, reasons=[_reason(r) for r in details.get("reasons", [])],
        verifiers=[{"name": v["name"], "use": v.get("use", ""), "status": _STATUS.get(v["status"], 0),
                    "message": v["message"], "on_fail": pb.Decision.Value(v.get("on_fail", "ESCALATE"))}
                   for v in details.get("verifiers", [])],
        tiers=[_tier(t, case.kind) for t in details.get("tiers", [])],
        label=label, fields=fields, note=case.note or "",
        **_answer(details.get("prediction"), case.kind))
    return message


def list_cases_response(cases: list[CaseRow], counts: QueueCounts, now: float) -> pb.ListCasesResponse:
    totals: dict[str, int] = {}
    for (_model, state), count in counts.counts.items():
        totals[state.upper()] = totals.get(state.upper(), 0) + count
    oldest = min(counts.oldest_open.values(), default=None)
    return pb.ListCasesResponse(cases=[review_case(case) for case in cases], counts=totals,
                                oldest_open_seconds=0.0 if oldest is None else max(0.0, now - oldest))


def _reason(reason: dict[str, str]) -> dict[str, Any]:
    code = reason["code"]
    known = code in pb.Reason.Code.keys()  # noqa: SIM118 - an enum wrapper, not a dict
    return {"code": pb.Reason.Code.Value(code) if known else 0,
            "verifier": reason.get("verifier", ""), "message": reason.get("message", "")}


def _answer(prediction: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    if prediction is None:
        return {}
    if kind == "classifier":
        return {"classification": {"label": prediction.get("label") or "",
                                   "probability": prediction.get("confidence", 0.0)}}
    return {"extraction": {"fields": [
        {"name": name, "value": value or "", "present": value is not None, "confidence": confidence}
        for name, (value, confidence) in prediction.get("fields", {}).items()]}}


def _tier(tier: dict[str, Any], kind: str) -> pb.TierResult:
    return pb.TierResult(name=tier["name"], kind=tier["kind"], decision=pb.Decision.Value(tier["decision"]),
                         calibrated=tier.get("calibrated", False), confidence=tier.get("confidence", 0.0),
                         cost=tier.get("cost", 0.0), latency_ms=tier.get("latency_ms", 0.0),
                         reasons=[_reason(r) for r in tier.get("reasons", [])],
                         **_answer(tier.get("prediction"), kind))
