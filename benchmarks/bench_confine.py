#!/usr/bin/env python3
"""What confinement by namespaces (harness.confine) adds to an evaluation, on this machine.

1. Setup: in a process that has imported numpy and torch (as the zygote has), the time
   from a fork to the point where the worker would read the candidate, with and without
   `confine.enter` (the keeper's unshare, the init's spawn, the worker's fork, mounts and
   capability drop), each repeated, medians compared.
2. End to end: a near-free candidate (tests/data/round_robin.py, alone, no reference) on
   a tiny workload, its worker's whole wall time (from its start to its end reported: with
   namespaces, once its keeper saw the namespace empty; the zygote forks and confines its
   spare workers ahead, so setup is not in it) over N
   evaluations, with namespaces and with EPLB_HARNESS_CONFINEMENT=process, from two
   interpreters (the confinement is per zygote) asked in turns, one evaluation at a time.

Target: under 20 ms per evaluation.

    .venv/bin/python benchmarks/bench_confine.py [--repeats 30] [--evaluations 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

END_TO_END = '''
import json, sys
from dataclasses import asdict
import numpy as np
from harness import protocol
from harness.sandbox import WorkerRequest, run_worker
from harness.settings import TimingConfig
settings = protocol.WorkerSettings(topology={"num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8},
    device="cpu", threads=1, timing=asdict(TimingConfig(warmup=0, min_samples=1, max_samples=1, min_time_s=0.0)),
    memory_mb=4096)
weights = np.random.default_rng(0).random((1, 2, 12)) * 100
source = open(sys.argv[1]).read()
for _ in sys.stdin:  # one evaluation per line asked
    outcome = run_worker(WorkerRequest(source, weights, settings, timeout_s=60))
    assert outcome.answer.get("status") == "ok", (outcome.error, outcome.answer)
    print(json.dumps([outcome.wall_s, outcome.confinement]), flush=True)
'''


def setup_times(repeats: int) -> tuple[float, float]:
    import numpy  # noqa: F401  (as in the zygote)
    import torch  # noqa: F401

    from harness import confine

    plan = confine.plan(confine.request()["hide"], confine.python_folders(), shutil.which("cat"))
    workdir = tempfile.mkdtemp(prefix="eplb-bench-")

    def once(confined: bool) -> float:
        ready_read, ready_write = os.pipe()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.setsid()
            if confined:
                confine.enter(plan, workdir, os.open(os.devnull, os.O_WRONLY))  # no zygote hears the keeper here
            os.write(ready_write, b"x")
            os._exit(0)
        os.read(ready_read, 1)
        elapsed = time.perf_counter() - started
        os.waitpid(pid, 0)
        os.close(ready_read)
        os.close(ready_write)
        return elapsed

    plain, confined = [], []
    for _ in range(repeats):
        plain.append(once(False))
        confined.append(once(True))
    shutil.rmtree(workdir)
    return statistics.median(plain), statistics.median(confined)


def end_to_end(evaluations: int) -> dict[str, list[float]]:
    """Worker wall times per confinement, from two interpreters asked in turns, one
    evaluation each at a time, so that the machine's load drifts alike for both."""
    candidate = ROOT / "tests" / "data" / "round_robin.py"
    runs = {mode: subprocess.Popen([sys.executable, "-c", END_TO_END, str(candidate)], cwd=ROOT, text=True,
                                   env={**os.environ, "EPLB_HARNESS_CONFINEMENT": mode, "PYTHONPATH": str(ROOT)},
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            for mode in ("namespaces", "process")}
    walls: dict[str, list[float]] = {mode: [] for mode in runs}
    for index in range(evaluations + 1):
        for mode, run in runs.items():
            run.stdin.write("\n")
            run.stdin.flush()
            wall_s, got = json.loads(run.stdout.readline())
            assert got == mode, (got, mode)
            if index:  # the first pays for the zygote's start
                walls[mode].append(wall_s)
    for run in runs.values():
        run.stdin.close()
        run.wait()
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--evaluations", type=int, default=60)
    args = parser.parse_args()
    plain_s, confined_s = setup_times(args.repeats)
    print(f"fork to worker ready, median of {args.repeats}: {1e3 * plain_s:.1f} ms plain, "
          f"{1e3 * confined_s:.1f} ms confined: +{1e3 * (confined_s - plain_s):.1f} ms")
    walls = end_to_end(args.evaluations)
    medians = {mode: statistics.median(values) for mode, values in walls.items()}
    print(f"worker wall time of a near-free candidate, median of {len(walls['process'])}: "
          f"{1e3 * medians['process']:.1f} ms process, {1e3 * medians['namespaces']:.1f} ms namespaces: "
          f"+{1e3 * (medians['namespaces'] - medians['process']):.1f} ms (target: under 20 ms)")


if __name__ == "__main__":
    main()
