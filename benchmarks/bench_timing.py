#!/usr/bin/env python3
"""Timing stability: the DeepSeek reference on the 58 x 256 DeepSeek-V3 preset, evaluated
three times in a row with the default timing settings; prints the three medians and
their spread (the target is within 10% of each other).

    .venv/bin/python benchmarks/bench_timing.py [--device cpu|cuda] [--repeats 3]
"""

import argparse

from harness.candidates import REFERENCE_PATH, load_candidate
from harness.evaluate import evaluate
from harness.settings import Settings
from harness.workloads import synthetic_workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    workload = synthetic_workload("zipf", "deepseek-v3", seed=0, num_windows=4, exponent=0.6)
    reference = load_candidate(REFERENCE_PATH)
    medians = []
    for attempt in range(args.repeats):
        row = evaluate(reference, workload, Settings(device=args.device))
        if row.status != "ok":
            raise SystemExit(f"reference failed: {row.status}: {row.error}")
        medians.append(row.runtime_s)
        print(f"run {attempt + 1}: median {row.runtime_s * 1e3:.2f} ms, IQR {row.runtime_iqr_s * 1e3:.2f} ms, "
              f"min {row.runtime_min_s * 1e3:.2f} ms, {row.runtime_samples} samples, unstable={row.runtime_unstable}")
    spread = (max(medians) - min(medians)) / min(medians)
    print(f"medians within {spread:.1%} of each other ({'meets' if spread <= 0.10 else 'misses'} the 10% target)")


if __name__ == "__main__":
    main()
