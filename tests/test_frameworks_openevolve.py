"""OpenEvolve's own search loop (`openevolve-run`) from the folder `eplb-harness
integrations openevolve --example-dir` writes, against a stand-in LLM endpoint: every
evaluation goes through the harness (both cascade stages), OpenEvolve's database holds
the children with their scores and feedback, the store holds the same programs with
their lineage, and nothing is left running. One workload and a short budget keep it to
a few evaluations' time."""

import json
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

pytest.importorskip("openevolve")

BUDGET_S = 20  # the budget of one evaluation, so the hanging child costs this much
REFERENCE_HASH = load_candidate(REFERENCE_PATH).hash  # the harness may store its rows beside
ITERATIONS = len(STANDIN_REPLIES)


def openevolve_run(example: Path, llm_url: str, scratch: Path) -> subprocess.CompletedProcess:
    """`openevolve-run` as the folder's README gives it, with the stand-in as the model."""
    script = Path(sys.executable).parent / "openevolve-run"
    command = [str(script), "initial_program.py", "evaluator.py", "--config", "config.yaml",
               "--iterations", str(ITERATIONS), "--api-base", llm_url, "--primary-model", "standin"]
    return subprocess.run(command, cwd=example, env=search_environment(scratch, OPENAI_API_KEY="standin"),
                          capture_output=True, text=True, timeout=600)


def test_openevolve_search_runs_every_evaluation_through_the_harness(tmp_path):
    example, store, scratch = search_folder(tmp_path, "openevolve", BUDGET_S)
    config = example / "config.yaml"
    # OpenEvolve saves its database at checkpoints only; save one after every iteration.
    assert "checkpoint_interval: 10\n" in config.read_text()
    config.write_text(config.read_text().replace("checkpoint_interval: 10\n", "checkpoint_interval: 1\n"))

    with ChatStandIn(STANDIN_REPLIES) as llm:
        done = openevolve_run(example, llm.url, scratch)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(llm.prompts) == ITERATIONS
    # The parent's artifacts, the harness's feedback among them, reach the model.
    assert any("Valid on all 1 workloads" in prompt for prompt in llm.prompts[1:])

    checkpoint = example / "openevolve_output" / "checkpoints" / f"checkpoint_{ITERATIONS}" / "programs"
    programs = {p["id"]: p for p in (json.loads(f.read_text()) for f in checkpoint.glob("*.json"))}
    assert len(programs) == 1 + ITERATIONS
    rows = [row for row in ResultStore(store).read(["run_id", "candidate_name", "candidate_hash", "parent_hash",
                                                     "suite", "status"]).to_pylist()
            if row["candidate_hash"] != REFERENCE_HASH]
    assert {row["run_id"] for row in rows} == {search_run_id("openevolve", example)}
    by_hash: dict[str, list[dict]] = {}
    for row in rows:
        by_hash.setdefault(row["candidate_hash"], []).append(row)
    assert len(by_hash) == len(programs)  # every program, and nothing else, went through the harness

    children = sorted((p for p in programs.values() if p["parent_id"]), key=lambda p: p["iteration_found"])
    for program in programs.values():
        evaluations = by_hash[source_hash(program["code"])]
        statuses = {row["status"] for row in evaluations}
        assert len(statuses) == 1
        ok = statuses == {"ok"}
        # Stage 1 on the quick suite, stage 2 (the tiny suite here) only for a valid program.
        tiny = str((tmp_path / "tiny.json").resolve())
        assert {row["suite"] for row in evaluations} == ({"quick", tiny} if ok else {"quick"})
        assert (program["metrics"]["combined_score"] > 0) == ok
        feedback = json.loads(program["artifacts_json"])["feedback"]
        assert feedback.startswith("Valid on all" if ok else statuses.pop().upper())
        if program["parent_id"]:
            parent = programs[program["parent_id"]]
            assert {row["candidate_name"] for row in evaluations} == {program["id"]}
            assert {row["parent_hash"] for row in evaluations} == {source_hash(parent["code"])}
    assert [by_hash[source_hash(p["code"])][0]["status"] for p in children] == list(STANDIN_STATUSES)

    deadline = time.monotonic() + 10
    while live_processes_with(f"TMPDIR={scratch}".encode()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_processes_with(f"TMPDIR={scratch}".encode()) == []
