"""The servers of benchmarks/server_shape.py, and what the benchmark reads of their processes.

- ``ServerUnderTest``: one server under test as subprocesses (``smallguard serve``, or one or two bare
  baselines on one port): started, pinned, waited for, its CPU time read from /proc, stopped.
- ``serve_bare``: the baseline, a bare sync ``grpc.server`` that decodes, runs the ONNX model and answers.
- ``serve_with_gc_log``: ``smallguard serve`` in this process, timing every garbage collection.
- ``OtlpReceiver``: a local OTLP/gRPC collector that only counts what it receives.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import grpc
from shape_load import BATCH_ITEMS

from smallguard.v1 import guard_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "models" / "digits"
SCRIPT = Path(__file__).resolve().parent / "server_shape.py"
SERVICE = "smallguard.v1.Guard"
READY_MARK = "serving on port"  # what `smallguard serve` and the bare server print once they serve
# The grpc options smallguard's own server uses (server/transport/server.py).
GRPC_OPTIONS = [("grpc.so_reuseport", 1),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024)]
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------ /proc


def _stat_fields(pid: int, task: str = "") -> list[str] | None:
    """/proc/PID/stat (or one thread's, /proc/PID/task/TASK/stat) from field 3 (state) on; None when gone."""
    try:
        text = Path(f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()


def _cpu_ticks(fields: list[str] | None) -> int:
    return 0 if fields is None else int(fields[11]) + int(fields[12])  # utime + stime: fields 14 and 15 of proc(5)


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of these processes (all their threads), in seconds."""
    return sum(_cpu_ticks(_stat_fields(pid)) for pid in pids) / _TICK


def thread_cpu_seconds(pids: Iterable[int], name: str) -> float:
    """utime + stime of the threads of these processes that the OS knows by ``name``, in seconds."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                if Path(f"/proc/{pid}/task/{task}/comm").read_text().strip() == name:
                    total += _cpu_ticks(_stat_fields(pid, task))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return total / _TICK


def descendants(roots: Iterable[int]) -> set[int]:
    """Every live process below ``roots`` (the workers a ``--workers`` supervisor started)."""
    parent_of = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            parent_of[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = set(roots)
    for _ in range(8):  # a supervisor and its workers: two levels deep
        frontier = {pid for pid, parent in parent_of.items() if parent in frontier} - found
        if not frontier:
            break
        found |= frontier
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of the process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def pin(pid: int, cpus: set[int]) -> int:
    """Set the affinity of every thread of ``pid``; return how many threads were pinned."""
    pinned = 0
    try:
        tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return 0
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
            pinned += 1
        except (ProcessLookupError, PermissionError):
            pass
    return pinned


def cpu_ticks() -> dict[str, tuple[int, int]]:
    """Per core of the machine ('cpu0', 'cpu1', ...): (busy, total) clock ticks since boot."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values[:8]]
            idle = numbers[3] + numbers[4]  # idle + iowait
            ticks[name] = (sum(numbers) - idle, sum(numbers))
    return ticks


def busy_share(before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]]) -> dict[str, float]:
    """How busy each core was between two ``cpu_ticks()`` readings (0..1), whoever kept it busy."""
    share = {}
    for name, (busy, total) in after.items():
        busy0, total0 = before.get(name, (busy, total))
        share[name] = (busy - busy0) / (total - total0) if total > total0 else 0.0
    return share


# ------------------------------------------------------------------------------------ servers under test


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without OTEL_* and SMALLGUARD_* (a user's plain shell), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SMALLGUARD_"))}
    return env | dict(extra or {})


def smallguard_command(port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "smallguard.server.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            *flags]


def bare_command(port: int, cpu: int | None = None, model: bool = True) -> list[str]:
    """The bare server's command; ``cpu``: it runs on that CPU alone, as `--workers N` places smallguard's;
    ``model`` False: gRPC alone (see serve_bare)."""
    return [sys.executable, str(SCRIPT), "--serve-bare", "--port", str(port),
            *(["--cpu", str(cpu)] if cpu is not None else []), *([] if model else ["--no-model"])]


def gc_logged_command(log: Path, port: int) -> list[str]:
    return [sys.executable, str(SCRIPT), "--serve-with-gc-log", str(log), *smallguard_command(port)[3:]]


class ServerUnderTest:
    """One configuration's server: its processes (one, or several sharing ``port``), each logging to a file
    and in a session of its own, so that stopping it also stops what it started."""

    def __init__(self, name: str, port: int, commands: Sequence[list[str]], env: Mapping[str, str],
                 log_dir: Path, cpus: set[int] | None, ready_lines: int | None = None) -> None:
        self.name, self.port, self.cpus = name, port, cpus
        self.target = f"127.0.0.1:{port}"
        self.log_path = log_dir / f"{name.replace(' ', '_').replace('+', '_')}.log"
        self.ready_lines = len(commands) if ready_lines is None else ready_lines
        self._commands, self._env = list(commands), dict(env)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        for command in self._commands:
            process = subprocess.Popen(command, env=self._env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                       stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
            self.processes.append(process)
            if self.cpus is not None:
                pin(process.pid, self.cpus)  # before the interpreter starts any thread

    def wait_ready(self, probe: bytes, timeout: float = 120.0) -> None:
        """Until every process printed that it serves and a Predict succeeds; raise after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.log_text().count(READY_MARK) < self.ready_lines:
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not serving after {timeout:g}s\n{self.log_tail()}")
            time.sleep(0.1)
        with grpc.insecure_channel(self.target) as channel:
            predict = channel.unary_unary(f"/{SERVICE}/Predict")
            while True:
                try:
                    predict(probe, timeout=5)
                    break
                except grpc.RpcError as exc:
                    self._check_alive()
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name}: Predict fails: {exc}\n{self.log_tail()}") from None
                    time.sleep(0.2)
        if self.cpus is not None:  # threads started since: pin them too
            for pid in self.pids():
                pin(pid, self.cpus)

    def pids(self) -> list[int]:
        roots = [p.pid for p in self.processes if p.poll() is None]
        return roots + sorted(descendants(roots))

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids())

    def writer_cpu_seconds(self) -> float:
        """The CPU time of the decision log's writer threads (none in the bare server)."""
        # imported here: the bare server and the clients import this module, and must not carry the store's
        from smallguard.server.store.decision_log import WRITER_THREAD

        return thread_cpu_seconds(self.pids(), WRITER_THREAD)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (smallguard drains and exits), then SIGKILL to each session for whatever is left."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # the session it leads: its workers too
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name}: exited with {process.returncode}\n{self.log_tail()}")


