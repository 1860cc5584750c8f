"""Helpers shared by the end-to-end modules: traffic of every kind, a Prometheus scrape read back,
and a model's health status."""

from __future__ import annotations

import urllib.request
from collections import Counter
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import Running, digits_request, digits_rows


def traffic(stub: guard_pb2_grpc.GuardStub) -> tuple[list[pb.PredictResponse], Counter]:
    """Escalations (labels outside the allowed 0,1), unconstrained calls, a passing check, and three
    rejected calls; returns the answers and the rejected calls' status names."""
    rows = digits_rows()
    others = [row for row in rows if row["label"] not in ("0", "1")]
    requests = [digits_request(row["pixels"], context={"allowed_labels": "0,1"}) for row in others[:4]]
    requests += [digits_request(row["pixels"]) for row in rows[:6]]
    requests += [digits_request(rows[0]["pixels"], context={"allowed_labels": rows[0]["label"]})]
    responses = [stub.Predict(request) for request in requests]
    rejected: Counter = Counter()
    for bad in (digits_request(rows[0]["pixels"][:63]),                      # known model, bad shape
                pb.PredictRequest(model="no-such-model"),
                digits_request([float("nan")] * 64)):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(bad)
        rejected[caught.value.code().name] += 1
    with pytest.raises(grpc.RpcError):  # not a Predict: not counted
        stub.GetModel(pb.GetModelRequest(name="no-such-model"))
    return responses, rejected


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any, name: str, *labels: str) -> Counter:
    totals: Counter = Counter()
    for sample in family.samples:
        if sample.name == name:
            key = tuple(sample.labels[label] for label in labels)
            totals[key if len(labels) > 1 else key[0]] += sample.value
    return totals


def health(running: Running, service: str) -> str:
    stub = health_pb2_grpc.HealthStub(running.channel)
    status = stub.Check(health_pb2.HealthCheckRequest(service=service)).status
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)
