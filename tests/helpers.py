"""What several test modules share: the DeepSeek README example, store rows built
directly (no candidate runs), the command line as a user runs it, and a look at live
processes."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from harness.results import EvalResult
from harness.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent

# The example of DeepSeek's EPLB README: 2 layers x 12 experts on 16 replicas / 4 groups /
# 2 nodes / 8 GPUs, and the phy2log its hierarchical policy gives.
README_WEIGHT = np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                          [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]], dtype=float)
README_PHY2LOG = np.array([[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                           [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]])
README_TOPOLOGY = {"num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8}
# The same topology as command-line options.
README_TOPOLOGY_ARGS = [arg for key, value in README_TOPOLOGY.items()
                        for arg in (f"--{key.replace('_', '-')}", str(value))]


def cli_command() -> list[str]:
    """`eplb-harness` as installed beside this interpreter, else `python -m harness`."""
    script = Path(sys.executable).parent / "eplb-harness"
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness"]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the command line to completion, as a user would, capturing its output."""
    return subprocess.run([*cli_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def live_processes_with(marker: bytes) -> list[int]:
    """Pids of processes (zombies excluded) whose environment contains `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.append(int(name))
    return found


# Store rows for the report, store, query and HTML tests.
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_BLANK = {"str": "", "int": 0, "float": float("nan"), "bool": False}


def row(candidate: str = "a", workload: str = "w0", bal: float = 0.9, runtime: float = 0.01, *, status: str = "ok",
        minutes: int = 0, parent: str = "", diff: str = "", **overrides) -> EvalResult:
    """A stored row with every field filled (whatever fields the schema grows)."""
    values = {f.name: _BLANK.get(f.type, T0) for f in dataclasses.fields(EvalResult)
              if f.default is dataclasses.MISSING}
    ok = status == "ok"
    values.update(
        run_id="r1", suite="s1", candidate_name=candidate, candidate_hash=f"h{candidate}", parent_hash=parent,
        diff_name=diff, workload_id=f"{workload}@0123", workload_name=workload, workload_kind="synthetic",
        num_layers=3, num_logical_experts=8, num_replicas=8, num_groups=2, num_nodes=1, num_gpus=4,
        device="cpu", settings_hash="s", created_at=T0 + timedelta(minutes=minutes), status=status,
        error="" if ok else "ValueError: boom",
        balancedness=bal if ok else math.nan, replica_balancedness=bal - 0.1 if ok else math.nan,
        node_balancedness=1.0 if ok else math.nan, group_spread=1.0 if ok else math.nan,
        fit_balancedness=bal + 0.01 if ok else math.nan, moved_replicas_per_plan=2.0 if ok else math.nan,
        runtime_s=runtime if ok else math.nan,
    )
    values.update(overrides)
    values = {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(EvalResult)}}
    if ok and "gpu_max_over_mean_per_layer" not in overrides:
        values["gpu_max_over_mean_per_layer"] = (1 / bal, 1 / bal + 0.05, 1 / bal - 0.02)
    return EvalResult(**values)


def store_of(tmp_path: Path, rows: list[EvalResult], name: str = "store") -> ResultStore:
    store = ResultStore(tmp_path / name)
    store.append(rows)
    return store


def suite_rows() -> list[EvalResult]:
    """A reference, a faster and better parent, its child by a diff, and a broken child."""
    rows = []
    for i, w in enumerate(("w0", "w1", "w2")):
        rows.append(row("deepseek_eplb", w, 0.80 + 0.01 * i, 0.020))
        rows.append(row("par", w, 0.85 + 0.01 * i, 0.010))
        rows.append(row("kid", w, 0.90 + 0.02 * i, 0.040, parent="hpar", diff="kid.diff"))
        rows.append(row("bad", w, status="error" if i == 0 else "ok", parent="hpar", diff="bad.diff"))
    return rows


