"""Shared fixtures: an in-memory span exporter, and real servers on free loopback ports; and the helpers
several folders use: digits requests, bundle copies, `smallguard calibrate`, in-memory metric points."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from smallguard.server.assembly import create_server
from smallguard.server.observability.lean_spans import LeanTracerProvider
from smallguard.server.settings import Settings
from smallguard.server.transport.server import GuardServer
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.postgres import Cluster

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
DIGITS = MODELS / "digits"
CALIBRATION = DIGITS / "data" / "calibration.jsonl"
TEST = DIGITS / "data" / "test.jsonl"

SMALLGUARD = [sys.executable, "-m", "smallguard.server.cli"]

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session", autouse=True)
def _session_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No server of the tests keeps its default store in the user's ~/.local/state, not even one a module-scoped
    fixture starts before the function-scoped fixtures run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("session-state")))
        yield


@pytest.fixture(autouse=True)
def _own_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's servers (in process, or `smallguard serve` processes, which inherit the environment) keep
    their default store in a folder of the test's own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A private PostgreSQL server for the session (tests/postgres.py)."""
    cluster = Cluster(free_port())
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store on each engine: a SQLite file, and a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("postgres").database()


_HANDED_OUT: set[int] = set()


def free_port(following: int = 0) -> int:
    """A loopback port free now, never one handed out before in this run (two asked for at once differ), with
    the ``following`` ports after it free too (a worker's metrics port is the first one plus its index)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        wanted = range(port, port + following + 1)
        if _HANDED_OUT.isdisjoint(wanted) and all(_bindable(p) for p in wanted[1:]):
            _HANDED_OUT.update(wanted)
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except (OSError, OverflowError):  # taken, or past 65535
            return False
        return True


class ServeProcess(subprocess.Popen[str]):
    """`smallguard serve` whose output a thread reads as it comes: a pipe nobody reads fills up (64 KiB) and
    then blocks the server's next log line. ``output()`` is what it printed so far (all of it once it exited)."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        super().__init__(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.stdout is not None
        try:
            for line in self.stdout:
                self._lines.append(line)
        except (OSError, ValueError):  # closed under it: the process is gone and its output with it
            pass

    def __exit__(self, *exc_info: object) -> None:
        if self.poll() is not None:  # read to the end before Popen closes the pipe
            self._reader.join(timeout=10)
        super().__exit__(*exc_info)

    def output(self) -> str:
        if self.poll() is not None:
            self._reader.join(timeout=10)
        return "".join(self._lines)


@contextmanager
def serving(*args: str, port: int, metrics_port: int | None = None) -> Iterator[ServeProcess]:
    """`smallguard serve` in its own process; yields once the port answers."""
    env = serve_env(port)
    if metrics_port is not None:
        env["SMALLGUARD_METRICS_PORT"] = str(metrics_port)
    with ServeProcess([*SMALLGUARD, "serve", *args], env) as process:
        try:
            wait_until_serving(process, port)
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def serve_env(port: int) -> dict[str, str]:
    """This environment, with `smallguard serve` on loopback at ``port``."""
    return {**os.environ, "SMALLGUARD_HOST": "127.0.0.1", "SMALLGUARD_PORT": str(port)}


@contextmanager
def starting(*args: str, port: int, catching: int) -> Iterator[ServeProcess]:
    """`smallguard serve` in its own process, yielded as soon as it has a handler for signal ``catching`` (long
    before it serves: its workers may not exist yet); killed on the way out if it still runs."""
    with ServeProcess([*SMALLGUARD, "serve", *args], serve_env(port)) as process:
        try:
            deadline = time.monotonic() + 30
            while not _catches(process.pid, catching):
                assert process.poll() is None and time.monotonic() < deadline, process.output()
                time.sleep(0.002)
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler of its own for ``signum`` (the SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy and return that; fail naming ``what`` and
    the last value seen once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}; last saw {result!r}")
        time.sleep(interval)


def wait_until_serving(process: ServeProcess, port: int, timeout: float = 60.0) -> None:
    """Until the port answers; a process that exits first fails at once, with what it printed."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        ready = grpc.channel_ready_future(channel)
        while True:
            try:
                ready.result(timeout=0.25)
                return
            except grpc.FutureTimeoutError:
                if process.poll() is not None:
                    raise AssertionError(f"smallguard serve exited with {process.returncode} before serving:\n"
                                         f"{process.output()}") from None
                if time.monotonic() > deadline:
                    raise


@pytest.fixture(scope="session", autouse=True)
def _tracing() -> None:
    """One global tracer provider for the whole run (OpenTelemetry allows setting it once)."""
    provider = LeanTracerProvider()  # the provider `smallguard serve` installs
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    _EXPORTER.clear()
    return _EXPORTER


@dataclass
class Running:
    server: GuardServer
    channel: grpc.Channel
    stub: guard_pb2_grpc.GuardStub
    address: str

    def stop(self) -> None:
        self.channel.close()
        self.server.stop(0)


def start_server(repository: Path, **overrides: object) -> Running:
    """A real server on a free loopback port, and a client channel to it; with a store of its own unless
    ``store`` is given."""
    overrides.setdefault("store", f"sqlite:///{tempfile.mkdtemp(prefix='smallguard-store-')}/store.sqlite3")
    settings = Settings(host="127.0.0.1", port=0, model_repository=repository, **overrides)  # type: ignore[arg-type]
    server = create_server(settings)
    server.start()
    address = f"127.0.0.1:{server.port}"
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=10)
    return Running(server, channel, guard_pb2_grpc.GuardStub(channel), address)


@pytest.fixture(scope="module")
def shipped() -> Iterator[Running]:
    """The shipped model repository, served as `smallguard serve` would."""
    running = start_server(MODELS)
    yield running
    running.stop()


def digits_rows(split: str = "test") -> list[dict]:
    lines = (DIGITS / "data" / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def pixels(values: list[float], **fields: object) -> pb.Tensor:
    tensor = pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[64], **fields)  # type: ignore[arg-type]
    if "raw_contents" not in fields:
        tensor.contents.float_contents.extend(values)
    return tensor


def digits_request(values: list[float], **fields: object) -> pb.PredictRequest:
    return pb.PredictRequest(model="digits", inputs=[pixels(values)], **fields)  # type: ignore[arg-type]


def copy_bundle(source: Path, repository: Path, name: str, bundle_yaml: str, extra: tuple[str, ...] = ()) -> Path:
    """A bundle folder holding ``source``'s model and calibration (and ``extra`` files, e.g. reference.json)
    with a bundle.yaml of the test's own."""
    folder = repository / name
    folder.mkdir(parents=True)
    for item in ("model.onnx", "calibration.json", *extra):
        shutil.copy(source / item, folder / item)
    (folder / "bundle.yaml").write_text(bundle_yaml)
    return folder


def calibrate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smallguard.server.cli", "calibrate", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False)


def uncalibrated_digits(root: Path) -> Path:
    """A copy of the digits bundle without its calibration.json."""
    folder = root / "digits"
    folder.mkdir(parents=True)
    for item in ("bundle.yaml", "model.onnx"):
        (folder / item).write_bytes((DIGITS / item).read_bytes())
    return folder


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Data points by instrument name."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def by(points_: list[Any], *keys: str) -> Counter:
    """Sum (counters) or count (histograms) per value of ``keys``."""
    totals: Counter = Counter()
    for point in points_:
        key = tuple(point.attributes[k] for k in keys)
        totals[key if len(keys) > 1 else key[0]] += point.count if hasattr(point, "count") else point.value
    return totals
