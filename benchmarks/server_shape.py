"""What smallguard's serving path costs, against a bare gRPC server doing only the model run (issue #9).

The baseline ("bare", written here) is a sync grpc.server with smallguard's pool size and options
whose Predict only decodes the request, builds the array, runs the digits ONNX model and returns
label + probability; beside it, the same server answering a fixed response without decoding the request ("grpc
alone"), the floor that gRPC's sync server sets under every row. Against the bare server, `smallguard serve` as a
user runs it ("defaults"), with every span
exported over OTLP and the metrics on the Prometheus endpoint ("traced+metrics"), with `--workers 2` (against
two bare processes on one port), and serving PredictBatch (64 digits per call: an item per message, stacked into
one input, and stacked and answered in columns); beside the batch rows, grpc alone
answering a stacked batch with a fixed response of smallguard's size ("batch, grpc alone"), the floor under a batch
item.

Why ratios: the machine is shared and noisy, absolute rates move 2-3x from day to day. So every
figure is compared with the bare server measured in the same run, on the same cores, with the same
client, and the configurations take turns at each concurrency (all servers of a group stay up,
idle while another is measured). At the targets' concurrencies (1 and 64 in flight, and the batch
rows) they take turns in rounds (3 by default), and each ratio is the median of the rounds' ratios,
each against the baseline's window of its own round (a few windows away, not minutes): one pair of
windows moved a ratio by a tenth or more from run to run. Each server is a subprocess tree whose
CPU time (utime + stime of every process in it, from /proc) is read at the start and end of each
measurement window; the server is pinned to CPU 0, the client processes to CPU 1 (`--workers` and
its baseline unpinned).
Per point: requests/s, p50/p99 latency measured per call in the clients, server CPU per request,
how busy the server and the client processes were (a client near 100% of its core would be the
bottleneck), and each ratio to the bare server. The issue's targets are then reported as met or
not met; nothing is asserted. Last, overload and abuse (benchmarks/shape_abuse.py, issue #13): how soon
a call past `--max-concurrent-rpcs` is refused and what overload does to the accepted calls, and how
often a canary's calls succeed while an attacker holds half-sent calls or sends the costliest texts.

The load generator (benchmarks/shape_load.py) is 2 client processes with blocking stubs on threads,
one thread per call in flight: measured against grpc.aio clients and against 4 or 8 processes, it
spends the least client CPU per call (about 2/3 of what the bare server spends per request), so one
load core outruns one server core; the report prints both figures for each run.

    .venv/bin/python benchmarks/server_shape.py [--seconds 6] [--rounds 3] [--quick] [--json PATH] [--abuse-only]
    .venv/bin/python benchmarks/server_shape.py --soak [N]     # N Predict calls (default 100,000)

`--soak` keeps 16 calls in flight against `smallguard serve` (defaults) until N calls are done and
reports the ESCALATE decisions with reason VERIFIER_ERROR (from the responses), the longest garbage
collection pauses inside the server (the server runs under `--serve-with-gc-log FILE`, a wrapper
timing every collection through gc.callbacks) and the server's RSS over time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import onnxruntime
from shape_abuse import SHED_LIMIT, shedding, under_attacks
from shape_abuse import as_json as abuse_json
from shape_abuse import report as abuse_report
from shape_load import (
    BATCH_ITEMS,
    BATCH_KINDS,
    CALL_TIMEOUT_S,
    CLIENT_KINDS,
    Job,
    LoadGenerator,
    Tally,
    encoded_requests,
    shares,
    split_jobs,
)
from shape_servers import (
    OtlpReceiver,
    ServerUnderTest,
    bare_command,
    busy_share,
    clean_env,
    cpu_seconds,
    cpu_ticks,
    free_port,
    gc_logged_command,
    rss_kib,
    serve_bare,
    serve_with_gc_log,
    smallguard_command,
)

IN_FLIGHT = (1, 16, 64)
ROUNDS_AT = (1, 64)  # the concurrencies of the targets: measured in --rounds rounds, each ratio their median
BATCH_LABEL = f"batch ({BATCH_ITEMS}/call)"
STACKED_LABEL = "batch stacked"  # the digits of a call as one [BATCH_ITEMS, 64] input
COLUMNS_LABEL = "batch stacked, columns"  # the same, answered in columns (layout BATCH_LAYOUT_COLUMNS)
STACKED_FLOOR = "batch, grpc alone"  # grpc alone answering a stacked batch with a fixed response of its size
GRPC_ALONE = "grpc alone"  # the bare server answering one fixed response, not decoded: gRPC's sync server by itself
BASELINES = ("bare", GRPC_ALONE, STACKED_FLOOR, "bare x2 pinned", "bare x2")  # written here: no smallguard in them
BATCH_IN_FLIGHT = 4  # PredictBatch calls in flight, BATCH_ITEMS digits each
SOAK_IN_FLIGHT = 16
SERVER_CPU, LOAD_CPU = 0, 1
CHANNELS_PER_CLIENT = 4  # connections per client process (spread over the workers by SO_REUSEPORT)
SETUP_S = 0.3  # for the client processes to receive a job and open their channels


@dataclass(slots=True)
class Point:
    """One configuration at one concurrency: what the clients saw and what the server spent."""

    config: str
    in_flight: int
    baseline: str | None  # the configuration this one is compared with
    seconds: float
    calls: int
    rate: float  # calls/s (items/s for the batch row)
    p50_ms: float
    p99_ms: float
    server_cpu_us: float  # server CPU per call (per item for the batch row)
    writer_cpu_us: float  # of it, the decision log's writer thread (the store's rows)
    server_busy: float  # server CPU seconds per second (1.0 = one core)
    client_busy: float  # the client processes' CPU seconds per second
    own_busy: float  # this script's (and the OTLP receiver's) CPU seconds per second
    cores_busy: dict[str, float]  # each core, from /proc/stat, whoever kept it busy
    errors: dict[str, int]
    item_errors: int = 0
    ratios: dict[str, float] = field(default_factory=dict)  # rate, p50, cpu: this / the baseline's
    round_index: int = 0  # which round of the turns at this concurrency (ROUNDS_AT levels are measured in rounds)
    round_ratios: dict[str, list[float]] = field(default_factory=dict)  # a summary's ratios, round by round


@dataclass
class Run:
    """The benchmark's state: options, the temporary folder for logs, where to pin, and what was measured."""

    args: argparse.Namespace
    folder: Path
    pinned: bool
    points: list[Point] = field(default_factory=list)
    issued: Counter[str] = field(default_factory=Counter)  # calls sent to each server, warm-ups included
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # the OTLP receiver's counts, the metrics endpoint

    @property
    def rounds(self) -> int:
        return self.args.rounds

    @property
    def server_cpus(self) -> set[int] | None:
        return {SERVER_CPU} if self.pinned else None

    @property
    def load_cpus(self) -> set[int] | None:
        return {LOAD_CPU} if self.pinned else None

    @property
    def warmup(self) -> float:
        return 0.5 if self.args.quick else 1.0


