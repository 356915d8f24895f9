#!/usr/bin/env python3
"""Timing stability on a shared machine: the seed parent evaluated five times on a real
DeepSeek-V3 trace, timed in pairs beside the DeepSeek reference, while a CPU hog runs
beside the evaluations. Prints, per evaluation, the absolute median runtime, the paired
speedup (with its 95% interval) and the score, then the spread (max/min - 1) of each
(targets: at most 5% for the speedup, 2% for the score; the absolute time is shown for
comparison, it has no target).

    .venv/bin/python benchmarks/bench_timing.py [--trace FILE] [--repeats 5] [--hogs 1] [--device cpu]
"""

import argparse
import subprocess
import sys
from pathlib import Path

from harness.candidates import CANDIDATES_DIR, REFERENCE_PATH, load_candidate
from harness.evaluate import evaluate
from harness.settings import Settings
from harness.workloads import file_workload, traces_dir

HOG = "while True:\n    pass\n"


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=traces_dir() / "deepseek-v3-sglang" / "decode_in1000out1000.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hogs", type=int, default=1, help="busy-looping processes beside the evaluations")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not args.trace.is_file():
        raise SystemExit(f"no trace at {args.trace}: give --trace or set EPLB_TRACES_DIR")
    workload = file_workload(args.trace)
    parent, reference = load_candidate(CANDIDATES_DIR / "seed_parent.py"), load_candidate(REFERENCE_PATH)
    settings = Settings(device=args.device)
    print(f"{workload.name}: {workload.num_windows} window(s) x {workload.num_layers} layers x "
          f"{workload.num_logical_experts} experts; {args.hogs} CPU hog(s) running beside")
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
    runtimes, speedups, scores = [], [], []
    try:
        for attempt in range(args.repeats):
            row = evaluate(parent, workload, settings, partner=reference)
            if row.status != "ok":
                raise SystemExit(f"seed parent failed: {row.status}: {row.error}")
            runtimes.append(row.runtime_s)
            speedups.append(row.speedup_vs_reference)
            scores.append(row.score)
            print(f"evaluation {attempt + 1}: runtime {row.runtime_s * 1e3:7.2f} ms (reference "
                  f"{row.reference_runtime_s * 1e3:7.2f} ms), speedup {row.speedup_vs_reference:.4f} "
                  f"[{row.speedup_ci95_low:.4f}, {row.speedup_ci95_high:.4f}], score {row.score:.5f}, "
                  f"{row.runtime_samples} pairs")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print(f"spread (max/min - 1): absolute runtime {spread(runtimes):.1%}, paired speedup {spread(speedups):.1%} "
          f"(target 5%), score {spread(scores):.2%} (target 2%)")


if __name__ == "__main__":
    main()
