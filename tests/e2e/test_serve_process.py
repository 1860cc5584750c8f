"""What the process started by `smallguard serve` loads, and what it does not do when nothing exports traces."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import grpc
import pytest

from smallguard.v1 import guard_pb2_grpc
from tests.conftest import SMALLGUARD, digits_request, digits_rows, free_port, serving, starting

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
    assert [name for name in imported if name.startswith(("starlette", "uvicorn", "jinja2"))] == []  # no console
    # the rule verifier is loaded with every plugin, but CEL (7 MiB) only by a bundle that has a rule
    loaded = next(line for line in log.read_text().splitlines() if "verifiers in smallguard.verifiers:" in line)
    assert "rule" in loaded.split(": ", 1)[1].split(", ")
    assert [name for name in imported if name.startswith("cel_expr_python")] == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_load_fails_no_call_in_flight(workers: str) -> None:
    """32 callers in a closed loop, then SIGTERM: health says NOT_SERVING at once, every call sent before the
    signal is answered, later ones are served during the drain or refused with UNAVAILABLE (safe to send
    again), and the processes exit within the grace. (Before: about 23 of 32 calls in flight came back
    CANCELLED and the server was gone in 60 ms.)"""
    import threading
    import time

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()
    request = digits_request(digits_rows()[0]["pixels"])
    calls: list[tuple[float, str]] = []  # (sent at, status)
    done = threading.Event()
    with serving("--workers", workers, "--drain-seconds", "1", "--grace-seconds", "5", port=port) as process, \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        assert stub.Predict(request, timeout=30).request_id

        def caller() -> None:
            while not done.is_set():
                sent = time.monotonic()
                try:
                    stub.Predict(request, timeout=30)
                    calls.append((sent, "OK"))
                except grpc.RpcError as error:
                    calls.append((sent, error.code().name))
                    time.sleep(0.02)

        threads = [threading.Thread(target=caller, daemon=True) for _ in range(32)]  # a failure below: no hang
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:  # within the drain: the signal reaches the worker's main thread among 32 callers' threads
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        code = process.wait(timeout=15)
        exited = time.monotonic() - signalled
        done.set()
        for thread in threads:
            thread.join(timeout=35)
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert code == 0 and exited < 5 + 1
    before = [status for sent, status in calls if sent < signalled]
    assert len(before) > 50 and set(before) == {"OK"}, sorted(set(before))
    assert {status for sent, status in calls if sent >= signalled} <= {"OK", "UNAVAILABLE", "CANCELLED"}


def test_a_sigterm_while_the_workers_start_stops_them_all() -> None:
    """The supervisor handles signals before it starts its workers: a SIGTERM that comes while they start reaches
    every one (those it had not listed yet too), all stop, and nothing is left serving the port."""
    port = free_port()
    with starting("--workers", "2", port=port, catching=signal.SIGTERM) as process:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, process.output()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=2)


def _thread_affinities(pid: int) -> set[frozenset[int]]:
    """The CPU sets of the threads of process ``pid``; a thread that ends while they are read is left out (gRPC's
    own pool lets idle threads go)."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found.add(frozenset(os.sched_getaffinity(int(tid))))
        except ProcessLookupError:
            continue
    return found


def children_of(pid: int, count: int, timeout: float = 60.0) -> list[int]:
    """The processes ``pid`` started, once there are ``count`` of them."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        children = []
        for entry in os.listdir("/proc"):
            try:
                stat = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
            except (FileNotFoundError, ProcessLookupError):
                continue
            if stat and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                children.append(int(entry))
        if len(children) >= count or time.monotonic() > deadline:
            return children
        time.sleep(0.1)


@pytest.mark.parametrize(("flags", "pinned"), [
    (("--pin-workers", "1"), True),
    (("--pin-workers", "0"), False),
    (("--intra-op-threads", "2"), False),  # a model run on several CPUs: not pinned to one
], ids=["pinned", "told not to", "several intra-op threads"])
def test_each_worker_runs_on_a_cpu_of_its_own_unless_told_not_to(flags: tuple[str, str], pinned: bool) -> None:
    allowed = frozenset(os.sched_getaffinity(0))
    port = free_port()
    with serving("--workers", "2", *flags, port=port) as process:
        workers = children_of(process.pid, 2)
        assert len(workers) == 2
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # serving: gRPC's and onnxruntime's threads exist
            stub = guard_pb2_grpc.GuardStub(channel)
            for _ in range(10):
                assert stub.Predict(digits_request(digits_rows()[0]["pixels"]), timeout=30).request_id
        # every thread of each worker, gRPC's and onnxruntime's included
        affinities = [_thread_affinities(worker) for worker in workers]
    if not pinned:
        assert affinities == [{allowed}, {allowed}]
        return
    cpus = []
    for threads in affinities:
        (one,) = threads  # all threads of a worker alike
        assert len(one) == 1 and one <= allowed
        cpus.append(next(iter(one)))
    assert len(set(cpus)) == min(2, len(allowed))


def test_worker_cpus_take_the_allowed_cpus_in_turn_from_an_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    from smallguard.server import cli

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {7, 0, 5, 2})
    assert cli.worker_cpus(3, seed=6) == [5, 7, 0]  # sorted 0, 2, 5, 7; from the third (6 % 4)
    assert cli.worker_cpus(6, seed=0) == [0, 2, 5, 7, 0, 2]  # more workers than CPUs: round robin
    monkeypatch.delattr(os, "sched_getaffinity")
    assert cli.worker_cpus(2, seed=0) == [None, None]  # where the OS cannot pin
