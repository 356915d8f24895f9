"""The OpenEvolve and ShinkaEvolve evaluators, driven the way each framework drives them:
OpenEvolve through its own `Evaluator` class (when the package is installed), ShinkaEvolve
through the command line it runs. Each uses a one-workload suite and a short timing
config, so an evaluation costs one worker start."""

import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_SUITE

from harness.candidates import load_candidate, source_hash
from harness.cli import main
from harness.errors import HarnessError
from harness.integrations import EVALUATION_FILES
from harness.integrations.frameworks import (
    METRIC_KEYS,
    FrameworkIds,
    IntegrationConfig,
    evaluate_program,
    resolve_config,
    search_run_id,
)
from harness.integrations.shinka_evaluate import shinka_ids
from harness.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
SEED_DIFF = ROOT / "candidates" / "diffs" / "peak_aware_tail_and_two_step_fixup.diff"
HANG_BUDGET_S = 3.0
SLACK_S = 6.0  # what the caller may wait past the budget: the grace plus clean-up

CONFIG = """\
suite = "tiny.json"
stage1_suite = "tiny.json"
results = "store"
timeout = 120
[timing]
warmup = 0
min_samples = 1
max_samples = 3
min_time_s = 0.0
"""
INVALID = """\
import torch

def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    layers, experts = weight.shape
    phy2log = torch.arange(num_replicas).remainder(experts).repeat(layers, 1)
    logcnt = torch.ones(layers, experts, dtype=torch.int64)  # lies: some experts have two replicas
    log2phy = torch.full((layers, experts, 2), -1, dtype=torch.int64)
    log2phy[:, :, 0] = torch.arange(experts)
    return phy2log, log2phy, logcnt
"""
HANG = "import time\n\nwhile True:\n    time.sleep(0.1)\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder with the config (tiny suite, store beside it), the seed child, an invalid
    and a hanging program."""
    root = tmp_path_factory.mktemp("integrations")
    (root / "tiny.json").write_text(json.dumps(TINY_SUITE))
    (root / "eplb.toml").write_text(CONFIG)
    seed = load_candidate(SEED_DIFF)
    assert not seed.patch_error
    (root / "seed.py").write_text(seed.source)
    (root / "parent.py").write_text((ROOT / "candidates" / "seed_parent.py").read_text())
    (root / "invalid.py").write_text(INVALID)
    (root / "hang.py").write_text(HANG)
    return root


@pytest.fixture
def configured(workspace, monkeypatch) -> Path:
    for name in ("SCORE", "SUITE", "STAGE1_SUITE", "RESULTS", "BUDGET", "TIMEOUT", "DEVICE", "THREADS", "MEMORY_MB",
                 "RUN_ID", "PROGRAM_ID", "PARENT_ID", "TIMING", "STAGE1_TIMING"):
        monkeypatch.delenv(f"EPLB_HARNESS_{name}", raising=False)
    monkeypatch.setenv("EPLB_HARNESS_CONFIG", str(workspace / "eplb.toml"))
    return workspace


def stored(workspace: Path) -> list[dict]:
    return ResultStore(workspace / "store").read(
        ["run_id", "candidate_name", "candidate_hash", "parent_hash", "suite", "status", "error"]).to_pylist()


# ---------------------------------------------------------------- configuration, no worker


def test_config_precedence_file_then_env_then_keywords(configured, monkeypatch):
    cfg = resolve_config()
    assert cfg.suite == str(configured / "tiny.json")  # relative to the file
    assert cfg.results == str(configured / "store")
    assert cfg.score == "harness" and cfg.timeout == 120
    monkeypatch.setenv("EPLB_HARNESS_SCORE", "balancedness")
    monkeypatch.setenv("EPLB_HARNESS_TIMEOUT", "30")
    cfg = resolve_config()
    assert (cfg.score, cfg.timeout) == ("balancedness", 30.0)
    assert resolve_config(score="adrs_leaderboard").score == "adrs_leaderboard"
    monkeypatch.delenv("EPLB_HARNESS_CONFIG")
    defaults = resolve_config()
    assert (defaults.suite, defaults.stage1_suite, defaults.results) == ("default", "quick", "results")
    # With the defaults, rows share the CLI's settings hash.
    from harness.settings import Settings
    monkeypatch.delenv("EPLB_HARNESS_TIMEOUT")
    assert resolve_config().settings().hash == Settings().hash


def test_timing_is_a_named_preset_or_a_table(configured, monkeypatch):
    from harness.settings import TIMING_PRESETS, Settings, TimingConfig

    from_file = resolve_config().settings().timing  # the file's table
    assert from_file != Settings().timing and from_file.min_time_s == 0.0
    monkeypatch.setenv("EPLB_HARNESS_TIMING", "screen")
    assert resolve_config().settings().timing == TIMING_PRESETS["screen"]
    assert resolve_config(timing={"min_samples": 3}).settings().timing == TimingConfig(min_samples=3)
    monkeypatch.setenv("EPLB_HARNESS_TIMING", "sloppy")
    with pytest.raises(HarnessError, match="timing 'sloppy' in EPLB_HARNESS_TIMING is not one of precise, screen"):
        resolve_config()
    monkeypatch.delenv("EPLB_HARNESS_TIMING")
    with pytest.raises(HarnessError, match="timing in the caller's arguments must be one of precise, screen"):
        resolve_config(timing={"rounds": 3})
    # The cascade's first stage has a timing of its own, a name.
    assert resolve_config().settings("quick").timing == TIMING_PRESETS["screen"]
    monkeypatch.setenv("EPLB_HARNESS_STAGE1_TIMING", "precise")
    assert resolve_config().settings("quick").timing == TIMING_PRESETS["precise"]
    with pytest.raises(HarnessError, match="stage1_timing 'fast' in the caller's arguments is not one of"):
        resolve_config(stage1_timing="fast")
    with pytest.raises(HarnessError, match="stage1_timing {'min_samples': 3} in the caller's arguments is not one"):
        resolve_config(stage1_timing={"min_samples": 3})


def test_config_mistakes_are_named(configured, monkeypatch, tmp_path):
    with pytest.raises(HarnessError, match="unknown score"):
        resolve_config(score="speed")
    monkeypatch.setenv("EPLB_HARNESS_TIMEOUT", "soon")
    with pytest.raises(HarnessError, match="EPLB_HARNESS_TIMEOUT"):
        resolve_config()
    bad = tmp_path / "bad.toml"
    bad.write_text('sweet = "default"\n')
    with pytest.raises(HarnessError, match="unknown integration setting 'sweet'"):
        resolve_config(bad)


def test_a_failure_carries_every_metric_key_as_zero(configured):
    evaluation = evaluate_program(configured / "missing.py", framework="openevolve", program_id="p9")
    assert evaluation.status == "error" and "cannot be read" in evaluation.reason
    assert evaluation.metrics == dict.fromkeys(METRIC_KEYS, 0.0)
    assert {"status", "reason", "stderr", "feedback"} <= evaluation.artifacts().keys()
    (row,) = [r for r in stored(configured) if r["candidate_name"] == "p9"]
    assert row["status"] == "error" and row["run_id"] == "openevolve"


def test_cli_prints_the_evaluation_files(capsys):
    assert main(["integrations", "openevolve"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == EVALUATION_FILES["openevolve"] and path.is_file()
    assert main(["integrations"]) == 0
    listing = capsys.readouterr().out
    assert str(EVALUATION_FILES["shinka"]) in listing and str(EVALUATION_FILES["openevolve"]) in listing


# ---------------------------------------------------------------- OpenEvolve, through its Evaluator


def openevolve_evaluator(cascade: bool, timeout_s: int):
    pytest.importorskip("openevolve")
    from openevolve.config import EvaluatorConfig
    from openevolve.evaluator import Evaluator

    config = EvaluatorConfig(timeout=timeout_s, max_retries=0, cascade_evaluation=cascade,
                             cascade_thresholds=[0.001], parallel_evaluations=1)
    return Evaluator(config, str(EVALUATION_FILES["openevolve"]))


def test_openevolve_scores_the_seed_child_through_the_cascade(configured):
    evaluator = openevolve_evaluator(cascade=True, timeout_s=300)
    source = (configured / "seed.py").read_text()
    metrics = asyncio.run(evaluator.evaluate_program(source, "seed-child"))
    assert set(METRIC_KEYS) <= metrics.keys()
    assert metrics["valid"] == 1.0
    assert 0.5 < metrics["balancedness"] <= 1.0
    # The default score: balance, and the speedup timed in pairs beside the reference.
    assert metrics["combined_score"] == pytest.approx(metrics["score"])
    assert metrics["score"] == pytest.approx(
        metrics["balancedness"] + 0.01 * max(-4, min(4, math.log2(metrics["speedup_vs_reference"]))))
    assert metrics["adrs_combined_score"] == pytest.approx(
        (metrics["replica_balancedness"] + 0.02 / metrics["runtime_s"]) / 2)
    artifacts = evaluator.get_pending_artifacts("seed-child")
    assert "Valid on all 1 workloads" in artifacts["feedback"] and "status" not in artifacts
    seed_hash = load_candidate(configured / "seed.py").hash
    rows = [r for r in stored(configured) if r["candidate_hash"] == seed_hash]
    assert len(rows) == 2  # stage 1 and stage 2, one workload each
    assert {(r["run_id"], r["status"]) for r in rows} == {("openevolve", "ok")}


def test_openevolve_gets_our_timeout_result_for_a_hang(configured, monkeypatch):
    monkeypatch.setenv("EPLB_HARNESS_BUDGET", str(HANG_BUDGET_S))
    # OpenEvolve's own timeout is far off: the result must be ours, on time.
    evaluator = openevolve_evaluator(cascade=False, timeout_s=120)
    started = time.monotonic()
    metrics = asyncio.run(evaluator.evaluate_program((configured / "hang.py").read_text(), "hang"))
    elapsed = time.monotonic() - started
    assert elapsed < HANG_BUDGET_S + SLACK_S, elapsed
    assert metrics == dict.fromkeys(METRIC_KEYS, 0.0)  # ours, not OpenEvolve's {"error", "timeout"}
    artifacts = evaluator.get_pending_artifacts("hang")
    assert artifacts["status"] == "timeout"
    assert f"{HANG_BUDGET_S:g} s budget" in artifacts["reason"]
    assert "stderr" in artifacts and "TIMEOUT" in artifacts["feedback"]


def test_openevolve_file_returns_a_plain_dict_without_openevolve(configured, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("oe_evaluation", EVALUATION_FILES["openevolve"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("openevolve", "openevolve.evaluation_result"):
        monkeypatch.setitem(sys.modules, name, None)  # the import fails
    result = module.evaluate_stage1(str(configured / "missing.py"))
    assert result == dict.fromkeys(METRIC_KEYS, 0.0)


# ---------------------------------------------------------------- ShinkaEvolve, through its command line


def shinka(workspace: Path, program: str, results_dir: Path, *extra: str) -> subprocess.Popen:
    """Start the script the way ShinkaEvolve does (several may run at once)."""
    command = [sys.executable, str(EVALUATION_FILES["shinka"]), "--program_path", str(workspace / program),
               "--results_dir", str(results_dir), *extra]
    return subprocess.Popen(command, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def answered(process: subprocess.Popen) -> tuple[int, str]:
    """The exit status and stdout, for what the script prints."""
    stdout, _ = process.communicate(timeout=300)
    return process.returncode, stdout


def read_back(results_dir: Path) -> tuple[dict, dict]:
    return (json.loads((results_dir / "metrics.json").read_text()),
            json.loads((results_dir / "correct.json").read_text()))


def test_shinka_writes_both_files_for_a_good_and_a_bad_candidate(configured):
    good_dir, bad_dir = configured / "gen_3" / "results", configured / "gen_4" / "results"
    good = shinka(configured, "seed.py", good_dir, "--program_id", "gen_3", "--parent_id",
                  str(configured / "parent.py"))
    bad = shinka(configured, "invalid.py", bad_dir, "--score", "balancedness")
    returncode, stderr = finished(good)
    assert returncode == 0, stderr
    metrics, correct = read_back(good_dir)
    assert correct == {"correct": True, "error": None}
    assert metrics["combined_score"] > 0
    assert set(METRIC_KEYS) - {"combined_score"} <= metrics["public"].keys()
    assert metrics["public"]["workloads"]["tiny-v2lite-zipf"]["status"] == "ok"
    assert "Weakest workload: tiny-v2lite-zipf" in metrics["text_feedback"]
    assert metrics["private"]["stored_in"]

    returncode, stderr = finished(bad)
    assert returncode == 0, stderr
    metrics, correct = read_back(bad_dir)
    assert correct["correct"] is False
    assert "logcnt disagrees with phy2log" in correct["error"]
    assert metrics["combined_score"] == 0.0
    assert all(metrics["public"][key] == 0.0 for key in METRIC_KEYS if key != "combined_score")
    assert metrics["text_feedback"].startswith("INVALID placement on workload tiny-v2lite-zipf")
    assert metrics["private"]["score"] == "balancedness"

    rows = {r["candidate_name"]: r for r in stored(configured) if r["run_id"] == "shinka"}
    assert rows["gen_3"]["status"] == "ok"
    assert rows["gen_3"]["parent_hash"] == load_candidate(configured / "parent.py").hash
    assert rows["gen_3"]["candidate_hash"] == load_candidate(configured / "seed.py").hash
    assert rows["shinka-" + load_candidate(configured / "invalid.py").hash[:8]]["status"] == "invalid"


def test_shinka_bad_configuration_still_answers(configured):
    results_dir = configured / "gen_5" / "results"
    assert finished(shinka(configured, "seed.py", results_dir, "--suite", "no-such-suite"))[0] == 2
    metrics, correct = read_back(results_dir)
    assert correct["correct"] is False and "no-such-suite" in correct["error"]
    assert metrics["combined_score"] == 0.0 and not math.isnan(metrics["public"]["balancedness"])


@pytest.mark.parametrize("arguments", [["--score", "speed"], ["--seed", "3"]], ids=["unknown score", "extra argument"])
def test_shinka_bad_arguments_still_answer(configured, arguments):
    results_dir = configured / "gen_6" / "results"
    returncode, stdout = answered(shinka(configured, "seed.py", results_dir, *arguments))
    assert returncode == 2
    metrics, correct = read_back(results_dir)
    assert correct["correct"] is False and arguments[0] in correct["error"]
    assert metrics["text_feedback"] == correct["error"] and metrics["combined_score"] == 0.0
    assert arguments[0] in stdout  # ShinkaEvolve shows a failed program's stdout when it asks for a fix


def test_shinka_prints_its_feedback(configured):
    returncode, stdout = answered(shinka(configured, "invalid.py", configured / "gen_7" / "results"))
    assert returncode == 0
    assert "INVALID placement on workload tiny-v2lite-zipf" in stdout and "logcnt disagrees" in stdout


def test_shinka_ids_follow_its_results_folder(tmp_path):
    search = tmp_path / "first"
    initial = "def f():\n    return 1  \n"  # trailing spaces and a final newline, as a user writes
    child = "def f():\n    return 2"  # ShinkaEvolve's diff patcher strips both
    for generation, main_source, original in ((0, initial, None), (1, child, initial.replace("  \n", "")),
                                              (2, child + "\n# again", child)):
        folder = search / f"gen_{generation}"
        folder.mkdir(parents=True)
        (folder / "main.py").write_text(main_source)
        if original is not None:
            (folder / "original.py").write_text(original)
    run_id = search_run_id("shinka", search)
    assert "/" not in run_id and run_id.startswith("shinka-first-")
    assert shinka_ids(search / "gen_0" / "main.py") == FrameworkIds(run_id, "first/gen_0", "")
    # gen_1's original.py is gen_0's source stripped: the parent is gen_0 as stored.
    assert shinka_ids(search / "gen_1" / "main.py") == FrameworkIds(run_id, "first/gen_1", source_hash(initial))
    assert shinka_ids(search / "gen_2" / "main.py").parent_hash == source_hash(child)
    assert shinka_ids(tmp_path / "elsewhere.py") == FrameworkIds()
    other = search_run_id("shinka", tmp_path / "other" / "first")
    assert other != run_id and other.startswith("shinka-first-")


# ---------------------------------------------------------------- search folders


def folder_files(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.iterdir())}


def test_integrations_writes_ready_search_folders(tmp_path, capsys):
    yaml = pytest.importorskip("yaml")
    seed_parent = (ROOT / "candidates" / "seed_parent.py").read_text()
    task, example, store = tmp_path / "task", tmp_path / "example", tmp_path / "store"
    assert main(["integrations", "shinka", "--task-dir", str(task), "--budget", "30", "--results", str(store)]) == 0
    printed = capsys.readouterr().out
    assert "shinka_run --task-dir . --config-fname shinka.yaml" in printed
    assert set(folder_files(task)) == {"evaluate.py", "initial.py", "eplb.toml", "shinka.yaml", "README.md"}
    assert (task / "initial.py").read_text() == seed_parent
    compile((task / "evaluate.py").read_text(), "evaluate.py", "exec")
    settings = resolve_config(task / "eplb.toml")
    assert (settings.budget, settings.results, settings.suite) == (30.0, str(store), "default")
    assert settings.score == IntegrationConfig().score  # the integration's default
    shinka_config = yaml.safe_load((task / "shinka.yaml").read_text())
    assert shinka_config["evo"]["use_text_feedback"] is True
    hours, minutes, seconds = map(int, shinka_config["job"]["time"].split(":"))
    assert hours * 3600 + minutes * 60 + seconds > 30
    assert "rebalance_experts" in shinka_config["evo"]["task_sys_msg"]
    assert shinka_config["max_evaluation_jobs"] == 1
    readme = (task / "README.md").read_text()
    assert all(line.strip() in readme for line in printed.splitlines()[2:])

    assert main(["integrations", "openevolve", "--example-dir", str(example), "--suite", "quick",
                 "--score", "balancedness"]) == 0
    capsys.readouterr()
    assert (example / "initial_program.py").read_text() == seed_parent
    settings = resolve_config(example / "eplb.toml")
    assert (settings.score, settings.suite, settings.stage1_suite) == ("balancedness", "quick", "quick")
    assert settings.run_id == search_run_id("openevolve", example)
    assert settings.results == str(Path("results").resolve())  # the store here, shared by every search
    pytest.importorskip("openevolve")
    from openevolve.config import load_config

    config = load_config(str(example / "config.yaml"))
    assert config.evaluator.timeout > settings.budget and config.evaluator.max_retries == 0
    assert config.evaluator.cascade_evaluation and 0 < config.evaluator.cascade_thresholds[0] < 1e-3
    assert config.max_code_length > len(seed_parent)
    assert "rebalance_experts" in config.prompt.system_message


def test_integrations_folder_mistakes_are_named(tmp_path, capsys):
    task = tmp_path / "task"
    assert main(["integrations", "shinka", "--task-dir", str(task)]) == 0
    before = folder_files(task)
    (task / "initial.py").write_text("# my own edits\n")
    no_markers = tmp_path / "plain.py"
    no_markers.write_text("def rebalance_experts():\n    pass\n")
    capsys.readouterr()
    for arguments, reason in [
        (["shinka", "--task-dir", str(task)], "already holds evaluate.py, initial.py"),
        (["shinka", "--example-dir", str(tmp_path / "x")], "one framework"),
        (["--task-dir", str(tmp_path / "x")], "one framework"),
        (["shinka", "--suite", "quick"], "--suite: settings of a search folder"),
        (["openevolve", "--example-dir", str(tmp_path / "x"), "--score", "speed"], "unknown score 'speed'"),
        (["openevolve", "--example-dir", str(tmp_path / "x"), "--suite", "no-such-suite"], "unknown suite"),
        (["openevolve", "--example-dir", str(tmp_path / "x"), "--budget", "0"], "positive number of seconds"),
        (["openevolve", "--example-dir", str(tmp_path / "x"), "--initial", str(no_markers)], "no EVOLVE-BLOCK"),
    ]:
        assert main(["integrations", *arguments]) == 2, arguments
        error = capsys.readouterr().err
        assert reason in error and len(error.splitlines()) == 1, (arguments, error)
    assert not (tmp_path / "x").exists()
    assert (task / "initial.py").read_text() == "# my own edits\n"  # nothing overwritten
    assert main(["integrations", "shinka", "--task-dir", str(task), "--force"]) == 0
    assert folder_files(task) == before
