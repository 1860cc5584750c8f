"""The columnar-lane experiment (benchmarks/columnar_lane) measures the server's work only if it does the same
work: its decisions and decision-log rows must be the server's for the same stacked batches."""

from __future__ import annotations

import importlib.util
import json
import struct
from typing import Any

import pytest
import sqlalchemy as sa

from smallguard.server.store.schema import decision_log
from smallguard.server.transport.servicer import GuardService
from smallguard.v1 import guard_pb2 as pb
from tests.conftest import MODELS, ROOT, digits_rows, start_server

ITEMS = 64


@pytest.fixture
def columnar(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The experiment's module, loaded without patching the servicer: the server's own path stays what the lane
    is compared with."""
    monkeypatch.delenv("SG_COLUMNAR", raising=False)
    served = GuardService.PredictBatch
    spec = importlib.util.spec_from_file_location("columnar_lane", ROOT / "benchmarks/columnar_lane/sitecustomize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert GuardService.PredictBatch is served
    return module


class Context:
    def time_remaining(self) -> float:
        return 30.0

    def is_active(self) -> bool:
        return True

    def abort(self, code: object, message: str) -> None:
        raise AssertionError(f"{code}: {message}")

    def invocation_metadata(self) -> tuple:
        return ()


def stacked(rows: list[list[float]]) -> bytes:
    return pb.PredictBatchRequest(model="digits", inputs=[pb.Tensor(
        name="pixels", dtype=pb.FLOAT32, shape=[len(rows), 64],
        raw_contents=struct.pack(f"<{len(rows) * 64}f", *[v for row in rows for v in row]))]).SerializeToString()


def in_columns(response: pb.PredictBatchResponse) -> tuple[pb.TensorContents, pb.ModelInfo]:
    """The columns the lane carries as the response's fields 90 (numbers) and 91 (strings)."""
    data, at, found = response.SerializeToString(), 0, {}
    while at < len(data):
        key, at = _varint(data, at)
        size, at = _varint(data, at)
        found[key >> 3] = data[at:at + size]
        at += size
    return pb.TensorContents.FromString(found[90]), pb.ModelInfo.FromString(found[91])


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def logged(service: Any) -> list[dict[str, Any]]:
    """Every decision the server's log wrote, as decisions rows, in order."""
    log = service._guard._decisions
    assert log.flush(10)
    view = decision_log
    with log.store.engine.connect() as connection:
        return [row._asdict() for row in connection.execute(
            sa.select(view).order_by(view.c.at, view.c.batch_id, view.c.position, view.c.id))]


def test_the_lane_decides_logs_and_answers_each_item_as_the_server_does(columnar: Any) -> None:
    running = start_server(MODELS)
    try:
        service = running.server._service
        rows = [row["pixels"] for row in digits_rows()]
        seen: set[str] = set()
        for start in range(0, 4 * ITEMS, ITEMS):
            raw = stacked(rows[start:start + ITEMS])
            before = len(logged(service))
            served = service.PredictBatch(raw, Context())
            theirs = logged(service)[before:]
            response = columnar.columnar_batch(service, raw)
            ours = logged(service)[before + ITEMS:]
            assert response is not None and len(response.results) == len(served.results) == ITEMS
            assert len(theirs) == len(ours) == ITEMS
            numbers, strings = in_columns(response)
            assert list(strings.labels) == [r["request_id"] for r in ours] + [r["label"] for r in ours]
            assert list(numbers.double_contents[:2 * ITEMS]) == ([r["confidence"] for r in ours]
                                                                 + [r["raw_confidence"] for r in ours])
            assert list(numbers.int32_contents[:ITEMS]) == [pb.Decision.Value(r["decision"]) for r in ours]
            assert list(strings.fields) == [json.loads(r["details"])["reasons"][0]["message"] for r in ours
                                            if json.loads(r["details"])["reasons"]]
            for server_, lane_, result in zip(theirs, ours, served.results, strict=True):
                assert server_["request_id"] == result.response.request_id
                assert lane_.pop("details") == server_.pop("details")
                for varying in ("batch_id", "request_id", "at"):
                    del server_[varying], lane_[varying]
                assert lane_ == server_
                seen.add(server_["decision"])
            answered = columnar.columnar_batch(service, raw, log_decisions=False, columns=False, sdk_verifiers=True)
            for mine, theirs_ in zip(answered.results, served.results, strict=True):
                for response in (mine.response, theirs_.response):
                    response.request_id = ""
                    for verifier in response.verifiers:
                        verifier.duration_ms = 0.0
                assert mine == theirs_
        assert seen == {"ANSWER", "ABSTAIN"}  # both ways through the decision were compared
    finally:
        running.stop()


def test_the_lane_leaves_other_batches_to_the_server(columnar: Any) -> None:
    running = start_server(MODELS)
    try:
        service = running.server._service
        rows = [row["pixels"] for row in digits_rows()[:2]]
        with_items = pb.PredictBatchRequest(model="digits", items=[
            pb.PredictRequest(inputs=[pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[64],
                                                contents=pb.TensorContents(float_contents=row))]) for row in rows])
        assert columnar.columnar_batch(service, with_items.SerializeToString()) is None
        out_of_range = stacked([[99.0] * 64])
        assert columnar.columnar_batch(service, out_of_range) is None
        as_int32 = pb.PredictBatchRequest.FromString(stacked(rows))
        as_int32.inputs[0].dtype = pb.INT32  # the same bytes, read as another type: the server's path answers
        assert columnar.columnar_batch(service, as_int32.SerializeToString()) is None
    finally:
        running.stop()
