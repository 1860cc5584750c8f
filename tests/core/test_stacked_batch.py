"""A stacked batch served over arrays (``core.stacked_batch``) decides, records and answers each item as the
item-by-item path does: two servers load the same bundle, one serves each batch over arrays and the other
item by item, and their responses, metrics, drift and decision logs must agree."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from smallguard.client.columns import results_of
from smallguard.server.assembly import create_server
from smallguard.server.core.guard import Guard
from smallguard.server.settings import Settings
from smallguard.server.store.schema import decision_log
from smallguard.server.transport import converters
from smallguard.server.transport.batch_columns import outcome_columns, stacked_columns
from smallguard.server.transport.wire import batch_results_bytes, stacked_results_bytes
from smallguard.v1 import guard_pb2 as pb
from tests.conftest import DIGITS, copy_bundle, digits_rows, points

NORMAL = [row["pixels"] for row in digits_rows("test")]
INVERTED = [[16.0 - value for value in pixels] for pixels in NORMAL]
RULES = """  - name: not-seven
    use: rule
    params: {expr: "label != '7'"}
    on_fail: escalate
  - name: sure
    use: rule
    params: {expr: "probability > 0.97"}
    on_fail: abstain
"""


class Twin:
    """A server over ``repository``, with a metric reader and a store of its own."""

    def __init__(self, repository: Path, **overrides: Any) -> None:
        self.reader = InMemoryMetricReader()
        store = f"sqlite:///{tempfile.mkdtemp(prefix='smallguard-store-')}/store.sqlite3"
        settings = Settings(host="127.0.0.1", port=0, model_repository=repository, store=store, **overrides)
        self.server = create_server(settings, meter_provider=MeterProvider(metric_readers=[self.reader]))
        self.guard: Guard = self.server._service._guard

    def logged(self) -> list[dict[str, Any]]:
        log = self.guard._decisions
        assert log.flush(10)
        view = decision_log
        with log.store.engine.connect() as connection:
            rows = connection.execute(sa.select(view).order_by(view.c.at, view.c.batch_id, view.c.position))
            return [{k: v for k, v in row._asdict().items() if k not in ("id", "batch_id", "request_id", "at")}
                    for row in rows]

    def close(self) -> None:
        self.server.stop(0)


def bundle(tmp_path: Path, variant: str) -> Path:
    repository = tmp_path / variant
    repository.mkdir()
    yaml = (DIGITS / "bundle.yaml").read_text()
    if variant == "uncalibrated":
        yaml = yaml.replace("calibration: calibration.json", "uncalibrated: true")
    if variant == "rules":  # verifiers that fail without a context: escalations and abstentions of their own
        yaml = yaml.rstrip() + "\n" + RULES
    if variant == "drift":
        yaml = yaml.replace("on_drift: none", "on_drift: escalate")
    if variant == "full inputs":
        yaml += "decision_log:\n  inputs: full\n"
    copy_bundle(DIGITS, repository, "digits", yaml, extra=("reference.json",))
    return repository


def stacked(rows: list[list[float]]) -> pb.PredictBatchRequest:
    array = np.asarray(rows, dtype="<f4")
    return pb.PredictBatchRequest(model="digits", inputs=[pb.Tensor(name="pixels", dtype=pb.FLOAT32,
                                                                    shape=list(array.shape),
                                                                    raw_contents=array.tobytes())])


def comparable(response: pb.PredictBatchResponse) -> pb.PredictBatchResponse:
    for result in response.results:
        result.response.request_id = ""
        for verifier in result.response.verifiers:
            verifier.duration_ms = 0.0
    return response


def recorded(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Every prediction's counters and histograms, as comparable values (a duration's sum is the run's own)."""
    got = points(reader)
    values: dict[str, Any] = {}
    for name in ("smallguard.predictions", "smallguard.prediction.reasons", "smallguard.verifier.outcomes"):
        values[name] = sorted((sorted(p.attributes.items()), p.value) for p in got.get(name, []))
    values["confidence"] = sorted((sorted(p.attributes.items()), p.count, p.sum, list(p.bucket_counts))
                                  for p in got["smallguard.confidence"])
    values["duration"] = sorted((sorted(p.attributes.items()), p.count) for p in got["smallguard.predict.duration"])
    return values


@pytest.fixture(params=["shipped", "rules", "uncalibrated", "drift", "full inputs"])
def twins(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Twin, Twin, str]]:
    repository = bundle(tmp_path, request.param)
    arrays, items = Twin(repository), Twin(repository)
    yield arrays, items, request.param
    arrays.close()
    items.close()


