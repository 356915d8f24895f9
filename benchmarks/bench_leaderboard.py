#!/usr/bin/env python3
"""Time the leaderboard over a large store.

Builds a store of N rows (default 100,000: 12,500 candidates x 8 workloads, with
lineage, 5% failures, older rows superseded by newer ones and the per-layer column
filled) as a few large Parquet files in the store's schema, then times, in this process
and as the CLI a user runs:
- reading the leaderboard's columns, ranking and printing the terminal table,
- the same through `eplb-harness leaderboard` (process start included),
- the HTML report (`--format html`).
Then, since `run` writes one file per evaluation, it reads a store of `--small-files`
one-row files (default 2,000) before and after `ResultStore.compact()`.

    .venv/bin/python benchmarks/bench_leaderboard.py [--rows 100000] [--files 4] [--small-files 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.report import COLUMNS, format_table, leaderboard, to_standings
from harness.store import SCHEMA, ResultStore

ROOT = Path(__file__).resolve().parent.parent

WORKLOADS = 8
LAYERS = 58


def build(root: Path, rows: int, files: int, seed: int = 0) -> None:
    """Write `rows` store rows as `files` Parquet files under `root`."""
    rng = np.random.default_rng(seed)
    candidates = max(rows // WORKLOADS, 1)
    cand = np.repeat(np.arange(candidates), WORKLOADS)[:rows]
    work = np.tile(np.arange(WORKLOADS), candidates)[:rows]
    # one row in 20 is a re-evaluation of an earlier (candidate, workload): newest wins
    again = rng.random(rows) < 0.05
    cand[again] = rng.integers(0, candidates, again.sum())
    hashes = np.array([f"{i:016x}" for i in range(candidates)], dtype=object)
    parent = np.where(np.arange(candidates) > 0, rng.integers(0, np.maximum(np.arange(candidates), 1)), -1)
    status = np.where(rng.random(rows) < 0.05, "error", "ok").astype(object)
    ok = status == "ok"
    skill = rng.normal(0.8, 0.05, candidates)
    bal = np.clip(skill[cand] + rng.normal(0, 0.03, rows) - 0.02 * work, 0.3, 1.0)
    runtime = np.exp(rng.normal(np.log(0.02), 0.8, candidates))[cand] * rng.lognormal(0, 0.05, rows)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    created = [base + timedelta(seconds=int(s)) for s in rng.integers(0, 10**7, rows)]
    layer_values = (1 / bal)[:, None] + rng.normal(0, 0.05, (rows, LAYERS))
    nan = np.where(ok, 1.0, np.nan)
    columns = {
        "run_id": np.array([f"run{i % 50}" for i in range(rows)], dtype=object),
        "suite": np.full(rows, "default", dtype=object),
        "candidate_name": np.array([f"cand{i}" for i in cand], dtype=object),
        "candidate_hash": hashes[cand],
        "parent_hash": np.where(parent[cand] >= 0, hashes[np.maximum(parent[cand], 0)], ""),
        "diff_name": np.where(parent[cand] >= 0, np.array([f"diff{i}.txt" for i in cand], dtype=object), ""),
        "workload_id": np.array([f"w{w}@{w:08x}" for w in work], dtype=object),
        "workload_name": np.array([f"w{w}" for w in work], dtype=object),
        "device": np.full(rows, "cpu", dtype=object),
        "settings_hash": np.full(rows, "abc123", dtype=object),
        "status": status,
        "error": np.where(ok, "", "builtins.ValueError: the candidate raised"),
        "balancedness": bal * nan, "replica_balancedness": (bal - 0.1) * nan, "node_balancedness": nan,
        "fit_balancedness": bal * nan, "group_spread": nan, "runtime_s": runtime * nan,
        "combined_score": ((bal - 0.1) + 0.02 / runtime) / 2 * nan,
        "created_at": created,
        "stderr_tail": np.full(rows, "a warning the candidate printed\n" * 4, dtype=object),
    }
    arrays = []
    for field in SCHEMA:
        if field.name == "gpu_max_over_mean_per_layer":
            offsets = np.arange(rows + 1, dtype=np.int32) * LAYERS
            lists = pa.ListArray.from_arrays(offsets, pa.array(layer_values.ravel()))
            arrays.append(lists)
        elif field.name in columns:
            arrays.append(pa.array(columns[field.name], type=field.type))
        elif pa.types.is_floating(field.type):
            arrays.append(pa.array(np.full(rows, np.nan)))
        elif pa.types.is_integer(field.type):
            arrays.append(pa.array(np.zeros(rows, dtype=np.int64)))
        elif pa.types.is_boolean(field.type):
            arrays.append(pa.array(np.zeros(rows, dtype=bool)))
        else:
            arrays.append(pa.array([""] * rows, type=field.type))
    table = pa.Table.from_arrays(arrays, schema=SCHEMA)
    root.mkdir(parents=True, exist_ok=True)
    step = -(-rows // files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step), root / f"20260101T00000{i}-bench-{i:08x}.parquet")


def timed(label: str, fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    print(f"{label:<58} {best:7.3f} s (best of {repeat})")
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--small-files", type=int, default=2000, help="one-row files for the compaction figure")
    parser.add_argument("--keep", help="build the store here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep) if args.keep else Path(scratch) / "store"
        started = time.perf_counter()
        build(root, args.rows, args.files)
        size = sum(p.stat().st_size for p in root.glob("*.parquet")) / 2**20
        built_s = time.perf_counter() - started
        print(f"built {args.rows:,} rows in {args.files} files ({size:.1f} MiB) in {built_s:.1f} s")
        store = ResultStore(root)
        board = to_standings(leaderboard(store.read(COLUMNS)))
        print(f"{len(board):,} candidates ranked; top: {board[0].candidate_name} {board[0].balancedness:.4f}")
        timed("read the leaderboard's columns", lambda: store.read(COLUMNS))
        timed("read + rank as Standing objects + terminal table, in process",
              lambda: format_table(to_standings(leaderboard(store.read(COLUMNS)))))
        in_process = timed("read + rank as a table + terminal table (the CLI's path)",
                           lambda: format_table(leaderboard(store.read(COLUMNS))))
        cli = [sys.executable, "-m", "harness", "leaderboard", "--results", str(root)]
        command = timed("`eplb-harness leaderboard` (process start included)",
                        lambda: subprocess.run(cli, check=True, capture_output=True, cwd=ROOT))
        timed("`eplb-harness leaderboard --format html` (process start included)",
              lambda: subprocess.run([*cli, "--format", "html", "--out", str(Path(scratch) / "r.html")],
                                     check=True, capture_output=True, cwd=ROOT), repeat=1)
        if args.small_files:
            small = ResultStore(Path(scratch) / "small")
            small.root.mkdir()
            one_row = store.read()
            for i in range(args.small_files):
                pq.write_table(one_row.slice(i, 1), small.root / f"20260101T000000-r-{i:08x}.parquet")
            timed(f"read the leaderboard's columns from {args.small_files:,} one-row files",
                  lambda: small.read(COLUMNS), repeat=1)
            started = time.perf_counter()
            small.compact()
            print(f"{'compact them into one file':<58} {time.perf_counter() - started:7.3f} s")
            timed("read the same after compaction", lambda: small.read(COLUMNS))
        verdict = "under" if max(in_process, command) < 2.0 else "OVER"
        print(f"leaderboard over {args.rows:,} rows: {in_process:.3f} s in process, {command:.3f} s as a command: "
              f"{verdict} the 2 s budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
