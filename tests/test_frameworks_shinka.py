"""ShinkaEvolve's own search loop (`shinka_run`) from the folder `eplb-harness integrations
shinka --task-dir` writes, against a stand-in LLM endpoint: every evaluation goes
through the harness, ShinkaEvolve's database holds the children with their scores and
feedback, the store holds the same programs with their lineage, and nothing is left
running. One workload and a short budget keep it to a few evaluations' time."""

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    STANDIN_REPLIES,
    STANDIN_STATUSES,
    ChatStandIn,
    live_processes_with,
    search_environment,
    search_folder,
)

from harness.candidates import REFERENCE_PATH, load_candidate, source_hash
from harness.integrations.frameworks import search_run_id
from harness.store import ResultStore

pytest.importorskip("shinka")

BUDGET_S = 20  # the budget of one evaluation, so the hanging child costs this much
REFERENCE_HASH = load_candidate(REFERENCE_PATH).hash  # the harness may store its rows beside
GENERATIONS = 1 + len(STANDIN_REPLIES)  # the initial program, then one child per reply


def shinka_run(task: Path, llm_url: str, scratch: Path) -> subprocess.CompletedProcess:
    """`shinka_run` as the folder's README gives it, with the stand-in as the model, no
    embedding model (it would need an OpenAI key), diffs only (the stand-in writes
    diffs) and one proposal at a time (so the replies arrive in order)."""
    script = Path(sys.executable).parent / "shinka_run"
    command = [str(script), "--task-dir", ".", "--config-fname", "shinka.yaml", "--results_dir", "runs/first",
               "--num_generations", str(GENERATIONS), "--set", f'evo.llm_models=["local/standin@{llm_url}"]',
               "--set", "evo.embedding_model=null", "--set", 'evo.patch_types=["diff"]',
               "--set", "evo.patch_type_probs=[1.0]", "--max-proposal-jobs", "1", "--no-verbose"]
    return subprocess.run(command, cwd=task, env=search_environment(scratch), capture_output=True, text=True,
                          timeout=600)


def test_shinka_search_runs_every_evaluation_through_the_harness(tmp_path):
    task, store, scratch = search_folder(tmp_path, "shinka", BUDGET_S)

    with ChatStandIn(STANDIN_REPLIES) as llm:
        done = shinka_run(task, llm.url, scratch)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(llm.prompts) == len(STANDIN_REPLIES)
    # use_text_feedback is on: the harness's feedback on a parent reaches the model.
    assert any("Valid on all 1 workloads" in prompt for prompt in llm.prompts[1:])

    search = (task / "runs" / "first").resolve()
    with sqlite3.connect(search / "programs.sqlite") as db:
        records = db.execute(
            "SELECT generation, id, parent_id, code, correct, combined_score, text_feedback FROM programs").fetchall()
    by_id = {record[1]: record for record in records}
    programs = {record[0]: record for record in records}  # each island has a copy of generation 0
    assert sorted(programs) == list(range(GENERATIONS))
    rows = [row for row in ResultStore(store).read(["run_id", "candidate_name", "candidate_hash", "parent_hash",
                                                     "status"]).to_pylist()
            if row["candidate_hash"] != REFERENCE_HASH]
    assert {row["run_id"] for row in rows} == {search_run_id("shinka", search)}
    stored = {row["candidate_name"]: row for row in rows}
    assert len(stored) == len(rows) == GENERATIONS  # one workload, one row per evaluation

    for generation, (_, _, parent_id, code, correct, score, feedback) in programs.items():
        row = stored[f"first/gen_{generation}"]
        assert row["candidate_hash"] == source_hash(code)
        assert bool(correct) == (row["status"] == "ok")
        assert (score > 0) == (row["status"] == "ok")
        assert feedback.startswith("Valid on all" if correct else row["status"].upper())
        parent = by_id.get(parent_id)
        assert row["parent_hash"] == (source_hash(parent[3]) if parent else "")
        assert (search / f"gen_{generation}" / "results" / "correct.json").is_file()
    assert [stored[f"first/gen_{g}"]["status"] for g in range(1, GENERATIONS)] == list(STANDIN_STATUSES)

    deadline = time.monotonic() + 10
    while live_processes_with(f"TMPDIR={scratch}".encode()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_processes_with(f"TMPDIR={scratch}".encode()) == []
