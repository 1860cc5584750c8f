"""The committed generated code is exactly what scripts/generate-proto.sh makes from the proto."""

import os
import subprocess
import sys
from pathlib import Path

import grpc

from smallguard.server.transport.servicer import GuardService
from smallguard.v1 import guard_pb2
from tests.conftest import ROOT

# generated under OUT_DIR -> committed in the tree
GENERATED = {f"smallguard/v1/{name}": f"proto/smallguard/v1/{name}"
             for name in ("guard_pb2.py", "guard_pb2.pyi", "guard_pb2_grpc.py")} | {
    f"server/bundle/{name}": f"server/bundle/{name}" for name in ("onnx_graph_pb2.py", "onnx_graph_pb2.pyi")}


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "generate-proto.sh"), str(tmp_path)], check=True,
                   env={**os.environ, "PYTHON": sys.executable})
    for fresh, committed in GENERATED.items():
        assert (tmp_path / fresh).read_text() == (ROOT / committed).read_text(), (
            f"{committed} is stale: run `make proto` and commit the result")


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_every_rpc_in_the_proto_has_a_handler() -> None:
    handlers = GuardService(guard=None, max_request_bytes=1, max_batch_items=1).method_handlers()  # type: ignore[arg-type]
    service = guard_pb2.DESCRIPTOR.services_by_name["Guard"]
    assert sorted(handlers) == sorted(method.name for method in service.methods)
