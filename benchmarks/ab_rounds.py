"""Two versions of `smallguard serve` in alternating rounds: how a change to the serving path is measured here.

One run of `make bench` moves by a tenth or more on this shared machine, more than most single changes are
worth. Two servers measured in turn, round after round, see the same noise: the medians of their rounds can be
compared where two separate runs cannot.

    .venv/bin/python benchmarks/ab_rounds.py --against REV [--kind predict|batch|stacked|columns] [--in-flight N]
        [--rounds 6] [--seconds 5] [--traced] [--b-env NAME=VALUE ...] [-- FLAG ...]

A is this working tree. B is git revision REV (checked out in a temporary worktree and imported ahead of the
installed project through PYTHONPATH, with this virtual environment's packages), or, with ``--b-env`` and no
``--against``, this tree again under other environment variables (``--b-env MALLOC_ARENA_MAX=8``). Flags after
``--`` go to both servers. B's packages come from REV, but the plugins' entry points (which verifiers exist) are
those installed here: a revision that adds or renames a plugin is not compared by this. Both serve at once, each
with a store of its own, pinned to CPU 0 and idle while the other is measured; two client processes on CPU 1 keep N
calls in flight (``--kind``: Predict, PredictBatch with an item per digit, or 64 digits stacked as one input and
answered in results or in columns), A then B in even rounds, B then A in odd ones. ``--traced`` configures both as
`make bench`'s traced+metrics: every span exported over OTLP to a receiver in this process (on the clients' CPU),
and the Prometheus endpoint on. Each window prints the server's CPU per request (per item for batches: from /proc,
every process and thread of the server), its rate and its p50; the end prints the medians and B's against A's, then
each round's B against the A beside it: their median, and in how many rounds B was above.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

from shape_load import BATCH_KINDS, Job, LoadGenerator, encoded_requests, split_jobs
from shape_servers import ROOT, OtlpReceiver, ServerUnderTest, clean_env, free_port, smallguard_command

SERVER_CPU, LOAD_CPU = 0, 1
CLIENTS = 2
CHANNELS_PER_CLIENT = 4
WARMUP_S = 1.5


def packages() -> dict[str, str]:
    """smallguard's packages and where each is in a tree, as pyproject's package-dir says (``v1``: ``proto/...``)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name.removeprefix("smallguard."): where for name, where in declared.items()}


@contextlib.contextmanager
def tree_at(revision: str, folder: Path) -> Iterator[Path]:
    """A folder to put on PYTHONPATH that holds ``revision``'s smallguard packages (a git worktree, removed after)."""
    tree = folder / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), revision], cwd=ROOT, check=True)
    try:
        package = folder / "path" / "smallguard"
        package.mkdir(parents=True)
        for name, where in packages().items():
            (package / name).symlink_to(tree / where, target_is_directory=True)
        yield folder / "path"
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)  # if the remove failed


