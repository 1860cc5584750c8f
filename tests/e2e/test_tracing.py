"""Spans, read back with an in-memory exporter: one server span per Predict with its children."""

from __future__ import annotations

import time

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from smallguard.v1 import guard_pb2 as pb
from tests.conftest import Running, digits_request, digits_rows

pytestmark = pytest.mark.e2e

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def finished(spans: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    """The server ends its span as it sends the reply, so give it a moment to be exported."""
    deadline = time.monotonic() + 5
    while len(spans.get_finished_spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(spans.get_finished_spans())


def test_predict_span_continues_the_callers_trace_and_has_model_and_verifier_children(
    shipped: Running, spans: InMemorySpanExporter
) -> None:
    metadata = (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),)
    row = digits_rows()[0]
    response = shipped.stub.Predict(digits_request(row["pixels"], context={"allowed_labels": "0"}),
                                    metadata=metadata)
    assert response.trace_id == CALLER_TRACE

    by_name = {span.name: span for span in finished(spans, 3)}
    server = by_name["/smallguard.v1.Guard/Predict"]
    assert server.kind is SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert format(server.parent.span_id, "016x") == CALLER_SPAN
    for child in ("smallguard.model.run", "smallguard.verifiers.run"):
        assert by_name[child].parent.span_id == server.context.span_id
        assert by_name[child].context.trace_id == server.context.trace_id

    attributes = server.attributes
    assert attributes["smallguard.model.name"] == "digits"
    assert attributes["smallguard.model.version"] == response.model_version
    assert attributes["smallguard.request_id"] == response.request_id
    assert attributes["smallguard.decision"] == pb.Decision.Name(response.decision)
    assert list(attributes["smallguard.reasons"]) == [pb.Reason.Code.Name(r.code) for r in response.reasons]
    assert attributes["smallguard.confidence"] == pytest.approx(response.confidence)
    assert attributes["smallguard.confidence.raw"] == pytest.approx(response.raw_confidence)
    expected_failed = [] if row["label"] == "0" else ["label-allowed"]
    assert list(attributes["smallguard.verifiers.failed"]) == expected_failed
    assert list(by_name["smallguard.verifiers.run"].attributes["smallguard.verifiers.failed"]) == expected_failed


def test_a_call_without_trace_context_starts_a_new_trace(shipped: Running, spans: InMemorySpanExporter) -> None:
    response = shipped.stub.Predict(digits_request(digits_rows()[1]["pixels"]))
    assert len(response.trace_id) == 32 and response.trace_id != CALLER_TRACE
    server = next(s for s in finished(spans, 3) if s.name == "/smallguard.v1.Guard/Predict")
    assert server.parent is None
    assert format(server.context.trace_id, "032x") == response.trace_id


def test_health_probes_and_reflection_are_kept_out_of_traces(shipped: Running, spans: InMemorySpanExporter) -> None:
    stub = health_pb2_grpc.HealthStub(shipped.channel)
    for _ in range(3):
        stub.Check(health_pb2.HealthCheckRequest())
    listed = reflection_pb2_grpc.ServerReflectionStub(shipped.channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    assert "smallguard.v1.Guard" in {s.name for reply in listed for s in reply.list_services_response.service}
    shipped.stub.ListModels(pb.ListModelsRequest())
    names = [s.name for s in finished(spans, 1)]
    assert names == ["/smallguard.v1.Guard/ListModels"]


def test_a_batch_has_one_server_span_and_one_model_run_and_every_item_carries_the_trace(
    shipped: Running, spans: InMemorySpanExporter
) -> None:
    metadata = (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),)
    items = [digits_request(row["pixels"]) for row in digits_rows()[:5]]
    batch = shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=items), metadata=metadata)
    assert [result.response.trace_id for result in batch.results] == [CALLER_TRACE] * 5

    by_name = {span.name: span for span in finished(spans, 2)}
    server, run = by_name["/smallguard.v1.Guard/PredictBatch"], by_name["smallguard.model.run"]
    assert server.kind is SpanKind.SERVER and format(server.context.trace_id, "032x") == CALLER_TRACE
    assert run.parent is not None and run.parent.span_id == server.context.span_id
    assert server.attributes["smallguard.batch.size"] == 5 and run.attributes["smallguard.batch.size"] == 5
    assert server.attributes["smallguard.model.name"] == "digits"
    assert len(spans.get_finished_spans()) == 2  # no span per item: the batch is one model run


