"""The `smallguard` command: `serve` the model repository (this module), run an offline command
(`models`, `calibrate`, `evaluate`: ``smallguard.server.commands``, imported only when named), or
`predict` against a running server (``smallguard.client.command``)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from smallguard.server.settings import Settings

log = logging.getLogger("smallguard")

MALLOC_ARENAS = 2  # glibc malloc arenas per server process, unless MALLOC_ARENA_MAX says otherwise
_M_ARENA_MAX = -8  # glibc's malloc.h


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `serve` never loads the offline commands (nor what they import); any other word may name one.
    parser = _parser(offline=argv[:1] != ["serve"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("SMALLGUARD_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the store's migrations: its INFO lines tell nothing
    try:
        settings = _settings(args)
    except ValueError as exc:
        parser.error(str(exc))
    return args.run(args, settings)


def _parser(offline: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smallguard", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the models over gRPC")
    serve.set_defaults(run=lambda _args, settings: serve_command(settings))
    for item in dataclasses.fields(Settings):
        flag = "--" + item.name.replace("_", "-")
        serve.add_argument(flag, dest=item.name, default=None,
                           help=f"{item.metadata['help']} (env {item.metadata['env']})")
    if offline:
        from smallguard.client.command import add_predict_command
        from smallguard.server.commands import add_commands

        add_commands(commands)
        add_predict_command(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings) if getattr(args, f.name, None)}
    return Settings.from_env().updated(flags, lambda name: "--" + name.replace("_", "-"))


def serve_command(settings: Settings) -> int:
    if settings.workers > 1:
        return _supervise(settings)
    cap_malloc_arenas()  # before the server makes any thread
    from smallguard.server.assembly import create_server
    from smallguard.server.observability.telemetry import configure_tracing

    stopping = threading.Event()
    drain = [0.0]

    def on_signal(signum: int, _frame: object) -> None:
        # SIGTERM is an orchestrator's: drain first. Ctrl-C is a person's: refuse new calls at once.
        drain[0] = settings.drain_seconds if signum == signal.SIGTERM else 0.0
        log.info("%s: draining for %gs, then finishing the calls in flight within %gs in all",
                 signal.Signals(signum).name, drain[0], settings.grace_seconds)
        stopping.set()

    # Handlers first: a SIGTERM that lands while bundles load still means "stop cleanly".
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reload_asked = threading.Event()
    signal.signal(signal.SIGHUP, lambda _signum, _frame: reload_asked.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # a worker's, held back until now (_start_worker)
    provider = configure_tracing()
    try:
        server = create_server(settings)
    except Exception as exc:  # start-up refused: one clear line, no traceback
        log.error("cannot start: %s", exc)
        return 2
    # Everything loaded so far lives as long as the process: move it out of the collector's sight, so a
    # full collection walks only what requests create (a pause there would be charged to a request).
    gc.collect()
    gc.freeze()
    server.start()
    print(f"smallguard serving on port {server.port}", flush=True)
    threading.Thread(target=_reload_on_sighup, args=(server, reload_asked, stopping), name="smallguard-sighup",
                     daemon=True).start()
    stopping.wait()
    server.stop(settings.grace_seconds, drain=drain[0])
    if provider is not None:
        provider.shutdown()
    log.info("stopped")
    return 0


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc keep at most ``arenas`` arenas in this process, unless the operator set a limit
    (MALLOC_ARENA_MAX, or glibc.malloc.arena_max in GLIBC_TUNABLES: glibc has read it already); True when the
    cap was set.

    glibc gives each new thread that allocates an arena of its own, up to eight per core, and an arena keeps
    what was freed in it. With a thread per call, a server's RSS grew by 12 MiB while it served, against 7
    with two arenas (the 100,000-call soak, 155 against 149 MiB); the threads take turns holding the
    interpreter lock, so they seldom contend for an arena (alternating rounds at 64 in flight: 384 against
    385 us of CPU per request). Elsewhere than glibc, nothing."""
    if ("MALLOC_ARENA_MAX" in os.environ or "glibc.malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", "")
            or sys.platform != "linux"):
        return False
    try:
        return ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas) == 1
    except (OSError, AttributeError):  # no mallopt: another C library
        return False


def _reload_on_sighup(server: Any, asked: threading.Event, stopping: threading.Event) -> None:
    """SIGHUP: load the model repository again and serve it (a bundle that does not load keeps the old ones)."""
    while not stopping.is_set():
        if not asked.wait(0.5):
            continue
        asked.clear()
        log.info("SIGHUP: reloading the model repository")
        try:
            names = server.reload()
        except Exception as exc:  # a bundle that does not load: say which, keep serving the old models
            log.error("reload refused, the models served are unchanged: %s", exc)
            continue
        log.info("reloaded: serving %s", ", ".join(names))


