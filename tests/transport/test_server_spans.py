"""The server's own span interceptor makes the spans opentelemetry-instrumentation-grpc's interceptor makes.

The same calls go to two real servers on loopback, one with each interceptor, and every span they end is
compared: names, kinds, scopes, parents, attributes in order (the client's port aside), events and statuses.
The calls cover an answer, a continued caller trace with baggage, a refused request (INVALID_ARGUMENT: no
error status), an unknown model (NOT_FOUND), a batch, and the health service (no span at all).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import server_interceptor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from smallguard.server.transport import server as server_module
from smallguard.server.transport import server_spans
from smallguard.server.transport.server_spans import ServerSpans, _peer, tracing_interceptor
from smallguard.v1 import guard_pb2 as pb
from tests.conftest import MODELS, Running, digits_request, digits_rows, start_server, wait_until

pytestmark = pytest.mark.e2e

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[..., grpc.ServerInterceptor]], Running]]:
    started: list[Running] = []

    def serve(interceptor: Callable[..., grpc.ServerInterceptor]) -> Running:
        monkeypatch.setattr(server_module, "tracing_interceptor", interceptor)
        running = start_server(MODELS)
        started.append(running)
        return running

    yield serve
    for running in started:
        running.stop()


def calls(running: Running) -> int:
    """The same calls to either server; how many spans they end."""
    stub = running.stub
    row = digits_rows()[0]
    stub.Predict(digits_request(row["pixels"], context={"allowed_labels": "0"}))
    stub.Predict(digits_request(row["pixels"]), metadata=(("traceparent", TRACEPARENT),
                                                          ("baggage", "tenant=blue")))
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(pb.PredictRequest(model="digits"))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as unknown:
        stub.Predict(pb.PredictRequest(model="no-such-model", inputs=digits_request(row["pixels"]).inputs))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=[digits_request(r["pixels"])
                                                                    for r in digits_rows()[:3]]))
    health = health_pb2_grpc.HealthStub(running.channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    return 2 * 3 + 1 + 1 + 2  # two Predicts of three spans, two refused calls of one, a batch of two


def described(span: ReadableSpan, ids: dict[int, int]) -> tuple[object, ...]:
    attributes = dict(span.attributes)
    if span.kind is SpanKind.SERVER:
        assert attributes.pop("net.peer.port").isdigit()  # each client connection has a port of its own
    for volatile in ("smallguard.request_id",):
        attributes.pop(volatile, None)
    scope = span.instrumentation_scope
    return (span.name, span.kind, (scope.name, scope.version, scope.schema_url),
            format(span.context.trace_id, "032x") == TRACEPARENT.split("-")[1], span.context.trace_flags,
            None if span.parent is None else (span.parent.is_remote, ids.get(span.parent.span_id, "outside")),
            list(attributes.items()),
            [(event.name, {k: v for k, v in event.attributes.items() if k != "exception.stacktrace"})
             for event in span.events],
            (span.status.status_code, span.status.description))


def spans_of(running: Running, spans: InMemorySpanExporter) -> list[tuple[object, ...]]:
    spans.clear()
    count = calls(running)
    wait_until(lambda: len(spans.get_finished_spans()) >= count, "every span ended")
    time.sleep(0.1)  # none more
    ended = list(spans.get_finished_spans())
    assert len(ended) == count
    ids = {span.context.span_id: i for i, span in enumerate(ended)}
    return [described(span, ids) for span in ended]


def test_the_servers_spans_are_the_instrumentations(
        serving: Callable[[Callable[..., grpc.ServerInterceptor]], Running], spans: InMemorySpanExporter) -> None:
    ours = spans_of(serving(ServerSpans), spans)
    theirs = spans_of(serving(lambda traced: server_interceptor(filter_=traced)), spans)
    assert ours == theirs
    by_name = [span[0] for span in ours]
    assert by_name.count("/smallguard.v1.Guard/Predict") == 4 and "/smallguard.v1.Guard/PredictBatch" in by_name
    continued = [span for span in ours if span[0] == "/smallguard.v1.Guard/Predict" and span[5] is not None]
    assert [span[5] for span in continued] == [(True, "outside")]  # the caller's span, from traceparent
    assert [span[3] for span in ours].count(True) == 3  # the continued Predict and its two children


def test_peer_addresses_are_split_as_the_instrumentation_splits_them(caplog: pytest.LogCaptureFixture) -> None:
    assert _peer("ipv4:127.0.0.1:57284") == {"net.peer.ip": "127.0.0.1", "net.peer.port": "57284",
                                             "net.peer.name": "localhost"}
    assert _peer("ipv6:%5B::1%5D:57284") == {"net.peer.ip": "[::1]", "net.peer.port": "57284",
                                             "net.peer.name": "localhost"}
    assert _peer("ipv4:10.2.1.1:57284,127.0.0.1:57284") == {"net.peer.ip": "10.2.1.1", "net.peer.port": "57284"}
    assert _peer("unix:/run/smallguard.sock") == {}
    assert _peer("nonsense") == {}
    assert "Failed to parse peer address 'nonsense'" in caplog.text


def test_a_release_without_the_wrapper_gets_the_instrumentations_interceptor(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(tracing_interceptor(server_module._traced), ServerSpans)
    monkeypatch.setattr(server_spans, "_OpenTelemetryServicerContext", None)
    with caplog.at_level(logging.WARNING):
        fallen_back = tracing_interceptor(server_module._traced)
    assert type(fallen_back).__name__ == "OpenTelemetryServerInterceptor"
    assert "using its own interceptor" in caplog.text