# ------------------------------------------------------------------------------------ measuring


def measure(run: Run, server: ServerUnderTest, load: LoadGenerator, in_flight: int, baseline: str | None,
            kind: str = "predict", label: str | None = None, round_: int = 0) -> Point:
    """Keep ``in_flight`` calls going for the warm-up and the window; read the CPU times at its edges."""
    start = time.monotonic() + SETUP_S + run.warmup
    end = start + run.args.seconds

    def job(index: int, share: int) -> Job:
        return Job(server.target, kind, share, min(share, CHANNELS_PER_CLIENT), start, end, first_row=index * 97)

    load.submit(split_jobs(in_flight, load.size, job))
    before = _sample(server, load, start)
    after = _sample(server, load, end)
    tally = load.collect(timeout=CALL_TIMEOUT_S + 60)
    run.issued[server.name] += tally.issued
    point = _point(label or server.name, in_flight, baseline, tally, before, after, run.args.seconds,
                   kind in BATCH_KINDS)
    point.round_index = round_
    return point


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    server_cpu: float
    client_cpu: float
    own_cpu: float
    ticks: dict[str, tuple[int, int]]
    writer_cpu: float  # the server's decision-log writer threads (part of server_cpu)


def _sample(server: ServerUnderTest, load: LoadGenerator, at: float) -> Sample:
    time.sleep(max(0.0, at - time.monotonic()))
    return Sample(time.monotonic(), server.cpu_seconds(), cpu_seconds(load.pids()), cpu_seconds([os.getpid()]),
                  cpu_ticks(), server.writer_cpu_seconds())


def _point(config: str, in_flight: int, baseline: str | None, tally: Tally, before: Sample, after: Sample,
           window: float, per_item: bool) -> Point:
    """The figures of one window: calls that ended inside it, CPU time between the two samples at its edges."""
    seconds = after.at - before.at
    server_cpu, client_cpu = after.server_cpu - before.server_cpu, after.client_cpu - before.client_cpu
    served = tally.samples if per_item else tally.calls
    latencies = sorted(tally.latencies)
    return Point(
        config=config, in_flight=in_flight, baseline=baseline, seconds=seconds, calls=tally.calls,
        rate=served / window,
        p50_ms=_percentile(latencies, 0.50) * 1000, p99_ms=_percentile(latencies, 0.99) * 1000,
        server_cpu_us=server_cpu / served * 1e6 if served else float("nan"),
        writer_cpu_us=(after.writer_cpu - before.writer_cpu) / served * 1e6 if served else float("nan"),
        server_busy=server_cpu / seconds, client_busy=client_cpu / seconds,
        own_busy=(after.own_cpu - before.own_cpu) / seconds, cores_busy=busy_share(before.ticks, after.ticks),
        errors=dict(tally.errors), item_errors=tally.item_errors)


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def set_own_affinity(cpus: set[int] | None) -> None:
    """The orchestrator's affinity; the client processes it spawns start from it."""
    os.sched_setaffinity(0, cpus if cpus is not None else ORIGINAL_AFFINITY)


@contextlib.contextmanager
def started(run: Run, servers: list[ServerUnderTest]) -> Iterator[dict[str, ServerUnderTest]]:
    """Start every server, wait for all of them, stop them all on the way out (whatever happens)."""
    probe = encoded_requests("predict")[0]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready(probe)
        yield {server.name: server for server in servers}
    finally:
        for server in servers:
            server.stop()