# ------------------------------------------------------------------------------------ the bare baseline


def serve_bare(port: int, model: bool = True) -> None:
    """The baseline, or with ``model`` False gRPC alone (see the handlers), on a bare sync grpc.server with
    smallguard's pool size and options. Stops on SIGTERM."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8), options=GRPC_OPTIONS, maximum_concurrent_rpcs=256)
    handlers = {"Predict": _model_handler()} if model else {"Predict": _fixed_handler(),
                                                            "PredictBatch": _fixed_batch_handler()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"bare server: cannot bind 127.0.0.1:{port}")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    server.start()
    print(f"bare server [{os.getpid()}] {READY_MARK} {port}", flush=True)
    stopping.wait()
    server.stop(1).wait()


def _model_handler() -> grpc.RpcMethodHandler:
    """The baseline's Predict: decode, build the array, run the digits model, answer label + probability;
    nothing else (no validation, calibration, verifiers, metrics, tracing or feedback record)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(DIGITS / "model.onnx"), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    session.run(["probabilities"], {"pixels": np.zeros((1, 64), dtype=np.float32)})  # warm-up, as smallguard

    def predict(raw: bytes, context: grpc.ServicerContext) -> pb.PredictResponse:
        request = pb.PredictRequest.FromString(raw)
        pixels = np.asarray(request.inputs[0].contents.float_contents, dtype=np.float32).reshape(1, 64)
        probabilities = session.run(["probabilities"], {"pixels": pixels})[0][0]
        best = int(probabilities.argmax())
        return pb.PredictResponse(model="digits", decision=pb.ANSWER, classification=pb.Classification(
            label=str(best), probability=float(probabilities[best])))
    return grpc.unary_unary_rpc_method_handler(predict, response_serializer=pb.PredictResponse.SerializeToString)


def _fixed_handler() -> grpc.RpcMethodHandler:
    """gRPC alone: the same encoded response to every call, its request received but not decoded. What gRPC's
    sync server itself costs, the floor under the bare server and every other."""
    fixed = pb.PredictResponse(model="digits", decision=pb.ANSWER, classification=pb.Classification(
        label="0", probability=1.0)).SerializeToString()

    def answer(_raw: bytes, _context: grpc.ServicerContext) -> bytes:
        return fixed
    return grpc.unary_unary_rpc_method_handler(answer)