def _start_worker(command: list[str], env: dict[str, str], cpu: int | None) -> subprocess.Popen[bytes]:
    """A worker process, on ``cpu`` if one is given (set before it starts, so every thread it makes stays there),
    that gets SIGTERM if the supervisor dies without stopping it (SIGKILL, a crash): no orphan keeps serving the
    port and writing the store on its own (Linux's PR_SET_PDEATHSIG).

    The worker starts with SIGHUP blocked (a signal mask survives exec), and unblocks it once its handler is in
    place: SIGHUP's default action ends a process, so a reload the supervisor passed on while the worker was
    still starting ended it, and the supervisor, seeing a worker die at start-up, stopped the server. A SIGHUP
    held back is delivered when the worker unblocks it, and reloads it."""
    def prepare() -> None:  # in the child, before exec
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        if sys.platform == "linux":
            _die_with_parent()
        if cpu is not None:
            with contextlib.suppress(OSError):  # a CPU gone since it was listed: the worker runs unpinned
                os.sched_setaffinity(0, {cpu})

    worker = subprocess.Popen(command, env=env, preexec_fn=prepare)
    if cpu is not None:  # the child cannot log from preexec_fn: say here if its CPU was not set
        with contextlib.suppress(OSError):
            if os.sched_getaffinity(worker.pid) != {cpu}:
                log.warning("worker %d could not be put on CPU %d: the OS places it", worker.pid, cpu)
    return worker


def worker_cpus(workers: int, seed: int) -> list[int | None]:
    """The CPU of each worker: the CPUs this process may use (a container's cpuset, taskset) in turn, from the
    one that ``seed`` picks. A Python process runs on one core at a time (the interpreter lock); its threads
    spread over several cores hand the lock from core to core, which cost `--workers 2` about 40% more CPU per
    request on this 2-core machine (README, Server shape). None for every worker where the OS cannot pin."""
    if not hasattr(os, "sched_getaffinity"):
        return [None] * workers
    allowed = sorted(os.sched_getaffinity(0))
    return [allowed[(seed + i) % len(allowed)] for i in range(workers)]


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _supervise(settings: Settings) -> int:
    """Run N single-worker processes on one port; forward SIGTERM; restart a crashed one."""
    if settings.port == 0:
        log.error("--workers %d needs a fixed --port: the processes share it", settings.workers)
        return 2
    env = dict(os.environ)
    env.update({item.metadata["env"]: str(getattr(settings, item.name)) for item in dataclasses.fields(Settings)})
    env["SMALLGUARD_WORKERS"] = "1"
    command = [sys.executable, "-m", "smallguard.server.cli", "serve"]
    # Each worker serves its own metrics (Prometheus scrapes every one): ports P .. P+N-1.
    envs = [{**env, "SMALLGUARD_METRICS_PORT": str(settings.metrics_port + i)} if settings.metrics_port else env
            for i in range(settings.workers)]
    for i in range(1, settings.workers):  # one review console, served by the first worker
        envs[i] = {**envs[i], "SMALLGUARD_CONSOLE_PORT": "0"}
    if settings.metrics_port and settings.metrics_port <= settings.port < settings.metrics_port + settings.workers:
        log.error("--port %d falls inside the metrics ports %d..%d of %d workers", settings.port,
                  settings.metrics_port, settings.metrics_port + settings.workers - 1, settings.workers)
        return 2
    if settings.metrics_port:
        log.info("worker metrics on ports %d..%d", settings.metrics_port, settings.metrics_port + settings.workers - 1)
    pin = settings.pin_workers and settings.intra_op_threads == 1  # several onnxruntime threads need several CPUs
    if settings.pin_workers and not pin:
        log.info("workers not pinned to CPUs: --intra-op-threads %d runs each model on several",
                 settings.intra_op_threads)
    # a random first CPU: replicas on one machine spread at random (a process id would not: it is 1 in every
    # container)
    cpus = worker_cpus(settings.workers, int.from_bytes(os.urandom(2), "big")) if pin else [None] * settings.workers
    if cpus[0] is not None:
        log.info("workers on CPUs %s (--pin-workers 0: let the OS move them)", ", ".join(map(str, cpus)))
    workers: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    # before the workers: a signal that comes while they start is passed on, not the default action's end
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, lambda _signum, _frame: [w.send_signal(signal.SIGHUP) for w in workers
                                                           if w.poll() is None])
    for i in range(settings.workers):  # each listed as soon as it exists: the handlers reach it from then on
        workers.append(_start_worker(command, envs[i], cpus[i]))
    started = [time.monotonic()] * settings.workers
    if stopping.is_set():  # a SIGTERM while they were being started: pass it on to every one
        on_signal(signal.SIGTERM, None)
    while not stopping.is_set():
        for i, worker in enumerate(workers):
            code = worker.poll()
            if code is None or stopping.is_set():
                continue
            if code == 2 or time.monotonic() - started[i] < 5:
                log.error("worker %d exited with %d at start-up; stopping", worker.pid, code)
                on_signal(signal.SIGTERM, None)
                break
            log.warning("worker %d exited with %d; starting another", worker.pid, code)
            workers[i], started[i] = _start_worker(command, envs[i], cpus[i]), time.monotonic()
        stopping.wait(0.5)
    # A worker ended by the SIGTERM we forwarded (before its handler was installed) stopped cleanly.
    codes = [0 if code == -signal.SIGTERM else code for code in (worker.wait() for worker in workers)]
    return max(abs(code) for code in codes) if any(codes) else 0


if __name__ == "__main__":
    sys.exit(main())
