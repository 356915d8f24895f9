#!/usr/bin/env python3
"""How long building the workload suites takes (target: the default suite under a second).

Usage: .venv/bin/python benchmarks/bench_workloads.py [--repeat N] [SUITE ...]   (default: every suite; `real`
only where the shared traces folder exists). Prints one line per suite: best and median
wall time over N builds, workloads, windows and expert-load cells.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from harness import workloads as wl


def bench(suite: str, repeat: int) -> str:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        built = wl.suite_workloads(suite)
        times.append(time.perf_counter() - start)
    cells = sum(w.weights.size for w in built)
    windows = sum(w.num_windows for w in built)
    return (f"{suite:8s} best {min(times):7.3f} s  median {statistics.median(times):7.3f} s  "
            f"{len(built):2d} workloads  {windows:3d} windows  {cells:>9,d} cells")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", help="suites to build (default: all)")
    parser.add_argument("--repeat", type=int, default=5, help="builds per suite (default: 5)")
    args = parser.parse_args(argv)
    suites = args.suites or wl.suite_names()
    for suite in suites:
        if suite == "real" and not wl.traces_dir().is_dir():
            print(f"real     skipped: traces folder {wl.traces_dir()} is absent")
            continue
        print(bench(suite, max(args.repeat, 1)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
