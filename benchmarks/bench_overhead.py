#!/usr/bin/env python3
"""Per-evaluation overhead of the harness, beside the candidate's own call time.

Scores the DeepSeek reference on the DeepSeek-V3 preset (58 layers x 256 experts, 288
replicas, 4 windows of zipf load) a few times through `evaluate()`, with the reference
wrapped in a probe that timestamps (wall clock, shared by parent and worker) when the
worker starts importing it, when torch is in, and the start and end of every call. Each
evaluation's wall time then splits exactly into:
- before the candidate's import: the parent's row context and request, process spawn,
  interpreter start, the worker's own set-up (request, memory cap);
- numpy/torch import (the candidate imports torch first; the worker's import is then free);
- the rest of the import and the worker's weights load, up to the first call;
- the candidate's calls (the placement pass, warm-up and every timed call);
- the harness between calls: fresh input copies, output conversion and `placements.npz`,
  the nondeterminism check, the timing loop's bookkeeping;
- after the last call: answer written, worker exit, the parent's reaping, group kill and
  /proc scan, answer and placements read back and verified;
- parent scoring (`scoring_s`: placement checks and metrics);
and then the store append (one Parquet file). The probe costs a few microseconds per
call plus a small file write, counted under "between calls".

Usage: .venv/bin/python benchmarks/bench_overhead.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness.candidates import REFERENCE_PATH, Candidate, load_candidate, source_hash
from harness.evaluate import evaluate, worker_settings
from harness.metrics import Placement, check_placement
from harness.protocol import PLACEMENT_ARRAYS, placement_key
from harness.sandbox import WorkerRequest, _kill_tagged, run_worker
from harness.settings import Settings
from harness.store import ResultStore
from harness.workloads import synthetic_workload

PROBE_HEAD = '''import json as _probe_json
import time as _probe_time
_PROBE_PATH = {path!r}
_probe = {{"import_start": _probe_time.time()}}
import numpy as _probe_numpy  # noqa: E402,F401
import torch as _probe_torch  # noqa: E402,F401
_probe["torch_imported"] = _probe_time.time()
'''
PROBE_TAIL = '''

_probe_entry = rebalance_experts
_probe["calls"] = []


def rebalance_experts(*args):
    begin = _probe_time.time()
    try:
        return _probe_entry(*args)
    finally:
        _probe["calls"].append((begin, _probe_time.time()))
        with open(_PROBE_PATH, "w") as _probe_file:
            _probe_json.dump(_probe, _probe_file)
'''


def probed(candidate: Candidate, path: Path) -> Candidate:
    source = PROBE_HEAD.format(path=str(path)) + candidate.source + PROBE_TAIL
    return Candidate(name=candidate.name, source=source, hash=source_hash(source), path=candidate.path)


def median_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    workload = synthetic_workload("zipf", "deepseek-v3", 0, 4)
    reference = load_candidate(REFERENCE_PATH)
    settings = Settings(threads=args.threads, timeout_s=300)
    phases: dict[str, list[float]] = {}
    one_call, calls_made = [], []

    def record(name: str, seconds: float) -> None:
        phases.setdefault(name, []).append(seconds)

    with tempfile.TemporaryDirectory() as scratch:
        probe_path = Path(scratch) / "probe.json"
        candidate = probed(reference, probe_path)
        store = ResultStore(Path(scratch) / "store")
        for _ in range(args.repeats):
            started_wall, started = time.time(), time.perf_counter()
            row = evaluate(candidate, workload, settings)
            total = time.perf_counter() - started
            assert row.status == "ok", row.error
            appended = time.perf_counter()
            store.append([row])
            append_s = time.perf_counter() - appended
            probe = json.loads(probe_path.read_text())
            calls = probe["calls"]
            in_calls = sum(end - begin for begin, end in calls)
            first, last = calls[0][0], calls[-1][1]
            record("evaluate() wall, end to end", total)
            record("  before the candidate's import", probe["import_start"] - started_wall)
            record("  numpy/torch import", probe["torch_imported"] - probe["import_start"])
            record("  rest of import, weights load", first - probe["torch_imported"])
            record("  candidate calls", in_calls)
            record("  harness between calls", last - first - in_calls)
            record("  after the last call (answer back)", started_wall + total - row.scoring_s - last)
            record("  parent scoring (checks + metrics)", row.scoring_s)
            record("store append (one Parquet file)", append_s)
            record("harness overhead per evaluation", total + append_s - in_calls)
            one_call.append(row.runtime_s)
            calls_made.append(len(calls))

    # Parts of the above timed apart: the placement checks, and the /proc scan.
    outcome = run_worker(WorkerRequest(reference.source, workload.weights, worker_settings(workload, settings),
                                       settings.timeout_s))
    placements = [Placement(*(outcome.placements[placement_key(array, t)] for array in PLACEMENT_ARRAYS))
                  for t in range(workload.num_windows)]

    def check_all() -> None:
        for placement in placements:
            check_placement(placement, workload.num_layers, workload.num_logical_experts, workload.topology)

    med = statistics.median
    print(f"workload {workload.name}: {workload.num_windows} windows x {workload.num_layers} layers x "
          f"{workload.num_logical_experts} experts, {workload.topology.describe()}")
    print(f"candidate {reference.name} (probed); {args.repeats} evaluations, medians of each line; "
          f"threads {args.threads}; {len(os.sched_getaffinity(0))} cores, load average "
          f"{os.getloadavg()[0]:.1f}, python {sys.version.split()[0]}")
    print(f"{'one candidate call (median of its samples)':<46} {med(one_call) * 1e3:9.1f} ms")
    print(f"{'calls per evaluation':<46} {med(calls_made):9.0f}")
    for name, values in phases.items():
        print(f"{name:<46} {med(values) * 1e3:9.1f} ms")
    print(f"{'  of scoring: placement checks, all windows':<46} {median_of(check_all, 20) * 1e3:9.1f} ms  (apart)")
    print(f"{'  of answer back: /proc scan for escapees':<46} "
          f"{median_of(lambda: _kill_tagged(uuid.uuid4().hex), 20) * 1e3:9.1f} ms  (apart)")
    overhead, calls_s = med(phases["harness overhead per evaluation"]), med(phases["  candidate calls"])
    print(f"overhead / candidate's own time: {overhead / calls_s:.1f}x; "
          f"overhead = {overhead / med(one_call):.0f} calls")


if __name__ == "__main__":
    main()
