"""The escalation cascade end to end: real servers on loopback, real bundles run by onnxruntime, a second real
smallguard server as the ``guard`` tier, and, for the ``openai`` tier, an OpenAI-compatible stand-in (no
LLM can run on the test machines; see llm_standin.py) that misbehaves in every way the tier must survive.

The small model is the digits bundle with ``on_low_confidence: escalate``; its stronger tier is the same
network with a lower threshold (``digits-strong``), so it answers some of what the small one escalates.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from smallguard.client.columns import results_of
from smallguard.server.assembly import build_guard, create_server
from smallguard.server.core import cascade as cascade_module
from smallguard.server.domain.errors import BundleError
from smallguard.server.settings import Settings
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import (
    DIGITS,
    MODELS,
    Running,
    by,
    digits_request,
    digits_rows,
    points,
    start_server,
    wait_until,
)
from tests.e2e.llm_standin import LlmStandIn
from tests.e2e.test_predict_batch import untimed

SMALL = """name: {name}
version: "1.0.0"
kind: classifier
model: model.onnx
inputs:
  - {{name: pixels, dtype: float32, shape: [64], range: [0.0, 16.0]}}
output: {{name: probabilities, type: probabilities}}
labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
policy: {{on_low_confidence: escalate}}
verifiers:
  - use: label-allowed
    params: {{context_key: allowed_labels}}
    on_fail: escalate