def test_each_item_is_decided_recorded_and_answered_as_item_by_item(twins: tuple[Twin, Twin, str]) -> None:
    arrays, items, variant = twins
    # batches of 128: the drift window (500) is scored every 125 predictions, so each batch is scored at once
    traffic = NORMAL[:384] + INVERTED[:512] + NORMAL[384:768]
    seen: set[tuple[int, tuple[int, ...]]] = set()  # in the batches without contexts
    failed_by_context = False
    for start in range(0, len(traffic), 128):
        rows = traffic[start:start + 128]
        tensors = converters.stacked_tensors(stacked(rows))
        # every other batch: items with ids and contexts of their own (some), as items sent one per message carry
        own = start // 128 % 2 == 1
        request_ids = [f"own-{start + i}" if i % 3 else "" for i in range(len(rows))] if own else None
        contexts = [{"allowed_labels": "0,1,2,3,4,5,6" if i % 4 else "1,7"} if i % 5 else {}
                    for i in range(len(rows))] if own else None
        served = arrays.guard.predict_stacked("digits", "", tensors, None, "team-a", request_ids, contexts)
        assert served is not None
        calls = converters.stacked_calls(tensors, ())
        for i, call in enumerate(calls):
            call.caller = "team-a"
            if own:
                call.request_id, call.context = request_ids[i], contexts[i]  # type: ignore[index]
        one_by_one = items.guard.predict_batch("digits", "", calls)
        if own:
            assert [r.request_id for r in one_by_one][1:3] == served.request_ids[1:3] == [f"own-{start + 1}",
                                                                                         f"own-{start + 2}"]
            assert not served.key and served.request_ids[0] and served.request_ids[0] != served.request_ids[3]
        ours = comparable(pb.PredictBatchResponse.FromString(stacked_results_bytes(served)))
        theirs = comparable(pb.PredictBatchResponse.FromString(batch_results_bytes(one_by_one, lambda code: None)))
        assert ours == theirs
        # in columns: the same results, from the arrays and from the item-by-item results
        assert comparable(pb.PredictBatchResponse(results=results_of(stacked_columns(served).columns))) == theirs
        assert comparable(pb.PredictBatchResponse(results=results_of(
            outcome_columns(one_by_one, "digits", "", lambda code: None).columns))) == theirs
        answers = {(r.response.decision, tuple(reason.code for reason in r.response.reasons)) for r in ours.results}
        if own:
            failed_by_context |= any(pb.Reason.VERIFIER_FAILED in codes for _, codes in answers)
        else:
            seen |= answers
    assert recorded(arrays.reader) == recorded(items.reader)
    assert arrays.guard.report("digits").drift == items.guard.report("digits").drift
    assert arrays.logged() == items.logged()
    decisions = {decision for decision, _ in seen}
    codes = {code for _, reasons in seen for code in reasons}
    assert failed_by_context  # the items' contexts reached the verifiers (label-allowed)
    if variant != "uncalibrated":  # without a calibration the threshold is 0: every confidence is above it
        assert {pb.ANSWER, pb.ABSTAIN} <= decisions  # the comparison went both ways through the threshold
    expected = {"shipped": set(), "full inputs": set(), "rules": {pb.Reason.VERIFIER_FAILED},
                "uncalibrated": {pb.Reason.UNCALIBRATED}, "drift": {pb.Reason.DRIFT}}[variant]
    assert expected <= codes and (pb.ESCALATE in decisions) == bool(expected - {pb.Reason.UNCALIBRATED})


def test_a_batch_to_serve_item_by_item_is_declined_and_leaves_no_record(tmp_path: Path) -> None:
    twin = Twin(bundle(tmp_path, "shipped"))
    try:
        guard = twin.guard
        out_of_range = converters.stacked_tensors(stacked([NORMAL[0], [99.0] * 64]))
        wrong_shape = converters.stacked_tensors(pb.PredictBatchRequest(model="digits", inputs=[pb.Tensor(
            name="pixels", dtype=pb.FLOAT32, shape=[2, 32], raw_contents=b"\0" * 256)]))
        assert guard.predict_stacked("digits", "", out_of_range, None) is None
        assert guard.predict_stacked("digits", "", wrong_shape, None) is None
        with trace.get_tracer("test").start_as_current_span("PredictBatch") as span:  # traced: item by item
            assert span.is_recording()
            assert guard.predict_stacked("digits", "", converters.stacked_tensors(stacked(NORMAL[:2])), None) is None
        assert twin.logged() == [] and "smallguard.predictions" not in points(twin.reader)
        assert guard.report("digits").drift.samples == 0
        served = guard.predict_stacked("digits", "", converters.stacked_tensors(stacked(NORMAL[:3])), None)
        assert served is not None and len(served.request_ids) == 3 and len(twin.logged()) == 3
    finally:
        twin.close()


def test_columns_list_verifier_results_once_for_items_answered_alike_and_apart_otherwise() -> None:
    """Items share a verifier list when every field they are sent with is the same; a duration alone differing
    keeps two lists (and the rebuilt results keep each item's own)."""
    from smallguard.server.core.classifier import classification, label_score
    from smallguard.server.domain.predictions import BatchOutcome, Decision, Reason, ReasonCode, VerifierOutcome
    from smallguard.verifiers import Status

    def outcome(duration: float) -> tuple[VerifierOutcome, ...]:
        return (VerifierOutcome("label-allowed", "label-allowed", Status.PASSED, "ok", Decision.ESCALATE, duration),)
    alike, apart = outcome(0.5), outcome(0.75)
    low = (Reason(ReasonCode.LOW_CONFIDENCE, "below"),)
    predictions = [classification(label, 0.9, (label_score(label, 0.9),)) for label in "123"]
    batch = BatchOutcome("digits", "1.0.0", 0.8, "", ["a", "b", "c"], [Decision.ANSWER, Decision.ABSTAIN,
                                                                        Decision.ANSWER],
                         predictions, [0.9, 0.7, 0.9], [0.8, 0.6, 0.8], [(), low, ()], [alike, outcome(0.5), apart])
    columns = stacked_columns(batch).columns
    assert list(columns.verifiers) == [0, 0, 1] and len(columns.verifier_lists) == 2
    assert list(columns.reasons) == [0, 1, 0] and len(columns.reason_lists) == 2
    rebuilt = results_of(columns)
    assert [r.response.verifiers[0].duration_ms for r in rebuilt] == [0.5, 0.5, 0.75]
    assert [list(r.response.reasons) for r in rebuilt] == [[], [pb.Reason(code=pb.Reason.LOW_CONFIDENCE,
                                                                          message="below")], []]
