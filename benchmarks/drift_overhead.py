"""What drift monitoring costs a Predict: latency with and without it, and the monitor's own share.

Two guards serve the shipped `digits` model in this process: one on the shipped bundle (with its
reference.json, so every prediction goes into the drift window), one on a copy without the
reference (no monitoring). They take turns, in alternating order, over the held-out images, so the
machine's noise hits both alike. The calls go straight to the core (`Guard.predict`), not through
gRPC, so that ratio is the most pessimistic one; then the same through two real gRPC servers on
loopback (a client in this process, calls one at a time), which is what a caller sees.

    .venv/bin/python benchmarks/drift_overhead.py [--rounds 20] [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from smallguard.server.assembly import build_guard, create_server
from smallguard.server.core.guard import Guard
from smallguard.server.domain.predictions import Decision, PredictCall, TensorInput
from smallguard.server.settings import Settings
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "models" / "digits"


def _calls() -> list[PredictCall]:
    rows = [json.loads(line) for line in (DIGITS / "data" / "test.jsonl").read_text().splitlines() if line.strip()]
    return [PredictCall(model="digits", tensors=(TensorInput("pixels", "float32", (64,),
                                                             np.asarray(row["pixels"], dtype=np.float32)),))
            for row in rows]


def _guards(folder: Path) -> tuple[Guard, Guard]:
    monitored, plain = folder / "monitored", folder / "plain"
    monitored.mkdir()
    (monitored / "digits").symlink_to(DIGITS, target_is_directory=True)
    (plain / "digits").mkdir(parents=True)
    for item in ("bundle.yaml", "model.onnx", "calibration.json"):
        shutil.copy(DIGITS / item, plain / "digits" / item)
    return (build_guard(Settings(model_repository=monitored)), build_guard(Settings(model_repository=plain)))


def _time(guard: Guard, calls: list[PredictCall], count: int, start: int) -> list[float]:
    took = []
    for i in range(count):
        call = calls[(start + i) % len(calls)]
        began = time.perf_counter()
        guard.predict(call)
        took.append(time.perf_counter() - began)
    return took


def _grpc_ratio(folder: Path, rows: list[list[float]], rounds: int, count: int) -> tuple[float, float]:
    """Median Predict latency over loopback gRPC, (with drift, without), calls one at a time."""
    import grpc

    servers, stubs, channels = [], [], []
    for name in ("monitored", "plain"):
        server = create_server(Settings(host="127.0.0.1", port=0, model_repository=folder / name))
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        servers.append(server), channels.append(channel), stubs.append(guard_pb2_grpc.GuardStub(channel))
    requests = [pb.PredictRequest(model="digits", inputs=[pb.Tensor(
        name="pixels", dtype=pb.FLOAT32, shape=[64], contents=pb.TensorContents(float_contents=row))]) for row in rows]
    took: list[list[float]] = [[], []]
    try:
        for round_ in range(rounds):
            for which in ((0, 1) if round_ % 2 == 0 else (1, 0)):
                for i in range(count):
                    began = time.perf_counter()
                    stubs[which].Predict(requests[(round_ * count + i) % len(requests)])
                    took[which].append(time.perf_counter() - began)
    finally:
        for channel, server in zip(channels, servers, strict=True):
            channel.close()
            server.stop(0)
    return statistics.median(took[0][count:]), statistics.median(took[1][count:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=500, help="Predict calls per guard per round")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    calls = _calls()
    with tempfile.TemporaryDirectory() as folder:
        monitored, plain = _guards(Path(folder))
        assert monitored.report("digits").model.drift is not None
        assert plain.report("digits").model.drift is None
        with_drift: list[float] = []
        without: list[float] = []
        _time(monitored, calls, 200, 0), _time(plain, calls, 200, 0)  # warm-up
        for round_ in range(args.rounds):
            order = [(monitored, with_drift), (plain, without)]
            for guard, into in order if round_ % 2 == 0 else order[::-1]:
                into.extend(_time(guard, calls, args.calls, round_ * args.calls))
        drift = monitored.report("digits").model.drift
        assert drift is not None
        feeds = {"pixels": calls[0].tensors[0].values[np.newaxis, :]}
        began = time.perf_counter()
        for _ in range(5000):
            drift.observe(feeds, 0.99, Decision.ANSWER)
        observe_us = (time.perf_counter() - began) / 5000 * 1e6
        began = time.perf_counter()
        for _ in range(1000):
            drift.snapshot()
        snapshot_us = (time.perf_counter() - began) / 1000 * 1e6
        monitored.close()
        plain.close()
        rows = [list(map(float, call.tensors[0].values)) for call in calls]
        grpc_with, grpc_without = _grpc_ratio(Path(folder), rows, max(args.rounds // 2, 2), args.calls)
    med_with, med_without = statistics.median(with_drift), statistics.median(without)
    mean_with, mean_without = statistics.fmean(with_drift), statistics.fmean(without)
    print(f"Guard.predict on digits, {args.rounds} rounds x {args.calls} calls each, one core, in process")
    print(f"{'':22}{'median us':>10}{'mean us':>10}")
    print(f"{'without drift':22}{med_without * 1e6:10.1f}{mean_without * 1e6:10.1f}")
    print(f"{'with drift (window ' + str(drift.policy.window) + ')':22}{med_with * 1e6:10.1f}{mean_with * 1e6:10.1f}")
    print(f"ratio with/without: median {med_with / med_without:.3f}x, mean {mean_with / mean_without:.3f}x")
    print(f"over loopback gRPC, median: {grpc_without * 1e6:.1f} us without, {grpc_with * 1e6:.1f} us with drift: "
          f"ratio {grpc_with / grpc_without:.3f}x")
    print(f"DriftMonitor.observe alone: {observe_us:.1f} us per prediction (binning and a score every "
          f"{drift.flush_every} predictions included); a full snapshot (what a scrape or GetModel costs): "
          f"{snapshot_us:.1f} us")


if __name__ == "__main__":
    main()
