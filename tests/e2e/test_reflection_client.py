"""A client written without the project: server reflection plus a stock gRPC client (grpc_requests)."""

from __future__ import annotations

import pytest
from grpc_requests import Client

from tests.conftest import Running, digits_rows

pytestmark = pytest.mark.e2e


def test_a_stock_client_finds_the_service_and_gets_a_decision(shipped: Running) -> None:
    client = Client(shipped.address)
    assert "smallguard.v1.Guard" in client.service_names
    assert "grpc.health.v1.Health" in client.service_names
    response = client.request("smallguard.v1.Guard", "Predict", {
        "model": "digits",
        "inputs": [{"name": "pixels", "dtype": "FLOAT32", "shape": [64],
                    "contents": {"float_contents": digits_rows()[0]["pixels"]}}],
        "context": {"allowed_labels": "0,1,2,3,4,5,6,7,8,9"},
    })
    assert response["decision"] in ("ANSWER", "ABSTAIN")
    assert 0 < response["confidence"] <= 1
    assert response["verifiers"][0]["name"] == "label-allowed"
    assert response["verifiers"][0]["status"] == "PASSED"
    assert "reasons" not in response or isinstance(response["reasons"], list)
    health = client.request("grpc.health.v1.Health", "Check", {"service": "digits"})
    assert health["status"] == "SERVING"