"""


def _bundle(repository: Path, name: str, escalation: str = "", threshold: float | None = None) -> None:
    folder = repository / name
    folder.mkdir(parents=True)
    shutil.copy(DIGITS / "model.onnx", folder / "model.onnx")
    calibration = json.loads((DIGITS / "calibration.json").read_text())
    if threshold is not None:
        calibration["threshold"] = threshold
    (folder / "calibration.json").write_text(json.dumps(calibration))
    (folder / "bundle.yaml").write_text(SMALL.format(name=name) + (f"escalation:\n{escalation}" if escalation else ""))


def _llm(name: str, endpoint: str, model: str, **extra: object) -> str:
    lines = [f"  - name: {name}", "    kind: openai", f"    endpoint: {endpoint}", f'    model: "{model}"',
             "    cost: 10", "    timeout_ms: 2000", "    retries: 0"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


STRONG = "  - {name: strong, kind: bundle, bundle: digits-strong, cost: 2}\n"
FAULTS = ("hang", "http500", "notjson", "prose", "missing", "extra", "mistyped", "unknown-label")


@pytest.fixture(scope="module")
def llm() -> Iterator[LlmStandIn]:
    stand_in = LlmStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory,
            llm: LlmStandIn) -> Iterator[tuple[Running, InMemoryMetricReader]]:
    """One server: digits escalating to digits-strong then an LLM that may answer uncalibrated; digits-strict
    the same without that permission; digits-faults through every faulty LLM to one that answers; digits-down
    to an LLM that always fails, behind a circuit breaker; digits-hang to one that never answers."""
    repository = tmp_path_factory.mktemp("cascade")
    _bundle(repository, "digits-strong", threshold=0.5)
    _bundle(repository, "digits", STRONG + _llm("llm", llm.endpoint, "label:0", answer_uncalibrated=True))
    _bundle(repository, "digits-strict", STRONG + _llm("llm", llm.endpoint, "label:0"))
    # 300 ms where the time-out is the point; the others answer at once, with room for a busy test machine
    faults = "".join(_llm(mode, llm.endpoint, mode, timeout_ms=300 if mode == "hang" else 3000) for mode in FAULTS)
    _bundle(repository, "digits-faults", faults + _llm("retried", llm.endpoint, "busy429", retries=1,
                                                       answer_uncalibrated=True))
    _bundle(repository, "digits-down", _llm("down", llm.endpoint, "http500", circuit={"failures": 2,
                                                                                       "open_seconds": 60}))
    _bundle(repository, "digits-hang", _llm("slow", llm.endpoint, "hang", timeout_ms=20000))
    reader = InMemoryMetricReader()
    server = create_server(Settings(host="127.0.0.1", port=0, model_repository=repository),
                           meter_provider=MeterProvider(metric_readers=[reader]))
    server.start()
    address = f"127.0.0.1:{server.port}"
    channel = grpc.insecure_channel(address)
    running = Running(server, channel, guard_pb2_grpc.GuardStub(channel), address)
    yield running, reader
    running.stop()


def _request(row: dict, model: str = "digits", **fields: object) -> pb.PredictRequest:
    request = digits_request(row["pixels"], **fields)
    request.model = model
    return request


def _low_confidence_rows(stub: guard_pb2_grpc.GuardStub) -> list[tuple[dict, pb.PredictResponse]]:
    """Rows the small model escalates for low confidence alone, with a confidence digits-strong accepts."""
    found = []
    for row in digits_rows():
        response = stub.Predict(_request(row, max_tier=0))
        codes = {reason.code for reason in response.reasons}
        if response.decision == pb.ESCALATE and codes == {pb.Reason.LOW_CONFIDENCE} and response.confidence >= 0.5:
            found.append((row, response))
    assert found, "the test set should have low-confidence digits above 0.5"
    return found


def test_a_stronger_bundle_answers_what_the_small_model_escalates(cascade) -> None:
    running, _ = cascade
    row, small = _low_confidence_rows(running.stub)[0]
    assert not small.tiers and small.answered_by == "digits" and small.cost == 0  # max_tier 0: the small model only

    response = running.stub.Predict(_request(row))

    assert response.decision == pb.ANSWER
    assert response.answered_by == "strong"
    assert [(t.name, t.kind, t.decision) for t in response.tiers] == [
        ("digits", "model", pb.ESCALATE), ("strong", "bundle", pb.ANSWER)]
    assert response.tiers[0].reasons[0].code == pb.Reason.LOW_CONFIDENCE
    strong = response.tiers[1]
    assert strong.calibrated and strong.threshold == 0.5 and strong.calls == 1 and strong.cost == 2.0
    assert [v.status for v in strong.verifiers] == [pb.VerifierResult.SKIPPED]  # the bundle's verifier ran on it
    assert response.cost == 2.0
    assert response.classification.label == strong.classification.label == small.classification.label
    assert response.threshold == 0.5 and response.confidence == strong.confidence
    assert list(response.reasons) == []  # the answering tier's reasons: none

    confident = next(r for r in digits_rows() if running.stub.Predict(_request(r)).decision == pb.ANSWER)
    answered = running.stub.Predict(_request(confident))
    assert not answered.tiers and answered.answered_by == "digits" and answered.cost == 0


def test_every_tier_answer_goes_through_the_bundles_verifiers(cascade, llm: LlmStandIn) -> None:
    """A label the context does not allow: the small model and the strong bundle both say it, the verifier
    fails both; the LLM's "0" passes, and stands uncalibrated only where the bundle allows it."""
    running, _ = cascade
    row = next(r for r in digits_rows() if r["label"] == "3")
    allowed = {"allowed_labels": "0"}

    response = running.stub.Predict(_request(row, context=allowed))

    assert [(t.name, t.decision) for t in response.tiers] == [
        ("digits", pb.ESCALATE), ("strong", pb.ESCALATE), ("llm", pb.ANSWER)]
    for tier in response.tiers[:2]:
        assert tier.classification.label == "3"
        assert tier.reasons[0].code == pb.Reason.VERIFIER_FAILED
        assert tier.verifiers[0].status == pb.VerifierResult.FAILED
    assert response.decision == pb.ANSWER and response.answered_by == "llm"
    assert response.classification.label == "0"
    assert not response.tiers[2].calibrated
    assert [r.code for r in response.reasons] == [pb.Reason.UNCALIBRATED]
    assert response.cost == 2.0 + 10.0

    sent = llm.requests[-1]["body"]
    assert sent["response_format"]["type"] == "json_schema"
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == [str(d) for d in range(10)]
    prompt = sent["messages"][1]["content"]
    assert sent["temperature"] == 0 and "$" not in prompt and "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in prompt
    assert '"pixels": [[' in prompt or '"pixels": [' in prompt  # the tensor input, as JSON

    strict = running.stub.Predict(_request(row, model="digits-strict", context=allowed))
    assert strict.decision == pb.ESCALATE
    assert strict.tiers[-1].decision == pb.ESCALATE
    assert any("answer_uncalibrated" in r.message for r in strict.tiers[-1].reasons)
    assert {r.code for r in strict.reasons} >= {pb.Reason.VERIFIER_FAILED, pb.Reason.UNCALIBRATED}