@contextlib.contextmanager
def load_generator(run: Run, cpus: set[int] | None) -> Iterator[LoadGenerator]:
    load = LoadGenerator(run.args.clients, cpus, run.args.client)
    try:
        yield load
    finally:
        load.close()


def take_turns(run: Run, servers: dict[str, ServerUnderTest], load: LoadGenerator, baseline: str,
               after_round: Callable[[int], None] | None = None) -> None:
    """At each concurrency every server once, in rounds at ROUNDS_AT (``after_round(r)`` after round r at the
    highest), the order reversed at every other turn."""
    names = list(servers)
    turn = 0
    for in_flight in IN_FLIGHT:
        for round_ in range(run.rounds if in_flight in ROUNDS_AT else 1):
            for name in names if turn % 2 == 0 else names[::-1]:
                point = measure(run, servers[name], load, in_flight, None if name == baseline else baseline,
                                round_=round_)
                run.points.append(point)
                _progress(point)
            turn += 1
            if after_round is not None and in_flight == max(IN_FLIGHT):
                after_round(round_)


def _progress(point: Point) -> None:
    print(f"  measured {point.config:<16} {point.in_flight:>3} in flight, round {point.round_index + 1}: "
          f"{point.rate:8.0f}/s  p50 {point.p50_ms:6.2f} ms  server {point.server_busy:4.0%}  "
          f"clients {point.client_busy:4.0%}",
          file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ the groups


def pinned_group(run: Run) -> None:
    """bare, grpc alone, defaults and traced+metrics, each pinned to CPU 0; the clients (and the receiver) on
    CPU 1."""
    set_own_affinity(run.load_cpus)
    receiver = OtlpReceiver()
    try:
        metrics_port = free_port()
        servers = [
            ServerUnderTest("bare", (p := free_port()), [bare_command(p)], clean_env(), run.folder, run.server_cpus),
            ServerUnderTest(GRPC_ALONE, (p := free_port()), [bare_command(p, model=False)], clean_env(), run.folder,
                            run.server_cpus),
            ServerUnderTest("defaults", (p := free_port()), [smallguard_command(p)],
                            clean_env(own_store(run, "defaults")), run.folder, run.server_cpus),
            ServerUnderTest("traced+metrics", (p := free_port()),
                            [smallguard_command(p, "--metrics-port", str(metrics_port))],
                            clean_env(receiver.traced_env() | own_store(run, "traced")), run.folder, run.server_cpus),
        ]
        with started(run, servers) as by_name, load_generator(run, run.load_cpus) as load:
            served = batch_kinds(run, by_name["defaults"])
            take_turns(run, by_name, load, "bare", after_round=lambda round_: (
                batch(run, by_name["defaults"], load, served, round_),
                batch(run, by_name[GRPC_ALONE], load, [("stacked", STACKED_FLOOR)], round_)))
            run.extra["metrics_endpoint"] = _scrape(metrics_port)
        _count_spans(run, receiver)
    finally:
        receiver.stop()


def own_store(run: Run, name: str) -> dict[str, str]:
    """A server's default store (its decision log and feedback) in the run's folder: a new user's first start,
    and nothing written to the store of the user who runs the benchmark."""
    return {"XDG_STATE_HOME": str(run.folder / f"state-{name}")}


def unpinned_group(run: Run) -> None:
    """smallguard --workers 2, which puts each worker on a CPU of its own, against two bare processes on one port
    placed the same way (the baseline), and left to the OS; the benchmark pins nothing else, clients included."""
    set_own_affinity(None)
    bare_port, pinned_port, workers_port = free_port(), free_port(), free_port()
    cpus = sorted(os.sched_getaffinity(0))
    servers = [
        ServerUnderTest("bare x2 pinned", pinned_port,
                        [bare_command(pinned_port, cpus[i % len(cpus)]) for i in range(2)], clean_env(), run.folder,
                        None),
        ServerUnderTest("bare x2", bare_port, [bare_command(bare_port)] * 2, clean_env(), run.folder, None),
        ServerUnderTest("workers2", workers_port, [smallguard_command(workers_port, "--workers", "2")],
                        clean_env(own_store(run, "workers2")), run.folder, None, ready_lines=2),
    ]
    with started(run, servers) as by_name, load_generator(run, None) as load:
        take_turns(run, by_name, load, "bare x2 pinned")


def abuse_group(run: Run) -> list[str]:
    """Overload and abuse (shape_abuse.py): shedding against a limit of 16, then a canary under attacks."""
    set_own_affinity(run.load_cpus)
    servers = [
        ServerUnderTest("limit16", (p := free_port()),
                        [smallguard_command(p, "--max-concurrent-rpcs", str(SHED_LIMIT))],
                        clean_env(own_store(run, "limit16")), run.folder, run.server_cpus),
        ServerUnderTest("attacked", (p := free_port()), [smallguard_command(p)],
                        clean_env(own_store(run, "attacked")), run.folder, run.server_cpus),
    ]
    with started(run, servers) as by_name:
        with load_generator(run, run.load_cpus) as load:
            shed = shedding(by_name["limit16"].target, load, run.args.seconds, run.warmup)
        attacks = under_attacks(by_name["attacked"].target, run.args.seconds, run.load_cpus)
    lines = abuse_report(shed, attacks)
    run.extra["abuse"] = abuse_json(shed, attacks)
    return lines


def batch_kinds(run: Run, server: ServerUnderTest) -> list[tuple[str, str]]:
    """The PredictBatch forms the server serves (an item per digit; the digits stacked into one input, answered in
    results or in columns), each tried once; a note for each that fails."""
    served = []
    for kind, label in (("batch", BATCH_LABEL), ("stacked", STACKED_LABEL), ("columns", COLUMNS_LABEL)):
        with grpc.insecure_channel(server.target) as channel:
            try:
                channel.unary_unary("/smallguard.v1.Guard/PredictBatch")(encoded_requests(kind)[0], timeout=30)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                run.notes.append(f"{label}: not served" if code == grpc.StatusCode.UNIMPLEMENTED
                                 else f"{label}: PredictBatch failed with {code}: {exc}")
                print(run.notes[-1], file=sys.stderr)
                continue
        served.append((kind, label))
    return served


def batch(run: Run, server: ServerUnderTest, load: LoadGenerator, kinds: list[tuple[str, str]], round_: int) -> None:
    """PredictBatch, BATCH_ITEMS digits a call, in each served form: after the round's turn at the highest
    concurrency, against that round's bare window (a few windows before it)."""
    for kind, label in kinds:
        point = measure(run, server, load, BATCH_IN_FLIGHT, "bare", kind=kind, label=label, round_=round_)
        run.points.append(point)
        _progress(point)


def _scrape(port: int) -> dict[str, Any]:
    """One GET of the traced server's Prometheus endpoint: is it on, and does it count predictions?"""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode(errors="replace")
    except OSError as exc:
        return {"served": False, "error": str(exc)}
    return {"served": True, "bytes": len(body), "has_smallguard_predictions": "smallguard_predictions" in body}


def _count_spans(run: Run, receiver: OtlpReceiver) -> None:
    """Spans the receiver got (after the server flushed them at shutdown) against 3 per Predict sent."""
    spans, metric_exports = receiver.counts()
    sent = run.issued["traced+metrics"] + 1  # + the readiness probe
    run.extra["otlp"] = {"spans": spans, "expected_spans": 3 * sent, "metric_exports": metric_exports}


# ------------------------------------------------------------------------------------ ratios and targets


def add_ratios(points: list[Point]) -> None:
    """Each point's ratios to its baseline's point in the same round at the same concurrency (the batch rows: at the
    highest)."""
    by_key = {(p.config, p.in_flight, p.round_index): p for p in points}
    for point in points:
        if point.baseline is None:
            continue
        level = max(IN_FLIGHT) if point.config.startswith("batch") else point.in_flight
        base = by_key.get((point.baseline, level, point.round_index))
        if base is None:
            continue
        point.ratios = {"rate": _ratio(point.rate, base.rate), "cpu": _ratio(point.server_cpu_us, base.server_cpu_us)}
        if not point.config.startswith("batch"):
            point.ratios["p50"] = _ratio(point.p50_ms, base.p50_ms)


def _ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("nan")  # nan also when either is nan (nothing served)


def _median(values: Iterable[float]) -> float:
    """The median, or nan if any value is (a round that served nothing): statistics.median's answer with a nan
    depends on where it sits, and would drop that round or not by chance."""
    values = list(values)
    return float("nan") if not values or any(v != v for v in values) else statistics.median(values)


def summarize(points: list[Point]) -> list[Point]:
    """One point per configuration and concurrency: a lone round as it is; rounds as the medians of their figures,
    and of their ratios (each round's against the baseline's window of the same round, a few windows away: the
    machine's noise moves both alike), with each round's ratios kept."""
    groups: dict[tuple[str, int], list[Point]] = {}
    for point in points:
        groups.setdefault((point.config, point.in_flight), []).append(point)
    summaries = []
    for (config, in_flight), rounds in groups.items():
        if len(rounds) == 1:
            summaries.append(rounds[0])
            continue

        def median(name: str, of: list[Point] = rounds) -> float:
            return _median(getattr(p, name) for p in of)

        names = sorted({name for p in rounds for name in p.ratios})
        errors: Counter[str] = Counter()
        for p in rounds:
            errors.update(p.errors)
        summaries.append(Point(
            config=config, in_flight=in_flight, baseline=rounds[0].baseline, seconds=sum(p.seconds for p in rounds),
            calls=sum(p.calls for p in rounds), rate=median("rate"), p50_ms=median("p50_ms"), p99_ms=median("p99_ms"),
            server_cpu_us=median("server_cpu_us"), writer_cpu_us=median("writer_cpu_us"),
            server_busy=median("server_busy"), client_busy=median("client_busy"), own_busy=median("own_busy"),
            cores_busy={core: _median(p.cores_busy.get(core, 0.0) for p in rounds) for core in rounds[0].cores_busy},
            errors=dict(errors), item_errors=sum(p.item_errors for p in rounds),
            ratios={name: _median(p.ratios[name] for p in rounds if name in p.ratios) for name in names},
            round_ratios={name: [p.ratios[name] for p in rounds if name in p.ratios] for name in names}))
    return summaries


# (what, config, in flight (None: any), ratio, comparison, threshold)
TARGETS = [
    ("defaults throughput at 64 in flight >= 0.8x bare", "defaults", 64, "rate", ">=", 0.8),
    ("defaults p50 latency at 1 in flight <= 1.25x bare", "defaults", 1, "p50", "<=", 1.25),
    ("traced+metrics throughput at 64 in flight >= 0.5x bare", "traced+metrics", 64, "rate", ">=", 0.5),
    ("workers2 throughput at 64 in flight >= 0.8x two bare processes, each on a CPU of its own as the workers",
     "workers2", 64, "rate", ">=", 0.8),
    (f"batch samples/s >= 10x bare single-sample req/s at {max(IN_FLIGHT)} in flight", BATCH_LABEL, None, "rate",
     ">=", 10.0),
    (f"batch, stacked inputs, samples/s >= 10x bare single-sample req/s at {max(IN_FLIGHT)} in flight",
     STACKED_LABEL, None, "rate", ">=", 10.0),
    (f"batch, stacked inputs answered in columns, samples/s >= 10x bare single-sample req/s at {max(IN_FLIGHT)} in "
     "flight", COLUMNS_LABEL, None, "rate", ">=", 10.0),
]


def check_targets(points: list[Point]) -> list[dict[str, Any]]:
    checked = []
    for what, config, in_flight, ratio, comparison, threshold in TARGETS:
        found = [p for p in points if p.config == config and in_flight in (None, p.in_flight) and ratio in p.ratios]
        value = found[0].ratios[ratio] if found else None
        if value is None:
            verdict = "not measured"
        else:
            verdict = "met" if (value >= threshold if comparison == ">=" else value <= threshold) else "not met"
            verdict = "not measured" if value != value else verdict  # nan: nothing was served
        rounds = found[0].round_ratios.get(ratio, []) if found else []
        checked.append({"target": what, "ratio": value, "threshold": threshold, "verdict": verdict, "rounds": rounds})
    return checked


# ------------------------------------------------------------------------------------ the report


def header(run: Run) -> list[str]:
    args = run.args
    where = (f"server pinned to CPU {SERVER_CPU}, {args.clients} {args.client} client processes pinned to CPU "
             f"{LOAD_CPU}" if run.pinned else f"nothing pinned (CPUs available: {sorted(ORIGINAL_AFFINITY)})")
    return [
        f"smallguard server shape, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {os.uname().nodename}",
        f"grpcio {grpc.__version__}, onnxruntime {onnxruntime.__version__}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores ({cpu_description()})",
        f"Predict on digits, {args.seconds:g}s per point after {run.warmup:g}s warm-up, {run.rounds} round"
        f"{'s' if run.rounds > 1 else ''} at {' and '.join(map(str, ROUNDS_AT))} in flight; {where}; "
        "workers2 (which puts each worker on a CPU of its own) and bare x2 pinned the same way, bare x2 unpinned; "
        "their clients unpinned",
    ]


def cpu_description() -> str:
    """The CPU's model and what changes the guard's path on it: numpy's own SIMD exp and log with AVX-512, which a
    single Predict's calibration then calls instead of the C library's (README, What the guard costs)."""
    from smallguard.server.calibration.rows import row_math  # the orchestrator's own import: the check, 24 ms

    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace") if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 "CPU model unknown")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    ops = row_math()
    return (f"{model}, {'with' if 'avx512f' in flags else 'no'} AVX-512; one row's exp and log from "
            f"{'numpy throughout' if ops is None else ops.name}")


CONFIG_ORDER = ("bare", GRPC_ALONE, "defaults", "traced+metrics", BATCH_LABEL, STACKED_LABEL, COLUMNS_LABEL,
                STACKED_FLOOR,
                "bare x2 pinned",
                "bare x2", "workers2")


def other_busy(point: Point) -> float:
    """CPU time on the machine's cores that was not the server's, the clients' or this script's (other users,
    the kernel), in cores: what the measurement shared the machine with."""
    return max(0.0, sum(point.cores_busy.values()) - point.server_busy - point.client_busy - point.own_busy)


def table(points: list[Point]) -> list[str]:
    def ratio(point: Point, name: str) -> str:
        if point.baseline is None:
            return "1.00x" if not point.config.startswith("batch") else "-"
        return f"{point.ratios[name]:.2f}x" if name in point.ratios else "-"

    lines = [f"{'config':<17}{'in-flight':>9}{'req/s':>9}{'vs bare':>9}{'p50 ms':>8}{'vs bare':>9}{'p99 ms':>8}"
             f"{'CPU us/req':>11}{'vs bare':>9}{'server':>8}{'clients':>9}{'other':>7}"]
    for p in sorted(points, key=lambda p: (CONFIG_ORDER.index(p.config), p.in_flight)):
        in_flight = f"{p.in_flight}x{BATCH_ITEMS}" if p.config.startswith("batch") else str(p.in_flight)
        lines.append(f"{p.config:<17}{in_flight:>9}{p.rate:>9.0f}{ratio(p, 'rate'):>9}{p.p50_ms:>8.2f}"
                     f"{ratio(p, 'p50'):>9}{p.p99_ms:>8.2f}{p.server_cpu_us:>11.0f}{ratio(p, 'cpu'):>9}"
                     f"{p.server_busy:>8.0%}{p.client_busy:>9.0%}{other_busy(p):>7.0%}")
    return lines


def footnotes(run: Run, summaries: list[Point]) -> list[str]:
    lines = ["'vs bare': against bare at the same in-flight count; workers2, and bare x2 left to the OS, against bare "
             "x2 pinned; the batch rows' req/s "
             f"is items/s, against bare's req/s at {max(IN_FLIGHT)} in flight, and their CPU is per item ('batch "
             f"stacked': the {BATCH_ITEMS} digits of a call as one [{BATCH_ITEMS}, 64] input in raw bytes).",
             "'server', 'clients': CPU seconds per second of the server's processes and of the client processes "
             "(100% = one core); 'other': the rest of the busy time on the cores (other users, the kernel).",
             *rounds_note(run), *client_check(run.points), *writer_share(summaries), *floor_note(summaries)]
    errors = [f"{p.config}@{p.in_flight} round {p.round_index + 1}: {p.errors}" for p in run.points if p.errors]
    errors += [f"{p.config} round {p.round_index + 1}: {p.item_errors} items answered with an error"
               for p in run.points if p.item_errors]
    if errors:
        lines.append("errors (not counted as served): " + "; ".join(errors))
    if (otlp := run.extra.get("otlp")) is not None:
        lines.append(f"traced+metrics: the OTLP receiver got {otlp['spans']} spans of ~{otlp['expected_spans']} "
                     f"expected (3 per Predict), and {otlp['metric_exports']} metric exports (the metrics go to the "
                     "Prometheus endpoint)")
    if (scrape := run.extra.get("metrics_endpoint")) is not None:
        lines.append(f"traced+metrics: Prometheus endpoint {'on' if scrape.get('served') else 'NOT answering'}"
                     + (f", {scrape['bytes']} bytes, smallguard_predictions "
                        f"{'present' if scrape['has_smallguard_predictions'] else 'absent'}"
                        if scrape.get("served") else f": {scrape.get('error')}"))
    return lines + run.notes


def rounds_note(run: Run) -> list[str]:
    if run.rounds < 2:
        return []
    at = " and ".join(str(level) for level in ROUNDS_AT)
    return [f"at {at} in flight (and the batch rows) every configuration was measured in {run.rounds} rounds, taking "
            "turns: each figure is the median of its rounds, and each ratio the median of the rounds' ratios (a "
            "round's against the baseline's window of the same round)."]


def writer_share(points: list[Point]) -> list[str]:
    """What the decision log's writer thread (rows into the store, off the request path) spent of the server's
    CPU, at the highest load of each smallguard configuration."""
    top = {p.config: p for p in sorted(points, key=lambda p: p.in_flight) if p.config not in BASELINES}
    shares = [f"{name}{'' if name.startswith('batch') else f'@{p.in_flight}'} {p.writer_cpu_us:.0f} us "
              f"({p.writer_cpu_us / p.server_cpu_us:.0%})" for name, p in top.items() if p.server_cpu_us > 0]
    if not shares:
        return []
    return ["of the server's CPU per request (per item for batch), the decision log's writer thread (the store's "
            "rows, off the request path): " + ", ".join(shares)]


def floor_note(points: list[Point]) -> list[str]:
    """What gRPC's sync server alone takes of the bare server's CPU at the highest load, and so what the
    throughput target of 0.8x leaves for the model run and everything the guard does."""
    top = max(IN_FLIGHT)
    by_name = {p.config: p for p in points if p.in_flight == top}
    floor, bare = by_name.get(GRPC_ALONE), by_name.get("bare")
    if floor is None or bare is None or not bare.server_cpu_us:
        return []
    line = 1.25 * bare.server_cpu_us  # 0.8x the bare server's requests/s on one core
    lines = [f"grpc alone: gRPC's sync server answering a fixed response took {floor.server_cpu_us:.0f} us of CPU per "
             f"request at {top} in flight, {floor.server_cpu_us / bare.server_cpu_us:.0%} of the bare server's "
             f"{bare.server_cpu_us:.0f}; at 0.8x the bare server a request may take {line:.0f} us, which leaves "
             f"{line - floor.server_cpu_us:.0f} us above gRPC's own for the model run and everything the guard does "
             f"(the bare server's handler: {bare.server_cpu_us - floor.server_cpu_us:.0f} us)"]
    batch_floor = next((p for p in points if p.config == STACKED_FLOOR), None)
    if batch_floor is not None and batch_floor.server_cpu_us:
        item = bare.server_cpu_us / 10  # 10x the bare server's requests/s on one core
        lines.append(f"{STACKED_FLOOR}: answering a stacked batch of {BATCH_ITEMS} with a fixed response of "
                     f"smallguard's size took gRPC {batch_floor.server_cpu_us:.1f} us of CPU per item; at 10x the "
                     f"bare server an item may take {item:.1f} us, which leaves "
                     f"{item - batch_floor.server_cpu_us:.1f} us above gRPC's own for the model run and everything "
                     "the guard does")
    return lines


def client_check(points: list[Point]) -> list[str]:
    """Was the client the bottleneck? Its CPU per call against the bare server's, and any point where the
    load core was full while the server still had idle time."""
    lines = []
    bare = [p for p in points if p.config == "bare" and p.calls]
    if bare:
        client_us = sum(p.client_busy * p.seconds for p in bare) / sum(p.calls for p in bare) * 1e6
        server_us = sum(p.server_busy * p.seconds for p in bare) / sum(p.calls for p in bare) * 1e6
        lines.append(f"client check: the clients spent {client_us:.0f} us of CPU per call, the bare server "
                     f"{server_us:.0f} us per request: one load core drives ~{1e6 / client_us:.0f} calls/s, one "
                     f"server core answers ~{1e6 / server_us:.0f}/s.")
    suspect = [f"{p.config}@{p.in_flight} round {p.round_index + 1}" for p in points
               if p.server_busy < 0.9 and p.in_flight > 1
               and p.cores_busy.get(f"cpu{LOAD_CPU}", 0.0) > 0.95 and not p.config.startswith(("bare x2", "workers2"))]
    if suspect:
        lines.append("client check: the load core was full while the server had idle time at " + ", ".join(suspect)
                     + " (limited by the load core: the clients or the other load on it)")
    return lines


def _target_ratio(value: float, threshold: float) -> str:
    """Two decimals, or as many more as it takes not to show the threshold itself for another value (0.797 is not
    met, and 0.80x would say it is)."""
    for decimals in range(2, 7):
        shown = f"{value:.{decimals}f}"
        if value == threshold or float(shown) != threshold:
            break
    return f"{shown}x"


def target_lines(checked: list[dict[str, Any]]) -> list[str]:
    rounds = max((len(item["rounds"]) for item in checked), default=0)
    lines = ["targets (issue #9)" + (f", the median of {rounds} rounds (each round's ratio in brackets):" if rounds > 1
                                     else ":")]
    width = max((len(item["target"]) for item in checked), default=0) + 1
    for item in checked:
        ratio = item["ratio"]
        value = "-" if ratio is None or ratio != ratio else _target_ratio(ratio, item["threshold"])
        each = f"  [{' '.join(f'{r:.2f}' for r in item['rounds'])}]" if len(item["rounds"]) > 1 else ""
        lines.append(f"  {item['target']:<{width}}{value:>7}  {item['verdict']:<12}{each}".rstrip())
    return lines


def write_json(path: Path, run: Run, checked: list[dict[str, Any]], head: list[str]) -> None:
    summaries = summarize(run.points)
    document = {
        "header": head,
        "options": vars(run.args),
        "pinned": run.pinned,
        "points": [dataclasses.asdict(p) for p in run.points],
        "summaries": [dataclasses.asdict(p) for p in summaries],
        "targets": checked,
        "footnotes": footnotes(run, summaries),
        "issued": run.issued,
        **run.extra,
    }
    path.write_text(json.dumps(_no_nan(document), indent=1, default=str))


def _no_nan(value: Any) -> Any:
    """NaN (nothing served) as null, so the file is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def benchmark(run: Run) -> None:
    head = header(run)
    print("\n".join(head), file=sys.stderr)
    checked: list[dict[str, Any]] = []
    lines = ["", *head]
    if not run.args.abuse_only:
        pinned_group(run)
        unpinned_group(run)
        add_ratios(run.points)
        summaries = summarize(run.points)
        checked = check_targets(summaries)
        lines += ["", *table(summaries), "", *footnotes(run, summaries), "", *target_lines(checked)]
    lines += ["", *abuse_group(run)]
    print("\n".join(lines))
    if run.args.json:
        write_json(run.args.json, run, checked, head)


# ------------------------------------------------------------------------------------ the soak


def soak(run: Run, count: int) -> None:
    """``count`` Predict calls at SOAK_IN_FLIGHT in flight against a GC-logged `smallguard serve`."""
    set_own_affinity(run.load_cpus)
    gc_log, port = run.folder / "gc.json", free_port()
    server = ServerUnderTest("soak", port, [gc_logged_command(gc_log, port)], clean_env(own_store(run, "soak")),
                             run.folder, run.server_cpus)
    limit = 120.0 + count * 0.02  # at least 50 calls/s, or it stops and says how far it got
    with started(run, [server]), load_generator(run, run.load_cpus) as load:
        pid = server.processes[0].pid
        rss = [(0.0, rss_kib(pid))]
        cpu_before, began = server.cpu_seconds(), time.monotonic()
        per_process = shares(SOAK_IN_FLIGHT, load.size)
        calls = [count * share // SOAK_IN_FLIGHT for share in per_process]
        calls[0] += count - sum(calls)

        def job(index: int, share: int) -> Job:
            return Job(server.target, "predict", share, min(share, CHANNELS_PER_CLIENT), began, began + limit,
                       count=calls[index], inspect=True, first_row=index * 97)

        load.submit(split_jobs(SOAK_IN_FLIGHT, load.size, job))
        while not load.finished() and time.monotonic() < began + limit + CALL_TIMEOUT_S:
            time.sleep(2.0)
            rss.append((time.monotonic() - began, rss_kib(pid)))
        tally = load.collect(timeout=CALL_TIMEOUT_S + 60)
        took, cpu = time.monotonic() - began, server.cpu_seconds() - cpu_before
        rss.append((took, rss_kib(pid)))
    pauses = json.loads(gc_log.read_text()) if gc_log.exists() else None
    timeouts = sum(1 for line in server.log_text().splitlines()
                   if "verifier" in line and ("budget" in line or "did not finish" in line))
    report = soak_report(count, tally, took, cpu, rss, pauses, timeouts)
    print("\n".join(report))
    if run.args.json:
        run.args.json.write_text(json.dumps(_no_nan({
            "header": report[:1], "count": count, "done": tally.calls, "seconds": took, "errors": dict(tally.errors),
            "decisions": dict(tally.decisions), "escalated_verifier_error": tally.escalated_verifier_error,
            "verifier_error_messages": dict(tally.verifier_error_messages.most_common(20)),
            "server_log_verifier_timeouts": timeouts, "gc": pauses, "rss_kib": rss, "server_cpu_s": cpu,
            "latency_ms": _latency_summary(tally.latencies)}), indent=1))


def _latency_summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"p50": _percentile(ordered, 0.5) * 1000, "p99": _percentile(ordered, 0.99) * 1000,
            "p999": _percentile(ordered, 0.999) * 1000, "max": (ordered[-1] if ordered else float("nan")) * 1000}


def soak_report(count: int, tally: Tally, took: float, cpu: float, rss: list[tuple[float, int]],
                pauses: dict[str, Any] | None, timeouts: int) -> list[str]:
    latency = _latency_summary(tally.latencies)
    decisions = ", ".join(f"{name} {n}" for name, n in tally.decisions.most_common())
    lines = [
        f"soak, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}: {count} digits Predict calls, "
        f"{SOAK_IN_FLIGHT} in flight, against smallguard serve (defaults), server on CPU {SERVER_CPU}, "
        f"clients on CPU {LOAD_CPU}; grpcio {grpc.__version__}, onnxruntime {onnxruntime.__version__}",
        f"  answered: {tally.calls} in {took:.1f}s ({tally.calls / took:.0f}/s), errors: {dict(tally.errors) or 0}; "
        f"server CPU {cpu / max(tally.calls, 1) * 1e6:.0f} us/req",
        f"  latency ms: p50 {latency['p50']:.2f}, p99 {latency['p99']:.2f}, p99.9 {latency['p999']:.2f}, "
        f"max {latency['max']:.1f}",
        f"  decisions: {decisions}",
        f"  ESCALATE with reason VERIFIER_ERROR (from the responses): {tally.escalated_verifier_error}",
    ]
    lines += [f"    {n} x {message}" for message, n in tally.verifier_error_messages.most_common(3)]
    lines.append(f"  verifier time-outs logged by the server: {timeouts}")
    if pauses is None:
        lines.append("  GC pauses: the server wrote no GC log")
    else:
        for generation, entry in sorted(pauses.items()):
            label = "start-up (before serving)" if generation == "startup" else f"generation {generation}"
            lines.append(f"  GC {label}: {entry['collections']} collections, longest "
                         f"{entry['max_ms']:.1f} ms, total {entry['total_ms']:.0f} ms, {entry['over_20ms']} over 20 ms")
        lines.append(f"  longest full (generation 2) collection while serving: {pauses['2']['max_ms']:.1f} ms")
    marks = [rss[0], *(rss[i] for i in range(1, len(rss) - 1, max(1, (len(rss) - 2) // 5))), rss[-1]]
    per_second = tally.calls / took if took > 0 else 0.0
    lines.append("  server RSS: " + ", ".join(f"{kib / 1024:.0f} MiB at {at:.0f}s (~{at * per_second / 1e3:.0f}k calls)"
                                             for at, kib in marks))
    lines.append(f"  server RSS at the end: {rss[-1][1] / 1024:.0f} MiB")
    return lines


# ------------------------------------------------------------------------------------ command line


ORIGINAL_AFFINITY = os.sched_getaffinity(0)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="measurement window per point (default 6)")
    parser.add_argument("--rounds", type=int, help=f"rounds at {' and '.join(map(str, ROUNDS_AT))} in flight "
                                                   "(default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 s per point, one round")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--clients", type=int, default=2, choices=range(1, 9), metavar="N",
                        help="client processes (default 2: fewer processes on one core cost less CPU per call)")
    parser.add_argument("--client", choices=CLIENT_KINDS, default="sync",
                        help="client kind: blocking stubs on threads, or grpc.aio (default sync: the cheaper)")
    parser.add_argument("--soak", type=int, nargs="?", const=100_000, metavar="N",
                        help="instead: N Predict calls (default 100,000) at 16 in flight, then verifier errors, "
                             "GC pauses and RSS of the server")
    parser.add_argument("--abuse-only", action="store_true",
                        help="only the overload and abuse part (shedding, half-sent calls, costly texts)")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 2.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops the servers and clients started."""
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-with-gc-log"]:  # the soak's server: --serve-with-gc-log FILE serve --port ...
        return serve_with_gc_log(Path(argv[1]), argv[2:])
    args = parse_args(argv)
    if args.serve_bare:
        if args.cpu is not None:  # before any thread starts: they all stay there
            os.sched_setaffinity(0, {args.cpu})
        serve_bare(args.port, model=not args.no_model)
        return 0
    _stop_on_sigterm()
    pinned = {SERVER_CPU, LOAD_CPU} <= ORIGINAL_AFFINITY
    with tempfile.TemporaryDirectory(prefix="server_shape-") as folder:
        run = Run(args, Path(folder), pinned)
        if not pinned:
            run.notes.append(f"CPUs {SERVER_CPU} and {LOAD_CPU} are not both available: nothing was pinned")
        try:
            if args.soak:
                soak(run, args.soak)
            else:
                benchmark(run)
        finally:
            set_own_affinity(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
