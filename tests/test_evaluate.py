"""The evaluation loop as a user meets it: deadlines that follow the reference, the
reference's rows stored once, and the settings' own deadline rule."""

import math
from pathlib import Path

import numpy as np
import pytest
from helpers import README_TOPOLOGY, README_TOPOLOGY_ARGS, README_WEIGHT, ROUND_ROBIN, cli

from harness.candidates import REFERENCE_PATH, load_candidate
from harness.settings import DEADLINE_FACTOR, DEADLINE_START_S, TIMEOUT_CAP_S, Settings, deadline
from harness.store import ResultStore

HANG_IN_CALL = '''import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    while True:
        pass
'''


def test_the_deadline_rule():
    given = deadline(Settings(timeout_s=7.0), reference_wall_s=0.5)
    assert (given.seconds, given.rule) == (7.0, "--timeout 7 s")
    derived = deadline(Settings(), reference_wall_s=0.5)
    assert derived.seconds == pytest.approx(DEADLINE_START_S + DEADLINE_FACTOR * 0.5)
    assert "the reference's 0.50 s" in derived.rule
    assert deadline(Settings(), reference_wall_s=1e6).seconds == TIMEOUT_CAP_S
    assert deadline(Settings(), reference_wall_s=math.nan).seconds == TIMEOUT_CAP_S


def test_a_hang_without_timeout_is_cut_off_by_the_reference_deadline(tmp_path: Path):
    np.save(tmp_path / "tiny.npy", README_WEIGHT)
    (tmp_path / "hang.py").write_text(HANG_IN_CALL)
    done = cli("run", str(tmp_path / "hang.py"), "--workload", str(tmp_path / "tiny.npy"), *README_TOPOLOGY_ARGS,
               "--results", str(tmp_path / "store"))
    assert done.returncode == 0, done.stderr
    rows = {row["candidate_name"]: row for row in ResultStore(tmp_path / "store").read().to_pylist()}
    hang, reference = rows["hang"], rows["deepseek_eplb"]
    assert hang["status"] == "timeout"
    assert "reference" in hang["deadline_rule"]
    assert hang["deadline_s"] == pytest.approx(DEADLINE_START_S + DEADLINE_FACTOR * reference["eval_wall_s"])
    # Killed at its deadline, not at the 120 s cap.
    assert hang["deadline_s"] < 15 and hang["eval_wall_s"] < hang["deadline_s"] + 5


def test_the_reference_row_is_stored_once_per_workload_and_settings(tmp_path: Path):
    for index in range(2):
        np.save(tmp_path / f"w{index}.npy", np.stack([README_WEIGHT, np.roll(README_WEIGHT, index + 1, axis=1)]))
    (tmp_path / "first.py").write_text(ROUND_ROBIN)
    (tmp_path / "second.py").write_text(ROUND_ROBIN + "\n# another program\n")
    workloads = [arg for index in range(2) for arg in ("--workload", str(tmp_path / f"w{index}.npy"))]
    common = [*workloads, *README_TOPOLOGY_ARGS, "--timeout", "60", "--results", str(tmp_path / "store")]
    for program in ("first.py", "second.py", "second.py"):
        done = cli("run", str(tmp_path / program), *common)
        assert done.returncode == 0, done.stderr
    assert "0 evaluated, 2 reused" in done.stdout
    rows = ResultStore(tmp_path / "store").read().to_pylist()
    reference_hash = load_candidate(REFERENCE_PATH).hash
    assert sorted(r["workload_name"] for r in rows if r["candidate_hash"] == reference_hash) == ["w0", "w1"]
    # Each candidate row carries its own paired timing of the reference.
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["speedup_ci95_low"] <= row["speedup_vs_reference"] <= row["speedup_ci95_high"]
        assert row["reference_runtime_s"] > 0 and row["num_gpus"] == README_TOPOLOGY["num_gpus"]