def test_the_request_caps_the_cascade(cascade) -> None:
    running, _ = cascade
    row = next(r for r in digits_rows() if r["label"] == "3")
    allowed = {"allowed_labels": "0"}

    one = running.stub.Predict(_request(row, context=allowed, max_tier=1))
    assert [t.name for t in one.tiers] == ["digits", "strong"] and one.decision == pb.ESCALATE and one.cost == 2.0

    cheap = running.stub.Predict(_request(row, context=allowed, max_cost=5))
    assert [t.name for t in cheap.tiers] == ["digits", "strong"] and cheap.cost == 2.0  # the LLM costs 10

    none = running.stub.Predict(_request(row, context=allowed, max_cost=1))
    assert not none.tiers and none.decision == pb.ESCALATE and none.answered_by == "digits"

    with pytest.raises(grpc.RpcError) as caught:
        running.stub.Predict(_request(row, max_cost=-1))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_cost" in caught.value.details()


def test_faulty_tiers_give_reasons_that_name_them_and_the_cascade_goes_on(cascade, llm: LlmStandIn) -> None:
    running, reader = cascade
    row = next(r for r in digits_rows() if r["label"] == "5")

    started = time.monotonic()
    response = running.stub.Predict(_request(row, model="digits-faults", context={"allowed_labels": "3"}),
                                    timeout=10)
    elapsed = time.monotonic() - started

    entries = {t.name: t for t in response.tiers[1:]}
    assert list(entries) == [*FAULTS, "retried"]
    expected = {
        "hang": "timed out after 300 ms",
        "http500": "answered HTTP 500",
        "notjson": "the reply is not JSON",
        "prose": "the answer is not a JSON object: 'The digit is a three.'",
        "missing": "missing fields ['label']",
        "extra": "unexpected fields ['why']",
        "mistyped": "field 'label' is int",
        "unknown-label": "label 'eleven' is not one of",
    }
    for name, fragment in expected.items():
        entry = entries[name]
        assert entry.decision == pb.ESCALATE and not entry.HasField("classification")
        (reason,) = entry.reasons
        assert reason.code == pb.Reason.TIER_ERROR and reason.verifier == name
        assert f"tier {name} (openai): " in reason.message and fragment in reason.message, reason.message
        assert entry.calls == 1 and entry.cost == 10.0
    retried = entries["retried"]
    assert retried.decision == pb.ANSWER and retried.calls == 2 and retried.cost == 20.0  # a 429, then the answer
    assert response.decision == pb.ANSWER and response.answered_by == "retried"
    assert response.classification.label == "3"
    assert response.cost == 8 * 10.0 + 20.0
    assert elapsed < 5  # the hanging tier was cut at its 300 ms

    metrics = points(reader)
    calls = by(metrics["smallguard.tier.calls"], "smallguard.model.name", "smallguard.tier.name")
    cost = by(metrics["smallguard.tier.cost"], "smallguard.model.name", "smallguard.tier.name")
    outcomes = by(metrics["smallguard.tier.outcomes"], "smallguard.tier.name", "smallguard.tier.outcome")
    assert calls[("digits-faults", "retried")] == 2 and cost[("digits-faults", "retried")] == 20.0
    assert all(calls[("digits-faults", name)] == 1 for name in FAULTS)
    assert outcomes[("retried", "answer")] >= 1 and outcomes[("http500", "error")] >= 1
    sent = sum(count for (mode, _), count in llm.attempts.items() if mode == "busy429")
    assert sent >= 2


