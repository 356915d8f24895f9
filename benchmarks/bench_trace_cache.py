#!/usr/bin/env python3
"""Reading a trace file the first time (parsed, then cached) and the second time (from the
parse cache, `harness.workloads.cache`), through `read_loads` as every evaluation does.

Files: the DeepSeek-V3 SGLang traces in the shared traces folder (where present), any
`--trace FILE` given, and an ADRS `expert-load.json` of 58 x 256 written here
(`--adrs-steps`, default 500 steps: about 34 MB, the size the ADRS comparison uses).
Each file is read with the cache off (the parse alone), then twice with an empty cache of
this run's own (never the user's): the first read parses and stores, the second loads.
Prints per file: size, best of `--repeat` timings of each, and how many times faster the
second read is than the parse.

Usage: .venv/bin/python benchmarks/bench_trace_cache.py [--trace FILE ...] [--adrs-steps 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_adrs import write_adrs_file

from harness.workloads import read_loads, traces_dir
from harness.workloads.cache import CACHE_ENV


def best_of(repeat: int, read) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(path: Path, cache_folder: Path, repeat: int) -> str:
    os.environ[CACHE_ENV] = "none"
    parse_s = best_of(repeat, lambda: read_loads(path))
    first, second = [], []
    for attempt in range(repeat):
        os.environ[CACHE_ENV] = str(cache_folder / f"{path.stem}-{attempt}")  # empty each time
        first.append(best_of(1, lambda: read_loads(path)))
        second.append(best_of(1, lambda: read_loads(path)))
    shape = "x".join(map(str, read_loads(path).weights.shape))
    return (f"{path.name[:34]:34s} {path.stat().st_size / 1e6:7.2f} MB  [{shape:>10s}]  parse {parse_s * 1e3:8.1f} ms  "
            f"first {min(first) * 1e3:8.1f} ms  second {min(second) * 1e3:6.2f} ms  "
            f"({parse_s / min(second):,.0f}x faster)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, action="append", default=[], help="a trace file to read; repeatable")
    parser.add_argument("--adrs-steps", type=int, default=500, help="steps of the ADRS file written (0: none)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per figure, the best shown (default: 3)")
    args = parser.parse_args(argv)
    shared = sorted((traces_dir() / "deepseek-v3-sglang").glob("*.json"))
    if not shared:
        print(f"shared traces skipped: {traces_dir() / 'deepseek-v3-sglang'} holds no JSON")
    with tempfile.TemporaryDirectory(prefix="bench-trace-cache-") as folder:
        files = shared + args.trace
        if args.adrs_steps:
            files.append(write_adrs_file(Path(folder) / "expert-load.json", args.adrs_steps))
        for path in files:
            print(bench(path, Path(folder) / "cache", max(args.repeat, 1)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
