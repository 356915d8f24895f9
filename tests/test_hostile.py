"""Hostile candidates: the harness survives each one, gives it the right verdict, and
leaves nothing behind.

Every program in tests/hostile/ attacks the harness one way (hang, crash, flood, cheat,
lie). The first line of its docstring is its expected verdict, machine-readable:
`Verdict: STATUS` or `Verdict: STATUS: FRAGMENT`, where FRAGMENT must occur in the stored
`error`; an optional `Flags: nondeterministic` line names the flags its row must carry.
The whole gallery runs once, through the CLI as a new user would run it (candidates
nobody here wrote), into one store; each case then checks its own row.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import README_TOPOLOGY_ARGS, README_WEIGHT, cli_command, live_processes_with

from harness.protocol import ERROR_CHARS
from harness.sandbox import TAIL_BYTES
from harness.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "hostile"
CASES = sorted(HOSTILE.glob("*.py"))
# [2 windows, 2 layers, 12 experts] on 16 replicas / 4 groups / 2 nodes / 8 GPUs.
LAYERS = README_WEIGHT
TINY = np.stack([LAYERS, LAYERS[:, ::-1]])
TOPOLOGY = README_TOPOLOGY_ARGS
TIMEOUT_S = 15  # a worker start (torch import) alone takes 3-7 s on a loaded 2-core box


def expectation(path: Path) -> tuple[str, str, set[str]]:
    """(status, error fragment, flags) from a hostile file's docstring. Read as text, not
    imported or parsed: some of these files do not even parse."""
    lines = path.read_text().splitlines()
    verdict = re.fullmatch(r'"""Verdict: (\w+)(?:: (.+))?', lines[0])
    assert verdict, f"{path.name}: the first line must be `\"\"\"Verdict: STATUS[: FRAGMENT]`"
    flags = next((set(line.split()[1:]) for line in lines[1:4] if line.startswith("Flags:")), set())
    return verdict[1], verdict[2] or "", flags


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Gallery:
    done: subprocess.CompletedProcess
    rows: dict[str, dict]
    wall_s: float
    tmp: Path


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Gallery:
    tmp = tmp_path_factory.mktemp("hostile")
    np.save(tmp / "tiny.npy", TINY)
    # TMPDIR under tmp: every worker folder, and every process a candidate starts, is
    # marked with it, so the tests can see what is left behind.
    env = {**os.environ, "TMPDIR": str(tmp)}
    started = time.perf_counter()
    done = subprocess.run(
        [*cli_command(), "run", str(HOSTILE), "--workload", str(tmp / "tiny.npy"), *TOPOLOGY,
         "--timeout", str(TIMEOUT_S), "--memory-mb", "2048", "--jobs", "2", "--results", str(tmp / "store")],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=900,
    )
    wall_s = time.perf_counter() - started
    rows = {row["candidate_name"]: row for row in ResultStore(tmp / "store").read().to_pylist()}
    return Gallery(done, rows, wall_s, tmp)


def test_every_hostile_file_declares_a_verdict():
    assert len(CASES) >= 20
    for path in CASES:
        status, fragment, _ = expectation(path)
        assert status in ("ok", "invalid", "error", "timeout", "crash"), path.name
        assert status == "ok" or fragment, f"{path.name}: a failure verdict names a fragment of its error"


def test_the_cli_survives_the_gallery(gallery):
    done = gallery.done
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"{len(CASES)} evaluated" in done.stdout or f"{len(CASES) + 1} evaluated" in done.stdout, done.stdout
    board = {line.split()[1]: line.split()[2] for line in done.stdout.splitlines()
             if re.match(r"\s*\d+\s", line) and len(line.split()) > 2}
    for path in CASES:
        status, _, _ = expectation(path)
        assert board.get(path.stem) == f"{status}:1", f"{path.stem}: {board.get(path.stem)}\n{done.stdout}"


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_hostile_candidate_gets_its_verdict(path, gallery):
    status, fragment, flags = expectation(path)
    row = gallery.rows.get(path.stem)
    assert row is not None, f"no row stored for {path.stem}"
    assert row["status"] == status, row["error"]
    assert fragment in row["error"], row["error"]
    assert row["nondeterministic"] == ("nondeterministic" in flags)
    if status == "ok":
        assert row["error"] == ""
        assert 0 < row["balancedness"] <= 1 and row["runtime_s"] > 0
    else:
        assert np.isnan(row["balancedness"])
    # Bounded, whatever the candidate did: the error, the tails, the time.
    assert len(row["error"]) <= ERROR_CHARS + 40
    assert len(row["stdout_tail"]) <= TAIL_BYTES and len(row["stderr_tail"]) <= TAIL_BYTES
    assert row["eval_wall_s"] < TIMEOUT_S + 3


def test_a_flood_keeps_only_a_tail_and_stays_quick(gallery):
    flood, calm = gallery.rows["stdout_flood"], gallery.rows["thread_left_running"]
    assert flood["stdout_tail"].endswith("END-OF-STDOUT-FLOOD\n")
    assert flood["stdout_tail"].startswith("flood") or " flood" in flood["stdout_tail"]
    # 200 MB through the pipe costs well under the few seconds a worker's start costs.
    assert flood["eval_wall_s"] < calm["eval_wall_s"] + 5
    garbage = gallery.rows["stderr_flood"]["stderr_tail"]
    assert len(garbage) > TAIL_BYTES // 2 and "\ufffd" in garbage


@pytest.mark.parametrize("name", ["forks_grandchild", "escapes_session"])
def test_grandchildren_do_not_outlive_their_evaluation(name, gallery):
    printed = re.search(r"started grandchild (\d+)", gallery.rows[name]["stdout_tail"])
    assert printed, "the grandchild was never started, so this proves nothing"
    assert not is_alive(int(printed[1]))


def test_nothing_is_left_behind(gallery):
    # No process of any evaluation (workers, grandchildren, threads' hosts) is still running,
    # and every worker folder is gone.
    assert live_processes_with(f"TMPDIR={gallery.tmp}".encode()) == []
    assert sorted(p.name for p in gallery.tmp.glob("eplb-eval-*")) == []
