"""The store loses nothing: a run killed midway keeps every finished row and a rerun does
only the rest; runs writing to one store at once lose no row.

These start real `eplb-harness run` processes on small valid candidates written here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from helpers import README_TOPOLOGY_ARGS, README_WEIGHT, ROUND_ROBIN, cli_command, live_processes_with

from harness.store import ResultStore

LAYERS = README_WEIGHT
TOPOLOGY = README_TOPOLOGY_ARGS


def write_candidates(folder: Path, indices: range) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in indices:
        path = folder / f"round_robin_{index}.py"
        path.write_text(f"{ROUND_ROBIN}\n# variant {index}\n")
        paths.append(path)
    return paths


def write_workloads(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = folder / f"tiny{index}.npy"
        np.save(path, np.stack([LAYERS, np.roll(LAYERS, index + 1, axis=1)]))
        paths.append(path)
    return paths


def run_command(candidates: list[Path], workloads: list[Path], store: Path, jobs: int) -> list[str]:
    options = [option for path in workloads for option in ("--workload", str(path))]
    return [*cli_command(), "run", *map(str, candidates), *options, *TOPOLOGY, "--timeout", "120",
            "--jobs", str(jobs), "--results", str(store)]


def candidate_keys(store: Path, prefix: str = "round_robin_") -> list[tuple[str, str]]:
    """(candidate_name, workload_id) of every stored row of our candidates, duplicates kept."""
    table = ResultStore(store).read(["candidate_name", "workload_id", "status"])
    rows = table.to_pylist()
    assert all(row["status"] == "ok" for row in rows), rows
    return [(row["candidate_name"], row["workload_id"]) for row in rows if row["candidate_name"].startswith(prefix)]


def test_a_killed_run_keeps_its_rows_and_a_rerun_does_only_the_rest(tmp_path):
    candidates = write_candidates(tmp_path / "candidates", range(3))
    workloads = write_workloads(tmp_path, 2)
    total = len(candidates) * len(workloads)
    store = tmp_path / "store"
    command = run_command(candidates, workloads, store, jobs=2)
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # marks the run's workers and their folders
    run = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 300
    try:
        while len(seen) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = candidate_keys(store)  # read while the run writes: only whole files count
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the CLI and anything in its group, at once
        run.wait()
    assert 2 <= len(seen) < total, f"the kill did not land midway: {len(seen)} of {total} stored"

    # Every file is whole and readable; every row seen before the kill is still there.
    for path in store.glob("*.parquet"):
        pq.read_table(path)
    kept = candidate_keys(store)
    assert set(seen) <= set(kept) and len(kept) == len(set(kept)) < total
    # The workers in flight die with their harness (no orphan runs on, hung or not).
    deadline = time.monotonic() + 10
    while live_processes_with(f"TMPDIR={tmp_path}".encode()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_processes_with(f"TMPDIR={tmp_path}".encode()) == []

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    done = re.search(r"run \S+: (\d+) evaluated, (\d+) reused", rerun.stdout)
    assert done, rerun.stdout
    assert (int(done[1]), int(done[2])) == (total - len(kept), len(kept)), rerun.stdout
    final = candidate_keys(store)
    assert len(final) == len(set(final)) == total and set(kept) <= set(final)


def test_concurrent_runs_into_one_store_lose_no_row(tmp_path):
    processes = 4
    candidates = write_candidates(tmp_path / "candidates", range(processes))
    (workload,) = write_workloads(tmp_path, 1)
    store = tmp_path / "store"
    runs = [subprocess.Popen(run_command([candidate], [workload], store, jobs=1), cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for candidate in candidates]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-3000:]
        assert re.search(r": 1 evaluated, 0 reused", stdout), stdout
    for path in store.glob("*.parquet"):
        pq.read_table(path)
    assert not list(store.glob(".*")), "a temporary file was left behind"
    keys = candidate_keys(store)
    assert sorted(keys) == sorted(set(keys)) and {name for name, _ in keys} == {p.stem for p in candidates}
    assert len(keys) == processes
