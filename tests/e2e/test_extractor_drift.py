"""Drift on the invoice extractor: invoices in unseen layouts move its text and confidence scores, seen ones do not."""

from __future__ import annotations

import json

from smallguard.v1 import guard_pb2 as pb
from tests.conftest import MODELS, start_server
from tests.e2e.conftest import health

INVOICES = MODELS / "invoice-extractor"


def texts(split: str, count: int) -> list[str]:
    lines = (INVOICES / "data" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:count]
    return [json.loads(line)["text"] for line in lines]


def scores(status: pb.DriftStatus) -> dict[str, tuple[float, float]]:
    return {score.signal: (score.score, score.limit) for score in status.scores}


def test_unseen_layouts_drift_the_extractor_and_seen_ones_do_not() -> None:
    running = start_server(MODELS)
    try:
        for text in texts("test", 500):
            running.stub.Predict(pb.PredictRequest(model="invoice-extractor", text=text))
        seen = running.stub.GetModel(pb.GetModelRequest(name="invoice-extractor")).drift
        assert seen.state == pb.DriftStatus.WITHIN_LIMITS and health(running, "invoice-extractor") == "SERVING"
        assert all(score < limit for score, limit in scores(seen).values()), scores(seen)
        assert {"confidence", "escalation_rate", "input:text.length", "input:text.chars"} <= set(scores(seen))

        for text in texts("shifted", 500):
            running.stub.Predict(pb.PredictRequest(model="invoice-extractor", text=text))
        shifted = running.stub.GetModel(pb.GetModelRequest(name="invoice-extractor")).drift
        assert shifted.state == pb.DriftStatus.DRIFTED and health(running, "invoice-extractor") == "NOT_SERVING"
        past = {signal for signal, (score, limit) in scores(shifted).items() if score > limit}
        assert {"confidence", "escalation_rate", "input:text.length"} <= past
        assert health(running, "digits") == "SERVING" and health(running, "") == "SERVING"
    finally:
        running.stop()