def test_each_escalation_tier_call_is_a_span_under_the_predict_span(
    shipped: Running, spans: InMemorySpanExporter
) -> None:
    """The shipped invoice extractor escalates an invoice in a layout it never saw to its large tier."""
    import json

    from tests.conftest import MODELS

    lines = (MODELS / "invoice-extractor" / "data" / "unseen.jsonl").read_text().splitlines()
    text = json.loads(lines[-1])["text"]  # the dot-leader half, which the small model escalates
    response = shipped.stub.Predict(pb.PredictRequest(model="invoice-extractor", text=text))
    assert [tier.name for tier in response.tiers] == ["invoice-extractor", "large"]

    by_name = {span.name: span for span in finished(spans, 4)}
    server, tier = by_name["/smallguard.v1.Guard/Predict"], by_name["smallguard.tier.call"]
    assert tier.parent.span_id == server.context.span_id
    assert tier.attributes["smallguard.tier.name"] == "large"
    assert tier.attributes["smallguard.tier.kind"] == "bundle"
    assert tier.attributes["smallguard.tier.decision"] == pb.Decision.Name(response.tiers[1].decision)
    assert tier.attributes["smallguard.tier.calls"] == 1 and tier.attributes["smallguard.tier.cost"] == 1.0
    assert server.attributes["smallguard.decision"] == pb.Decision.Name(response.decision)  # the final one
    assert server.attributes["smallguard.answered_by"] == response.answered_by
    assert server.attributes["smallguard.cost"] == response.cost


def test_calls_served_together_each_get_the_trace_they_get_alone(shipped: Running,
                                                                 spans: InMemorySpanExporter) -> None:
    """Each call's spans are its own (under its server span, in its trace) with the attributes it gets alone;
    only its model run says it ran in a batch."""
    from tests.e2e.test_served_together import all_at_once

    calls = [digits_request(row["pixels"], request_id=f"traced-{i}",
                            context={"allowed_labels": "0,1,2,3,4" if i % 3 == 0 else "0,1,2,3,4,5,6,7,8,9"})
             for i, row in enumerate(digits_rows()[:40])]

    def traces(count: int) -> dict[str, tuple]:
        """Each trace's spans, by the request id on its server span: what the trace says of the call."""
        found = finished(spans, count)
        spans.clear()
        by_trace: dict[int, list[ReadableSpan]] = {}
        for span in found:
            by_trace.setdefault(span.context.trace_id, []).append(span)
        shown = {}
        for members in by_trace.values():
            (server,) = [s for s in members if s.kind is SpanKind.SERVER]
            children = sorted((s for s in members if s is not server), key=lambda s: s.name)
            assert all(s.parent.span_id == server.context.span_id for s in children)
            assert all(server.start_time <= s.start_time <= s.end_time <= server.end_time for s in children)
            shown[server.attributes["smallguard.request_id"]] = (
                {k: v for k, v in server.attributes.items() if k.startswith("smallguard.")},
                [(s.name, {k: v for k, v in s.attributes.items() if k != "smallguard.batch.size"}) for s in children])
        return shown

    spans.clear()
    for call in calls:
        shipped.stub.Predict(call)
    alone = traces(3 * len(calls))
    assert len(alone) == len(calls)
    together = 0
    for _ in range(30):  # until calls have been served together
        all_at_once([shipped.stub], calls)
        together = sum(1 for s in finished(spans, 3 * len(calls))
                       if s.name == "smallguard.model.run" and s.attributes.get("smallguard.batch.size", 1) > 1)
        assert traces(3 * len(calls)) == alone
        if together:
            break
    assert together, "no two calls were ever served together"
