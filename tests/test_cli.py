"""The command line as a user meets it: the main job, evaluate's JSON, one-line errors."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import README_TOPOLOGY_ARGS, README_WEIGHT, cli

from harness.candidates import CANDIDATES_DIR, discover
from harness.report.standings import STANDING_FIELDS
from harness.store import SCHEMA


@pytest.fixture
def example_file(tmp_path: Path) -> Path:
    path = tmp_path / "example.npy"
    np.save(path, README_WEIGHT)
    return path


def test_evaluate_json_pins_the_readme_example(example_file, tmp_path):
    done = cli("evaluate", "candidates/deepseek_eplb.py", "--workload", str(example_file), *README_TOPOLOGY_ARGS,
               "--json", "--results", str(tmp_path / "store"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    keys = {"status", "error", "balancedness", "replica_balancedness", "node_balancedness", "runtime_s",
            "combined_score"}
    assert keys <= report.keys()
    assert report["status"] == "ok"
    assert report["balancedness"] == pytest.approx(0.8156, abs=5e-5)
    assert report["combined_score"] == pytest.approx((report["replica_balancedness"] + 0.02 / report["runtime_s"]) / 2)
    (workload,) = report["workloads"]
    assert keys <= workload.keys() and workload["workload_id"].startswith("example@")
    assert len(pq.read_table(next((tmp_path / "store").glob("*.parquet")))) == 1


def test_screen_timing_is_chosen_by_name_and_stored_apart(example_file, tmp_path):
    store = tmp_path / "store"
    for timing in ("screen", "precise"):
        done = cli("evaluate", "candidates/deepseek_eplb.py", "--workload", str(example_file), *README_TOPOLOGY_ARGS,
                   "--timing", timing, "--results", str(store))
        assert done.returncode == 0, done.stderr
    methods = pq.read_table(store, columns=["settings_hash", "timing_method"]).to_pylist()
    assert len({row["settings_hash"] for row in methods}) == 2
    assert {"<= 0.05 s" in row["timing_method"] for row in methods} == {True, False}
    wrong = cli("evaluate", "candidates/deepseek_eplb.py", "--workload", str(example_file), "--timing", "fast")
    assert wrong.returncode == 2 and "invalid choice: 'fast'" in wrong.stderr


def test_run_scores_the_shipped_candidates_and_stores_them(tmp_path):
    weights = np.random.default_rng(0).gamma(1.0, size=(2, 4, 64)) * 100
    np.save(tmp_path / "small.npy", weights)
    store = tmp_path / "store"
    done = cli("run", "--workload", str(tmp_path / "small.npy"), "--num-replicas", "80", "--num-groups", "4",
               "--num-nodes", "2", "--num-gpus", "8", "--results", str(store))
    assert done.returncode == 0, done.stderr
    shipped = sorted(candidate.name for candidate in discover([str(CANDIDATES_DIR)]))
    assert {"deepseek_eplb", "seed_parent", "peak_aware_tail_and_two_step_fixup", "champion_local",
            "champion_global"} <= set(shipped)
    for name in shipped:
        assert any(line.split()[1:3] == [name, "ok:1"] for line in done.stdout.splitlines()), done.stdout
    table = pq.read_table(store)
    assert sorted(table["candidate_name"].to_pylist()) == shipped
    assert set(table["status"].to_pylist()) == {"ok"}
    rows = {row["candidate_name"]: row for row in table.to_pylist()}
    child, parent = rows["peak_aware_tail_and_two_step_fixup"], rows["seed_parent"]
    assert child["parent_hash"] == parent["candidate_hash"]
    assert child["diff_description"].startswith("This edit improves the expert replication stage")
    rerun = cli("run", "--workload", str(tmp_path / "small.npy"), "--num-replicas", "80", "--num-groups", "4",
                "--num-nodes", "2", "--num-gpus", "8", "--results", str(store))
    assert f"0 evaluated, {len(shipped)} reused" in rerun.stdout


@pytest.mark.parametrize("args, message", [
    (["evaluate", "candidates/missing.py", "--json"], "candidate candidates/missing.py does not exist"),
    (["evaluate", "candidates/deepseek_eplb.py", "--workload", "{bad_rank}", *README_TOPOLOGY_ARGS],
     "expected [windows, layers, experts]"),
    (["run", "--num-replicas", "288", "--num-gpus", "7"], "288 replicas do not divide evenly over 7 GPUs"),
    (["run", "--suite", "no-such-suite"], "unknown suite 'no-such-suite'"),
    (["evaluate", "candidates/deepseek_eplb.py", "--workload", "{example}"], "give --num-replicas"),
])
def test_bad_input_gets_one_line_and_exit_2(args, message, tmp_path, example_file):
    np.save(tmp_path / "bad_rank.npy", np.ones((2, 2, 2, 2)))
    args = [a.format(bad_rank=tmp_path / "bad_rank.npy", example=example_file) for a in args]
    done = cli(*args, "--results", str(tmp_path / "store"))
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "store").exists()


def test_evaluate_json_holds_every_figure_per_workload_and_aggregated(example_file, tmp_path):
    np.save(tmp_path / "two_windows.npy", np.stack([README_WEIGHT, README_WEIGHT[:, ::-1]]))
    done = cli("evaluate", "candidates/seed_parent.py", "--workload", str(example_file), "--workload",
               str(tmp_path / "two_windows.npy"), *README_TOPOLOGY_ARGS, "--json", "--results", str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    report = json.loads(done.stdout, parse_constant=no_constants)  # NaN went out as null
    first, second = report["workloads"]
    assert [first["workload_name"], second["workload_name"]] == ["example", "two_windows"]
    assert set(first) == set(SCHEMA.names) - {"stdout_tail", "stderr_tail", "gpu_max_over_mean_per_layer"}
    assert first["moved_replicas_per_plan"] is None and second["moved_replicas_per_plan"] >= 0  # one window: none
    assert first["runtime_iqr_s"] >= 0 and first["runtime_samples"] >= 1 and first["created_at"][:2] == "20"
    assert set(report) == (set(STANDING_FIELDS) - {"rank"}) | {"status", "error"}
    assert report["ok"] == 2 and report["status"] == "ok" and report["statuses"] == "ok:2"
    assert report["balancedness"] == pytest.approx((first["balancedness"] + second["balancedness"]) / 2)
    assert report["fit_balancedness"] == pytest.approx((first["fit_balancedness"] + second["fit_balancedness"]) / 2)
    assert report["speedup_vs_reference"] > 0 and report["worst_balancedness"] <= report["balancedness"]