def _fixed_batch_handler() -> grpc.RpcMethodHandler:
    """gRPC alone for PredictBatch: one encoded response of BATCH_ITEMS answers the size and shape of smallguard's
    (its request id, decision, top 3, confidences and one verifier result each), its request received but not
    decoded. The floor gRPC's sync server sets under a batch item."""
    answer = pb.PredictResponse(
        request_id="0" * 32, model="digits", model_version="1.0.0", decision=pb.ANSWER, answered_by="digits",
        classification=pb.Classification(label="8", probability=0.9774173168329853, top_k=[
            pb.LabelScore(label=label, probability=p) for label, p in (("8", 0.97741731), ("9", 0.02125134),
                                                                       ("3", 0.00034292))]),
        confidence=0.9774173168329853, raw_confidence=0.915153980255127, threshold=0.9711473249619829,
        verifiers=[pb.VerifierResult(name="label-allowed", use="label-allowed", status=pb.VerifierResult.SKIPPED,
                                     message="the request context has no 'allowed_labels'", on_fail=pb.ESCALATE,
                                     duration_ms=0.024165)])
    fixed = pb.PredictBatchResponse(results=[pb.PredictBatchResult(response=answer)] * BATCH_ITEMS)
    encoded = fixed.SerializeToString()

    def answer_batch(_raw: bytes, _context: grpc.ServicerContext) -> bytes:
        return encoded
    return grpc.unary_unary_rpc_method_handler(answer_batch)


# ------------------------------------------------------------------------------------ GC pauses in a server


class GcPauses:
    """Times every collection by generation, from ``gc.callbacks``; collections never nest (they hold the GIL).

    Only collections while serving count: ``smallguard serve`` collects once and freezes what start-up
    loaded (``gc.freeze``) before it opens its port, so a collection with nothing frozen yet is start-up's
    and goes to its own entry, "startup"."""

    SLOW_S = 0.020

    def __init__(self) -> None:
        self._began = 0.0
        self._serving = False  # once start-up has frozen what it loaded (it stays frozen)
        self.by_generation = {g: {"collections": 0, "max_ms": 0.0, "total_ms": 0.0, "over_20ms": 0}
                              for g in (0, 1, 2, "startup")}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        took = time.perf_counter() - self._began
        # gc.get_freeze_count() walks the frozen objects (a few ms with the server's start-up frozen): asked only
        # until it is not zero, or every collection paid for it and the soak measured this callback
        self._serving = self._serving or gc.get_freeze_count() > 0
        entry = self.by_generation[info["generation"] if self._serving else "startup"]
        entry["collections"] += 1
        entry["total_ms"] += took * 1000
        entry["max_ms"] = max(entry["max_ms"], took * 1000)
        entry["over_20ms"] += took > self.SLOW_S

    def write(self, path: Path) -> None:
        path.write_text(json.dumps({str(g): v for g, v in self.by_generation.items()}, indent=1))


def serve_with_gc_log(log: Path, argv: list[str]) -> int:
    """``smallguard serve`` in this process; the GC pauses go to ``log`` when it returns (SIGTERM makes it)."""
    import gc

    from smallguard.server.cli import main as smallguard_main

    pauses = GcPauses()
    gc.callbacks.append(pauses)
    try:
        return smallguard_main(argv if argv[:1] == ["serve"] else ["serve", *argv])
    finally:
        gc.callbacks.remove(pauses)
        pauses.write(log)


# ------------------------------------------------------------------------------------ a counting OTLP receiver


class OtlpReceiver:
    """An OTLP/gRPC collector on loopback that counts spans (and metric exports) and keeps nothing."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.spans = 0
        self.metric_exports = 0
        self._lock = threading.Lock()
        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
                count = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
                with receiver._lock:
                    receiver.spans += count
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
                with receiver._lock:
                    receiver.metric_exports += 1
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.spans, self.metric_exports

    def stop(self) -> None:
        self._server.stop(0).wait()

    def traced_env(self) -> dict[str, str]:
        """A server's environment for the issue's traced configuration: every span sampled and exported over OTLP
        to this receiver. (The signal-wide OTEL_EXPORTER_OTLP_ENDPOINT would send the metrics over OTLP as well,
        with the SDK's histograms; they go to the Prometheus endpoint instead.)"""
        return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{self.port}",
                "OTEL_TRACES_SAMPLER": "always_on"}
