"""`smallguard serve` exports its spans where the standard OTEL_* variables say.

The receiver is a real OTLP/gRPC trace collector built from OpenTelemetry's own protocol
definitions (the opentelemetry-proto package), so what is checked is what a collector gets.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import digits_request, digits_rows

pytestmark = pytest.mark.e2e

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: queue.Queue[tuple[dict[str, object], object]] = queue.Queue()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.put((resource, span))
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield receiver, port
    server.stop(0)


@contextmanager
def serving(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], guard_pb2_grpc.GuardStub]]:
    """`smallguard serve` on a free port with extra environment; yields the process and a stub."""
    command = [sys.executable, "-m", "smallguard.server.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")} | env
    with subprocess.Popen(command, env=full_env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("smallguard serving on port"), line + (process.stderr.read() if process.stderr
                                                                          else "")
            port = int(line.split()[-1])
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield process, guard_pb2_grpc.GuardStub(channel)
        finally:
            if process.poll() is None:
                process.kill()


def _predict_with_caller_trace(stub: guard_pb2_grpc.GuardStub) -> pb.PredictResponse:
    row = digits_rows()[1]
    return stub.Predict(digits_request(row["pixels"]), metadata=(("traceparent", TRACEPARENT),))


def test_spans_go_to_the_otlp_endpoint_with_the_callers_trace_id(collector: tuple[Collector, int]) -> None:
    receiver, port = collector
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_SERVICE_NAME": "smallguard-test",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with serving(env) as (process, stub):
        response = _predict_with_caller_trace(stub)
        assert response.trace_id == TRACE_ID
        spans = {}
        while len(spans) < 3:
            resource, span = receiver.spans.get(timeout=30)
            spans[span.name] = (resource, span)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)  # reads both pipes while it waits: a full pipe would block the server
        assert process.returncode == 0
    assert set(spans) == {"/smallguard.v1.Guard/Predict", "smallguard.model.run", "smallguard.verifiers.run"}
    resource, server_span = spans["/smallguard.v1.Guard/Predict"]
    assert resource["service.name"] == "smallguard-test"
    assert all(span.trace_id.hex() == TRACE_ID for _, span in spans.values())
    attributes = {kv.key: kv.value for kv in server_span.attributes}
    assert attributes["smallguard.model.name"].string_value == "digits"
    assert attributes["smallguard.decision"].string_value == pb.Decision.Name(response.decision)
    assert attributes["smallguard.confidence"].double_value == pytest.approx(response.confidence)


def test_console_exporter_prints_the_spans_and_none_prints_nothing() -> None:
    for exporter, expect_spans in (("console", True), ("none", False)):
        with serving({"OTEL_TRACES_EXPORTER": exporter}) as (process, stub):
            _predict_with_caller_trace(stub)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)  # reads both pipes while it waits (a full one blocks)
            assert process.returncode == 0
        names = [json.loads(block)["name"] for block in _json_blocks(output)]
        if expect_spans:
            assert "/smallguard.v1.Guard/Predict" in names and "smallguard.model.run" in names
        else:
            assert names == []


def _json_blocks(text: str) -> Iterator[str]:
    """The console exporter prints one indented JSON object per span."""
    depth, start = 0, None
    for i, char in enumerate(text):
        if char == "{":
            depth, start = depth + 1, (i if depth == 0 else start)
        elif char == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                yield text[start:i + 1]
