"""The `smallguard` command as an operator runs it: real processes, real ports, real signals."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import (
    DIGITS,
    MODELS,
    SMALLGUARD,
    copy_bundle,
    digits_request,
    digits_rows,
    free_port,
    serving,
)

pytestmark = pytest.mark.e2e
GOOD = (DIGITS / "bundle.yaml").read_text()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMALLGUARD, *args], capture_output=True, text=True, timeout=120, check=False)


def test_models_lists_the_shipped_bundles() -> None:
    result = run("models")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"model repository: {MODELS}" in result.stdout
    assert "OK      digits 1.0.0 [classifier]" in result.stdout
    assert "label-allowed(escalate)" in result.stdout


def test_models_says_why_a_bundle_would_be_refused(tmp_path: Path) -> None:
    copy_bundle(DIGITS, tmp_path, "good", GOOD)
    copy_bundle(DIGITS, tmp_path, "bad", GOOD.replace("name: digits", "name: bad").replace(
        "use: label-allowed", "use: no-such-verifier"))
    result = run("models", "--model-repository", str(tmp_path))
    assert result.returncode == 1
    assert "OK      digits" in result.stdout
    assert "REFUSED bad:" in result.stdout and "no-such-verifier" in result.stdout


def test_serve_refuses_to_start_with_one_clear_line(tmp_path: Path) -> None:
    copy_bundle(DIGITS, tmp_path, "digits", GOOD.replace("shape: [64]", "shape: [65]"))
    result = run("serve", "--model-repository", str(tmp_path), "--port", "0")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "model.onnx" in errors[0] and "[65]" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("store", "message"), [
    ("mysql://u:secret@db/x", "cannot start: --store 'mysql://u:***@db/x': 'mysql' databases are not supported"),
    ("postgresql://u:secret@127.0.0.1:{port}/x", "cannot start: cannot reach the store "
                                                "postgresql+psycopg://u:***@127.0.0.1:{port}/x"),
])
def test_a_store_that_does_not_parse_or_answer_refuses_start_up_naming_it(store: str, message: str) -> None:
    port = free_port()
    started = time.monotonic()
    result = run("serve", "--port", "0", "--store", store.format(port=port))
    assert result.returncode == 2 and time.monotonic() - started < 60
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message.format(port=port) in errors[0], result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


def test_bad_flag_values_are_named() -> None:
    result = run("serve", "--port", "eighty")
    assert result.returncode == 2 and "--port='eighty': expected int" in result.stderr


def test_serve_answers_then_drains_on_sigterm() -> None:
    port = free_port()
    with serving(port=port) as process, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        response = stub.Predict(digits_request(digits_rows()[0]["pixels"]))
        assert response.decision in (pb.ANSWER, pb.ABSTAIN)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        output = process.output()
        assert "SIGTERM: draining" in output and "stopped" in output


def test_workers_share_one_port_and_stop_together() -> None:
    port = free_port()
    with serving("--workers", "2", port=port) as process, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        deadline = time.monotonic() + 60
        while len(_children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = _children(process.pid)
        assert len(workers) == 2
        for row in digits_rows()[:20]:
            assert stub.Predict(digits_request(row["pixels"])).model == "digits"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.exists():
        return []
    found = []
    for task in tasks.iterdir():
        children = task / "children"
        if children.exists():
            found += [int(p) for p in children.read_text().split()]
    return found
