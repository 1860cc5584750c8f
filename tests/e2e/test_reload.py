"""Changing models without a restart: ReloadModels and SIGHUP load the model repository again while callers
keep calling; none of their calls fails, the new models answer from then on, health follows, and a bundle
that does not load leaves the models served as they were."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import (
    DIGITS,
    copy_bundle,
    digits_request,
    digits_rows,
    free_port,
    serving,
    start_server,
    starting,
    wait_until_serving,
)

pytestmark = pytest.mark.e2e
BUNDLE = (DIGITS / "bundle.yaml").read_text()


def test_a_reload_under_load_drops_no_call_and_serves_the_new_models(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    copy_bundle(DIGITS, repository, "digits", BUNDLE, extra=("reference.json",))
    running = start_server(repository)
    errors: list[str] = []
    versions: set[str] = set()
    answered = [0]
    stop = threading.Event()
    rows = digits_rows()[:50]

    def call() -> None:
        with grpc.insecure_channel(running.address) as channel:
            stub = guard_pb2_grpc.GuardStub(channel)
            i = 0
            while not stop.is_set():
                try:
                    versions.add(stub.Predict(digits_request(rows[i % 50]["pixels"]), timeout=10).model_version)
                    answered[0] += 1
                except grpc.RpcError as error:
                    errors.append(f"{error.code().name}: {error.details()}")
                i += 1

    callers = [threading.Thread(target=call) for _ in range(32)]
    try:
        for caller in callers:
            caller.start()
        time.sleep(0.5)
        (repository / "digits" / "bundle.yaml").write_text(BUNDLE.replace('version: "1.0.0"', 'version: "1.1.0"'))
        copy_bundle(DIGITS, repository, "digits-b", BUNDLE.replace("name: digits", "name: digits-b"))
        reloaded = running.stub.ReloadModels(pb.ReloadModelsRequest(), timeout=60)
        before = answered[0]
        time.sleep(0.5)
        stop.set()
        for caller in callers:
            caller.join()
        assert errors == []
        assert answered[0] > before  # and callers kept being answered after it
        assert {(m.name, m.version) for m in reloaded.models} == {("digits", "1.1.0"), ("digits-b", "1.0.0")}
        assert versions == {"1.0.0", "1.1.0"}  # the old model answered before, the new one after
        assert running.stub.GetModel(pb.GetModelRequest(name="digits"), timeout=10).version == "1.1.0"
        health = health_pb2_grpc.HealthStub(running.channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="digits-b"), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING

        # a bundle that does not load: refused, naming it; the models served stay as they were
        (repository / "digits-b" / "bundle.yaml").write_text(BUNDLE.replace("shape: [64]", "shape: [65]"))
        with pytest.raises(grpc.RpcError) as caught:
            running.stub.ReloadModels(pb.ReloadModelsRequest(), timeout=60)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "digits-b" in caught.value.details() and "[65]" in caught.value.details()
        listed = running.stub.ListModels(pb.ListModelsRequest(), timeout=10)
        assert {(m.name, m.version) for m in listed.models} == {("digits", "1.1.0"), ("digits-b", "1.0.0")}
        assert running.stub.Predict(digits_request(rows[0]["pixels"]), timeout=10).model_version == "1.1.0"

        # a model taken out of the repository leaves the service and its health
        for item in (repository / "digits-b").iterdir():
            item.unlink()
        (repository / "digits-b").rmdir()
        running.stub.ReloadModels(pb.ReloadModelsRequest(), timeout=60)
        with pytest.raises(grpc.RpcError) as caught:
            running.stub.GetModel(pb.GetModelRequest(name="digits-b"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert health.Check(health_pb2.HealthCheckRequest(service="digits-b"), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    finally:
        stop.set()
        running.stop()


def test_sighup_reloads_the_models_of_every_worker(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    copy_bundle(DIGITS, repository, "digits", BUNDLE)
    port = free_port()
    with serving("--model-repository", str(repository), "--workers", "2", port=port) as process:
        (repository / "digits" / "bundle.yaml").write_text(BUNDLE.replace('version: "1.0.0"', 'version: "2.0.0"'))
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        versions: set[str] = set()
        while time.monotonic() < deadline:  # new channels reach either worker: until 8 in a row say 2.0.0
            versions = set()
            for _ in range(8):
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    versions.add(guard_pb2_grpc.GuardStub(channel).GetModel(pb.GetModelRequest(name="digits"),
                                                                            timeout=10).version)
            if versions == {"2.0.0"}:
                break
            time.sleep(0.2)
        assert versions == {"2.0.0"}, process.output()[-4000:]
        assert process.poll() is None  # still serving


def test_a_sighup_while_the_workers_start_does_not_stop_the_server() -> None:
    """SIGHUP's default action ends a process. An operator's SIGHUP that the supervisor passed on to a worker
    still starting (the interpreter, the imports, before its handler) ended that worker, and the supervisor,
    seeing a worker die at start-up, stopped the whole server. A worker now holds SIGHUP back until it can
    handle it: what was sent meanwhile then reloads it."""
    port = free_port()
    with starting("--workers", "2", port=port, catching=signal.SIGHUP) as process:  # before any worker
        until = time.monotonic() + 3  # while the workers start
        while time.monotonic() < until and process.poll() is None:
            process.send_signal(signal.SIGHUP)
            time.sleep(0.02)
        wait_until_serving(process, port)
        deadline = time.monotonic() + 60
        while process.output().count("smallguard serving on port") < 2:
            assert process.poll() is None and time.monotonic() < deadline, process.output()
            time.sleep(0.1)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert guard_pb2_grpc.GuardStub(channel).Predict(digits_request(digits_rows()[0]["pixels"]),
                                                             timeout=30).request_id
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, process.output()
    output = process.output()
    assert "exited" not in output, output  # no worker died, none was restarted
    assert "SIGHUP: reloading the model repository" in output