def test_the_callers_deadline_caps_the_cascade(cascade, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tier is cut off ahead of the caller's deadline, by a margin widened here so that a busy test machine
    still gets the response to the caller in time."""
    monkeypatch.setattr(cascade_module, "DEADLINE_MARGIN_S", 0.3)
    running, _ = cascade
    row = digits_rows()[0]
    started = time.monotonic()
    response = running.stub.Predict(_request(row, model="digits-hang", context={"allowed_labels": "x"}), timeout=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0
    assert response.decision == pb.ESCALATE
    (reason,) = response.tiers[1].reasons
    assert reason.code == pb.Reason.TIER_ERROR and "slow" in reason.message and "timed out" in reason.message


def test_calls_waiting_on_a_tier_do_not_hold_back_other_callers(cascade, llm: LlmStandIn,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """8 calls wait on a tier that never answers (its max_concurrency), as many as the server's working threads:
    the pool adds threads (thread_pool), so other callers are answered meanwhile. With a fixed pool of eight,
    the canary waited until the held calls reached their deadline (5 s) and failed at its own (2 s). The tier
    is cut 0.5 s before the held calls' deadline, so that a busy test machine still answers all eight in time."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(cascade_module, "DEADLINE_MARGIN_S", 0.5)
    running, _ = cascade
    row = digits_rows()[0]
    held = [f"held-{i}" for i in range(8)]
    with ThreadPoolExecutor(len(held)) as pool:
        waiting = [pool.submit(running.stub.Predict, _request(row, model="digits-hang", request_id=request_id,
                                                              context={"allowed_labels": "x"}), timeout=5.0)
                   for request_id in held]
        wait_until(lambda: all(llm.attempts[("hang", request_id)] for request_id in held),
                   "every held call to wait on the tier", timeout=10, interval=0.01)
        canary = running.stub.Predict(_request(row, max_tier=0), timeout=2.0)
        assert canary.model == "digits" and canary.decision in (pb.ANSWER, pb.ABSTAIN, pb.ESCALATE)
        assert all(not future.done() for future in waiting)  # the canary was answered while they were held
        for future in waiting:
            response = future.result()
            assert response.decision == pb.ESCALATE and "timed out" in response.tiers[1].reasons[0].message


def test_a_failing_tier_opens_its_circuit(cascade) -> None:
    running, reader = cascade
    row = digits_rows()[0]
    request = _request(row, model="digits-down", context={"allowed_labels": "x"})
    first, second, third = (running.stub.Predict(request) for _ in range(3))
    assert [r.tiers[1].calls for r in (first, second, third)] == [1, 1, 0]
    assert "HTTP 500" in first.tiers[1].reasons[0].message
    assert "circuit is open" in third.tiers[1].reasons[0].message and third.tiers[1].cost == 0
    assert third.decision == pb.ESCALATE

    (tier,) = running.stub.GetModel(pb.GetModelRequest(name="digits-down")).tiers
    assert (tier.name, tier.kind, tier.circuit, tier.cost) == ("down", "openai", "open", 10.0)
    gauge = by(points(reader)["smallguard.tier.circuit_open"], "smallguard.model.name", "smallguard.tier.name")
    assert gauge[("digits-down", "down")] == 1.0 and gauge[("digits", "llm")] == 0.0


def test_a_remote_guard_answers_as_a_tier(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    """A second real smallguard server serves the stronger model, its span in the caller's trace under the tier
    call's; when it goes down, the tier says so."""
    remote_repository = tmp_path / "remote"
    _bundle(remote_repository, "digits", threshold=0.5)
    remote = start_server(remote_repository)
    local_repository = tmp_path / "local"
    _bundle(local_repository, "digits", f"  - {{name: remote, kind: guard, address: '{remote.address}', cost: 3, "
                                        "timeout_ms: 2000}\n")
    local = start_server(local_repository)
    try:
        row, _ = _low_confidence_rows(local.stub)[0]
        response = local.stub.Predict(_request(row, request_id="case-1"))
        assert response.decision == pb.ANSWER and response.answered_by == "remote"
        tier = response.tiers[1]
        assert (tier.kind, tier.calls, tier.cost, tier.threshold) == ("guard", 1, 3.0, 0.5)
        assert response.request_id == "case-1"
        deadline = time.monotonic() + 5
        while len([s for s in spans.get_finished_spans() if s.name == "/smallguard.v1.Guard/Predict"]) < 2 \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        finished = spans.get_finished_spans()
        (tier_span,) = [s for s in finished if s.name == "smallguard.tier.call"]
        remote_span = next(s for s in finished if s.name == "/smallguard.v1.Guard/Predict"
                           and s.parent is not None and s.parent.span_id == tier_span.context.span_id)
        assert remote_span.context.trace_id == tier_span.context.trace_id
        info = local.stub.GetModel(pb.GetModelRequest(name="digits")).tiers[0]
        assert info.target == f"{remote.address} model digits"

        remote.server._service.refusing = True  # the remote draining on SIGTERM: it refuses new calls
        draining = local.stub.Predict(_request(row), timeout=5)
        assert draining.decision == pb.ESCALATE
        (reason,) = draining.tiers[1].reasons
        assert "UNAVAILABLE" in reason.message and "shutting down" in reason.message
        assert draining.tiers[1].calls == 2  # retried once (retries: 1), UNAVAILABLE being safe to retry
        remote.stop()
        down = local.stub.Predict(_request(row), timeout=5)
        assert down.decision == pb.ESCALATE
        (reason,) = down.tiers[1].reasons
        assert reason.code == pb.Reason.TIER_ERROR and "UNAVAILABLE" in reason.message
    finally:
        local.stop()
        remote.server.stop(0)


def test_the_key_goes_only_into_the_authorization_header(tmp_path: Path, llm: LlmStandIn,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-secret-1234")
    _bundle(tmp_path, "digits", _llm("llm", llm.endpoint, "label:0", api_key_env="TEST_LLM_KEY"))
    running = start_server(tmp_path)
    try:
        row = next(r for r in digits_rows() if r["label"] == "3")
        response = running.stub.Predict(_request(row, context={"allowed_labels": "0"}))
        assert llm.requests[-1]["headers"]["Authorization"] == "Bearer sk-secret-1234"
        info = running.stub.GetModel(pb.GetModelRequest(name="digits"))
        assert "sk-secret" not in str(response) and "sk-secret" not in str(info)
    finally:
        running.stop()


@pytest.mark.parametrize(("bundles", "problem"), [
    ({"digits": "  - {kind: bundle, bundle: nowhere}\n"}, "escalation tier 'bundle': no model named 'nowhere'"),
    ({"digits": "  - {kind: bundle, bundle: digits-b}\n", "digits-b": "  - {kind: bundle, bundle: digits}\n"},
     "the bundles escalate in a cycle, digits -> digits-b -> digits"),
    ({"digits": "  - {kind: bundle, bundle: digits}\n"}, "'digits' is this bundle"),
    ({"digits": "  - {kind: bundle, bundle: invoice-extractor}\n"}, "is a extractor, this one a classifier"),
    ({"digits": "  - {kind: openai, endpoint: 'http://127.0.0.1:1/v1', model: m, api_key_env: NO_SUCH_KEY_VAR}\n"},
     "the environment variable NO_SUCH_KEY_VAR that holds its key is not set"),
    ({"digits": "  - {kind: openai, endpoint: 'http://127.0.0.1:1/v1', model: m, prompt: 'see $image'}\n"},
     "prompt uses $image"),
    ({"digits": "  - {kind: openai, endpoint: '127.0.0.1:1', model: m}\n"}, "expected an http:// or https://"),
    ({"digits": "  - {kind: guard, address: 'localhost', cost: -1}\n"}, "expected host:port"),
    ({"digits": "  - {kind: guard, address: 'localhost:1', cost: -1}\n"}, "escalation[0].cost: expected a number >= 0"),
    ({"digits": "  - {kind: person}\n"}, "escalation[0].kind: 'person' is not allowed"),
    ({"digits": "  - {kind: guard, address: 'h:1'}\n  - {kind: guard, address: 'h:2'}\n"},
     "tier names must be unique, ['guard'] repeat"),
])
def test_a_bad_escalation_list_refuses_start_up(tmp_path: Path, bundles: dict[str, str], problem: str) -> None:
    for name, escalation in bundles.items():
        _bundle(tmp_path, name, escalation)
    if "invoice-extractor" in str(bundles):
        for name in ("invoice-extractor", "invoice-extractor-large"):
            shutil.copytree(MODELS / name, tmp_path / name)
    with pytest.raises(BundleError) as caught:
        build_guard(Settings(model_repository=tmp_path)).close()
    assert problem in str(caught.value)
    assert "bundle.yaml" in str(caught.value)


def test_a_tier_at_its_concurrency_limit_is_skipped_not_queued(tmp_path: Path, llm: LlmStandIn) -> None:
    """max_concurrency 1 and a tier that hangs: while one request waits on it, another is told the tier is busy
    at once, and goes on (here: to ESCALATE)."""
    from concurrent.futures import ThreadPoolExecutor

    _bundle(tmp_path, "digits", _llm("slow", llm.endpoint, "hang", timeout_ms=1500, max_concurrency=1))
    running = start_server(tmp_path)
    try:
        row = digits_rows()[0]
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(running.stub.Predict, _request(row, request_id="busy-first",
                                                               context={"allowed_labels": "x"}), timeout=10)
            deadline = time.monotonic() + 10
            while not llm.attempts[("hang", "busy-first")] and time.monotonic() < deadline:
                time.sleep(0.01)  # until the first call waits on the tier
            started = time.monotonic()
            second = running.stub.Predict(_request(row, request_id="busy-second", context={"allowed_labels": "x"}),
                                          timeout=10)
            waited = time.monotonic() - started
            assert "timed out" in first.result().tiers[1].reasons[0].message
        (reason,) = second.tiers[1].reasons
        assert reason.code == pb.Reason.TIER_ERROR and "1 calls already in flight (max_concurrency)" in reason.message
        assert second.tiers[1].calls == 0 and second.decision == pb.ESCALATE
        assert waited < 1.0  # refused at once, not after the first call's 1.5 s
    finally:
        running.stop()


def test_batch_items_go_through_the_cascade_one_by_one(cascade) -> None:
    running, _ = cascade
    low = [row for row, _ in _low_confidence_rows(running.stub)[:3]]
    confident = next(r for r in digits_rows() if running.stub.Predict(_request(r)).decision == pb.ANSWER)
    items = [digits_request(row["pixels"]) for row in [*low, confident]]
    for item in items:
        item.model = ""
    batch = running.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=items))
    results = [result.response for result in batch.results]
    assert [r.answered_by for r in results] == ["strong", "strong", "strong", "digits"]
    assert [len(r.tiers) for r in results] == [2, 2, 2, 0]
    singles = [running.stub.Predict(_request(row)) for row in [*low, confident]]
    assert [(r.decision, r.classification.label, r.cost) for r in results] == [
        (s.decision, s.classification.label, s.cost) for s in singles]
    # in columns: each item's tiers, cost and answer, as the results give them
    columns = running.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=items,
                                                               layout=pb.BATCH_LAYOUT_COLUMNS)).columns
    assert [entry.item for entry in columns.tiers] == [0, 1, 2] and list(columns.answered_by) == [
        "strong", "strong", "strong", "digits"]
    assert list(columns.costs) == [r.cost for r in results] and columns.costs[0] > 0
    assert untimed(results_of(columns), ids=False) == untimed(batch.results, ids=False)  # every field of each
