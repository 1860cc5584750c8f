"""What the process started by `smallguard serve` loads, and what it does not do when nothing exports traces."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import grpc

from smallguard.v1 import guard_pb2_grpc
from tests.conftest import SMALLGUARD, digits_request, digits_rows, free_port

OFFLINE = ("matplotlib", "sklearn", "rich", "smallguard.server.commands")


def test_serve_never_imports_the_offline_stack_and_builds_no_trace_without_an_exporter(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "imports.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(PYTHONPROFILEIMPORTTIME="1", SMALLGUARD_HOST="127.0.0.1", SMALLGUARD_PORT=str(port))
    with log.open("w") as stderr, subprocess.Popen([*SMALLGUARD, "serve"], env=env, stdout=subprocess.DEVNULL,
                                                   stderr=stderr) as process:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=60)
                stub = guard_pb2_grpc.GuardStub(channel)
                response = stub.Predict(digits_request(digits_rows()[0]["pixels"]))
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert response.classification.label and response.trace_id == ""  # served, and no span was made for it
    imported = [line.rsplit("|", 1)[-1].strip() for line in log.read_text().splitlines()
                if line.startswith("import time:") and "|" in line]
    assert "onnxruntime" in imported and "grpc" in imported  # the log is the serving process's own
    assert [name for name in imported if name.startswith(OFFLINE)] == []
