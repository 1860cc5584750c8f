"""What the decision log costs a prediction: Guard.predict in process, with the store (the server's default:
every decision queued and written to SQLite by the writer thread) against without it (an offline replay's
guard), alternating rounds in the same process. CPU time counts every thread, so the writer's work is in it.

    .venv/bin/python benchmarks/decision_log_cost.py [--predictions N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from smallguard.server.assembly import build_guard
from smallguard.server.domain.predictions import PredictCall, TensorInput
from smallguard.server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (ROOT / "models/digits/data/test.jsonl").read_text().splitlines()]
    calls = [PredictCall("digits", tensors=(TensorInput("pixels", "float32", (64,),
                                                        np.asarray(r["pixels"], dtype=np.float32)),))
             for r in rows]
    folder = tempfile.mkdtemp()
    settings = Settings(model_repository=ROOT / "models", store=f"sqlite:///{folder}/store.sqlite3")
    guards = {"without the store": build_guard(settings, keep_feedback=False),
              "with the store": build_guard(settings, keep_feedback=True)}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in guards}
    for _ in range(args.rounds):
        for name, guard in guards.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(args.predictions):
                guard.predict(calls[i % len(calls)])
            if guard._decisions is not None:
                guard._decisions.flush(60)
            figures[name].append(((time.perf_counter() - wall) / args.predictions * 1e6,
                                  (time.process_time() - cpu) / args.predictions * 1e6))
    base_wall = statistics.median(w for w, _ in figures["without the store"])
    base_cpu = statistics.median(c for _, c in figures["without the store"])
    for name, values in figures.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"{name:>18}: {wall:7.1f} us wall, {cpu:7.1f} us CPU per prediction "
              f"({wall / base_wall:.2f}x, {cpu / base_cpu:.2f}x)")
    for guard in guards.values():
        guard.close()


if __name__ == "__main__":
    main()