def window(server: ServerUnderTest, load: LoadGenerator, kind: str, in_flight: int,
           seconds: float) -> tuple[float, float, float]:
    """One measurement: (server CPU us per request or item, requests or items per second, p50 ms)."""
    start = time.monotonic() + WARMUP_S
    end = start + seconds
    load.submit(split_jobs(in_flight, load.size, lambda i, share: Job(
        server.target, kind, share, min(share, CHANNELS_PER_CLIENT), start, end, first_row=i * 97)))
    time.sleep(max(0.0, start - time.monotonic()))
    before = server.cpu_seconds()
    time.sleep(max(0.0, end - time.monotonic()))
    after = server.cpu_seconds()
    tally = load.collect(timeout=120)
    served = tally.samples if kind in BATCH_KINDS else tally.calls
    if not served or tally.errors:
        raise RuntimeError(f"{server.name}: {served} served, errors {dict(tally.errors)}\n{server.log_tail()}")
    latencies = sorted(tally.latencies)
    return (after - before) / served * 1e6, served / seconds, latencies[len(latencies) // 2] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", metavar="REV", help="B is this git revision (default: B is this tree)")
    parser.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for B's server (repeatable)")
    parser.add_argument("--kind", choices=("predict", *BATCH_KINDS), default="predict")
    parser.add_argument("--in-flight", type=int, default=64, help="calls in flight (batches: calls of 64 items)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window of each server each round")
    parser.add_argument("--traced", action="store_true",
                        help="both servers export every span over OTLP and serve the Prometheus endpoint")
    parser.add_argument("flags", nargs="*", help="after --: flags for both servers")
    args = parser.parse_args(argv)
    if args.against is None and not args.b_env:
        parser.error("give --against REV, --b-env NAME=VALUE, or both: otherwise A and B are the same server")
    if any("=" not in item for item in args.b_env):
        parser.error("--b-env takes NAME=VALUE")
    b_env = dict(item.split("=", 1) for item in args.b_env)
    for signum in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl-C: stop the servers, remove the worktree
        signal.signal(signum, lambda number, _frame: sys.exit(128 + number))
    folder = Path(tempfile.mkdtemp(prefix="smallguard-ab-"))
    try:
        with contextlib.ExitStack() as stack:
            if args.against is not None:  # REV's packages ahead of the installed ones (and of any PYTHONPATH given)
                b_env["PYTHONPATH"] = os.pathsep.join(
                    [str(stack.enter_context(tree_at(args.against, folder))), *filter(None, [
                        os.environ.get("PYTHONPATH")])])
            return _rounds(args, b_env, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _rounds(args: argparse.Namespace, b_env: dict[str, str], folder: Path) -> int:
    os.sched_setaffinity(0, {LOAD_CPU})  # the client processes and the receiver's threads start from this affinity
    receiver = OtlpReceiver() if args.traced else None
    servers = {}
    for name, extra in (("A", {}), ("B", b_env)):
        port = free_port()
        traced = {} if receiver is None else receiver.traced_env() | {"SMALLGUARD_METRICS_PORT": str(free_port())}
        env = clean_env({"SMALLGUARD_STORE": f"sqlite:///{folder}/{name}.db", **traced, **extra})
        servers[name] = ServerUnderTest(name, port, [smallguard_command(port, *args.flags)], env, folder, {SERVER_CPU})
    b_is = f"revision {args.against}" if args.against else "this tree"
    print(f"A: this tree; B: {b_is}{''.join(f' {k}={v}' for k, v in b_env.items() if k != 'PYTHONPATH')}; "
          f"{'traced+metrics, ' if args.traced else ''}{args.kind} at {args.in_flight} in flight, {args.rounds} rounds "
          f"of {args.seconds:g} s, servers on CPU {SERVER_CPU}, {CLIENTS} client processes on CPU {LOAD_CPU}",
          flush=True)
    unit = "item" if args.kind in BATCH_KINDS else "request"
    results: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
    load = LoadGenerator(CLIENTS, {LOAD_CPU}, "sync")
    try:
        probe = encoded_requests("predict")[0]
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready(probe)
        for round_ in range(args.rounds):
            for name in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                figures = window(servers[name], load, args.kind, args.in_flight, args.seconds)
                results[name].append(figures)
                print(f"  round {round_ + 1} {name}: {figures[0]:7.1f} us of CPU per {unit}, {figures[1]:8.0f}/s, "
                      f"p50 {figures[2]:.3f} ms", flush=True)
    finally:
        load.close()
        for server in servers.values():
            server.stop()
        if receiver is not None:
            receiver.stop()
    medians = {name: [statistics.median(r[i] for r in rounds) for i in range(3)] for name, rounds in results.items()}
    for name, (cpu, rate, p50) in medians.items():
        low, high = min(r[0] for r in results[name]), max(r[0] for r in results[name])
        print(f"{name} medians: {cpu:.1f} us of CPU per {unit} ({low:.1f}-{high:.1f}), {rate:.0f}/s, p50 {p50:.3f} ms")
    (a_cpu, a_rate, a_p50), (b_cpu, b_rate, b_p50) = medians["A"], medians["B"]
    print(f"B against A: CPU per {unit} {b_cpu / a_cpu:.3f}x, rate {b_rate / a_rate:.3f}x, p50 {b_p50 / a_p50:.3f}x")
    print(paired(results["A"], results["B"], unit))
    return 0


def paired(a: list[tuple[float, float, float]], b: list[tuple[float, float, float]], unit: str) -> str:
    """Each round's B against the A measured next to it: on a machine whose speed drifts over minutes the rounds'
    ratios agree where the medians of whole runs do not (two runs of 6 rounds gave 0.95x and 1.09x)."""
    ratios = [rb[0] / ra[0] for ra, rb in zip(a, b, strict=True)]
    above = sum(ratio > 1 for ratio in ratios)
    return (f"paired rounds: B's CPU per {unit} against A's [{' '.join(f'{r:.2f}' for r in ratios)}], median "
            f"{statistics.median(ratios):.3f}x; B above A in {above} of {len(ratios)} rounds")


if __name__ == "__main__":
    sys.exit(main())
