"""The load generator of benchmarks/server_shape.py: client processes that keep calls in flight.

Each client process (started once per group of measurements, pinned where it is told) takes a
``Job``: a target, how many calls to keep in flight, and a measurement window on the monotonic
clock, which every process on the machine shares. It starts calling at once (the time before the
window is the warm-up), counts and times only the calls that end inside the window, and stops
calling when the window ends or after ``count`` calls. Requests are real digits rows, cycled, and
encoded once up front; responses are decoded only where something is read from them (a batch's
items, the soak's decisions), so a call costs the client as little as grpc allows.

Two client kinds: ``aio`` (grpc.aio, one event loop per process) and ``sync`` (a blocking stub
per thread, one thread per call in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path

import grpc

from smallguard.v1 import guard_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
TEST_ROWS = ROOT / "models" / "digits" / "data" / "test.jsonl"
METHODS = {"predict": "/smallguard.v1.Guard/Predict", "batch": "/smallguard.v1.Guard/PredictBatch",
           "stacked": "/smallguard.v1.Guard/PredictBatch", "columns": "/smallguard.v1.Guard/PredictBatch"}
BATCH_KINDS = ("batch", "stacked", "columns")
BATCH_ITEMS = 64
CALL_TIMEOUT_S = 30.0
# One TCP connection per channel (without a local subchannel pool, channels to one target share one);
# no retry buffering nor channelz bookkeeping: about 10% less client CPU per call, nothing changes on the wire.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0), ("grpc.enable_channelz", 0)]
CLIENT_KINDS = ("aio", "sync")
_MAX_JOBS = 10_000  # per client process: a bound on its loop, far above any run's needs
_IDLE_LIMIT_S = 3600.0


@dataclass(frozen=True, slots=True)
class Job:
    target: str
    # "predict", "batch" (an item per digit), "stacked" (the digits as one [items, 64] input) or "columns" (stacked,
    # answered in columns)
    kind: str
    in_flight: int  # this process's share
    channels: int  # connections to spread the calls over
    start: float  # the window, on time.monotonic()
    end: float
    count: int | None = None  # stop after this many calls (the soak)
    inspect: bool = False  # decode every Predict response and tally decisions (the soak)
    first_row: int = 0


@dataclass(slots=True)
class Tally:
    """What the calls of one or more workers came to; the in-window figures drive the results."""

    calls: int = 0  # completed OK inside the window
    issued: int = 0  # every call started, warm-up included
    samples: int = 0  # batch items answered inside the window
    item_errors: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # non-OK calls by status code
    latencies: list[float] = field(default_factory=list)  # seconds, OK calls inside the window
    refusal_latencies: list[float] = field(default_factory=list)  # seconds, RESOURCE_EXHAUSTED inside the window
    decisions: Counter[str] = field(default_factory=Counter)
    escalated_verifier_error: int = 0
    verifier_error_messages: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Tally) -> Tally:
        self.calls += other.calls
        self.issued += other.issued
        self.samples += other.samples
        self.item_errors += other.item_errors
        self.errors.update(other.errors)
        self.latencies.extend(other.latencies)
        self.refusal_latencies.extend(other.refusal_latencies)
        self.decisions.update(other.decisions)
        self.escalated_verifier_error += other.escalated_verifier_error
        self.verifier_error_messages.update(other.verifier_error_messages)
        return self


# ------------------------------------------------------------------------------------ requests


def digits_rows() -> list[list[float]]:
    return [json.loads(line)["pixels"] for line in TEST_ROWS.read_text().splitlines() if line.strip()]


def predict_request(pixels: list[float]) -> pb.PredictRequest:
    tensor = pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[64])
    tensor.contents.float_contents.extend(pixels)
    return pb.PredictRequest(model="digits", inputs=[tensor])


def encoded_requests(kind: str) -> list[bytes]:
    """Every test row once (predict), or one batch of BATCH_ITEMS consecutive rows starting at each row: an item
    per row (batch), or the rows stacked into one [BATCH_ITEMS, 64] float32 input in raw bytes, as
    smallguard.client sends an array (stacked), and answered in columns (columns)."""
    rows = digits_rows()
    singles = [predict_request(pixels) for pixels in rows]
    if kind == "predict":
        return [request.SerializeToString() for request in singles]
    windows = [[(start + i) % len(rows) for i in range(BATCH_ITEMS)] for start in range(len(rows))]
    if kind in ("stacked", "columns"):
        layout = pb.BATCH_LAYOUT_COLUMNS if kind == "columns" else pb.BATCH_LAYOUT_RESULTS
        return [pb.PredictBatchRequest(model="digits", layout=layout, inputs=[pb.Tensor(
            name="pixels", dtype=pb.FLOAT32, shape=[BATCH_ITEMS, 64],
            raw_contents=struct.pack(f"<{BATCH_ITEMS * 64}f", *[v for i in window for v in rows[i]]))])
                .SerializeToString() for window in windows]
    return [pb.PredictBatchRequest(model="digits", items=[singles[i] for i in window]).SerializeToString()
            for window in windows]


# ------------------------------------------------------------------------------------ one worker's calls


class _Worker:
    """One call in flight: which request comes next, whether to go on, and what each call came to."""

    def __init__(self, job: Job, requests: list[bytes], index: int, count: int | None) -> None:
        self._job, self._requests, self._count = job, requests, count
        self._next = job.first_row + index * 41  # workers start on different rows
        self.tally = Tally()

    def next_request(self) -> bytes | None:
        if time.monotonic() >= self._job.end or (self._count is not None and self.tally.issued >= self._count):
            return None
        self.tally.issued += 1
        self._next += 1
        return self._requests[self._next % len(self._requests)]

    def done(self, began: float, reply: bytes) -> None:
        ended = time.monotonic()
        if not self._job.start <= ended <= self._job.end:
            return
        tally = self.tally
        tally.calls += 1
        tally.latencies.append(ended - began)
        if self._job.kind in BATCH_KINDS:
            response = pb.PredictBatchResponse.FromString(reply)
            if response.HasField("columns"):
                columns = response.columns
                tally.item_errors += len(columns.errors)
                tally.samples += len(columns.request_ids) - len(columns.errors)
            for result in response.results:
                if result.HasField("response"):
                    tally.samples += 1
                else:
                    tally.item_errors += 1
        elif self._job.inspect:
            self._inspect(pb.PredictResponse.FromString(reply))

    def failed(self, began: float, code: grpc.StatusCode | None) -> None:
        self.tally.errors[code.name if code is not None else "UNKNOWN"] += 1
        ended = time.monotonic()
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and self._job.start <= ended <= self._job.end:
            self.tally.refusal_latencies.append(ended - began)

    def _inspect(self, response: pb.PredictResponse) -> None:
        tally = self.tally
        tally.decisions[pb.Decision.Name(response.decision)] += 1
        verifier_errors = [r for r in response.reasons if r.code == pb.Reason.VERIFIER_ERROR]
        if response.decision == pb.ESCALATE and verifier_errors:
            tally.escalated_verifier_error += 1
        for reason in verifier_errors:
            tally.verifier_error_messages[f"{reason.verifier}: {reason.message}"] += 1


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole shares, the larger ones first."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def run_job(job: Job, client: str, requests: list[bytes]) -> Tally:
    counts = shares(job.count, job.in_flight) if job.count is not None else [None] * job.in_flight
    workers = [_Worker(job, requests, i, counts[i]) for i in range(job.in_flight)]
    if client == "aio":
        asyncio.run(_run_aio(job, workers))
    else:
        _run_sync(job, workers)
    total = Tally()
    for worker in workers:
        total.merge(worker.tally)
    return total


async def _run_aio(job: Job, workers: list[_Worker]) -> None:
    channels = [grpc.aio.insecure_channel(job.target, options=CHANNEL_OPTIONS) for _ in range(job.channels)]
    calls = [channel.unary_unary(METHODS[job.kind]) for channel in channels]

    async def keep_calling(worker: _Worker, call: grpc.aio.UnaryUnaryMultiCallable) -> None:
        while (request := worker.next_request()) is not None:
            began = time.monotonic()
            try:
                worker.done(began, await call(request, timeout=CALL_TIMEOUT_S))
            except grpc.aio.AioRpcError as exc:
                worker.failed(began, exc.code())
                await asyncio.sleep(0.01)

    try:
        await asyncio.gather(*(keep_calling(w, calls[i % len(calls)]) for i, w in enumerate(workers)))
    finally:
        for channel in channels:
            await channel.close()


def _run_sync(job: Job, workers: list[_Worker]) -> None:
    channels = [grpc.insecure_channel(job.target, options=CHANNEL_OPTIONS) for _ in range(job.channels)]
    calls = [channel.unary_unary(METHODS[job.kind]) for channel in channels]

    def keep_calling(worker: _Worker, call: grpc.UnaryUnaryMultiCallable) -> None:
        while (request := worker.next_request()) is not None:
            began = time.monotonic()
            try:
                worker.done(began, call(request, timeout=CALL_TIMEOUT_S))
            except grpc.RpcError as exc:
                worker.failed(began, exc.code() if isinstance(exc, grpc.Call) else None)
                time.sleep(0.01)

    threads = [threading.Thread(target=keep_calling, args=(w, calls[i % len(calls)]), daemon=True)
               for i, w in enumerate(workers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, job.end - time.monotonic()) + CALL_TIMEOUT_S + 5)
    finally:
        for channel in channels:
            channel.close()


# ------------------------------------------------------------------------------------ client processes


def _client_main(conn: Connection, cpus: set[int] | None, client: str) -> None:
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    requests = {kind: encoded_requests(kind) for kind in METHODS}
    conn.send("ready")
    for _ in range(_MAX_JOBS):
        if not conn.poll(_IDLE_LIMIT_S):
            return
        job = conn.recv()
        if job is None:
            return
        conn.send(run_job(job, client, requests[job.kind]))


class LoadGenerator:
    """``processes`` client processes (spawned, not forked: grpc and fork do not mix), pinned to ``cpus``."""

    def __init__(self, processes: int, cpus: set[int] | None, client: str, timeout: float = 120.0) -> None:
        context = get_context("spawn")
        self.client, self.cpus = client, cpus
        self._conns: list[Connection] = []
        self._processes = []
        self._busy: list[Connection] = []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_client_main, args=(child, cpus, client), daemon=True)
            process.start()
            self._conns.append(parent)
            self._processes.append(process)
        for conn in self._conns:
            if not conn.poll(timeout) or conn.recv() != "ready":
                raise RuntimeError("a client process did not start")

    @property
    def size(self) -> int:
        return len(self._conns)

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def submit(self, jobs: list[Job | None]) -> None:
        """One job (or None: stay idle) per client process; returns at once."""
        self._busy = []
        for conn, job in zip(self._conns, jobs, strict=True):
            if job is not None:
                conn.send(job)
                self._busy.append(conn)

    def finished(self) -> bool:
        """Every submitted job has reported (``collect`` will not wait)."""
        return all(conn.poll(0) for conn in self._busy)

    def collect(self, timeout: float) -> Tally:
        deadline = time.monotonic() + timeout
        total = Tally()
        for conn in self._busy:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError("a client process did not report in time")
            total.merge(conn.recv())
        self._busy = []
        return total

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):  # a client that already ended
                conn.send(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


def split_jobs(total_in_flight: int, processes: int, make: Callable[[int, int], Job]) -> list[Job | None]:
    """Spread ``total_in_flight`` over the processes; ``make(index, share)`` builds one process's job."""
    return [make(i, share) if share else None for i, share in enumerate(shares(total_in_flight, processes))]
