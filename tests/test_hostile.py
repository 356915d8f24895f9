"""Hostile candidates: the harness survives each one, gives it the right verdict, and
leaves nothing behind.

Every program in tests/hostile/ attacks the harness one way (hang, crash, flood, cheat,
lie). The first line of its docstring is its expected verdict, machine-readable:
`Verdict: STATUS` or `Verdict: STATUS: FRAGMENT`, where FRAGMENT must occur in the stored
`error`; an optional `Flags:` line names the flags its row must carry (`nondeterministic`)
and `confined`: the verdict holds where namespaces confine the candidates (elsewhere the
case is skipped, saying why). The whole gallery runs once, through the CLI as a new user
would run it (candidates nobody here wrote), into one store; each case then checks its
own row. The cases that reach out find what the test set out for them: a listener on
127.0.0.1, a folder outside their work folder, a secret in a home folder made for the
run and in the CLI's environment, written into the copies of the files that run
(`@LISTENER_PORT@`, `@OUTSIDE_FOLDER@`, `@SECRET_FILE@`).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import README_TOPOLOGY_ARGS, README_WEIGHT, cli_command, live_processes_with

from harness.protocol import ERROR_CHARS, NAMESPACES
from harness.sandbox import TAIL_BYTES, confinement
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
    confinement: str  # what this machine gives the candidates, and why not namespaces
    reason: str
    secret: str
    outside: Path  # the folder outside the work folders that the candidates try to write into
    connections: int  # how many the listener on 127.0.0.1 was offered


def confined_only(gallery: Gallery) -> None:
    if gallery.confinement != NAMESPACES:
        pytest.skip(f"namespaces cannot confine candidates here: {gallery.reason}")


def pending_connections(listener: socket.socket) -> int:
    """How many connections came to `listener` (accepted now: the kernel queued them)."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            listener.accept()[0].close()
        except BlockingIOError:
            return count
        count += 1


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Iterator[Gallery]:
    tmp = tmp_path_factory.mktemp("hostile")
    np.save(tmp / "tiny.npy", TINY)
    home = tmp / "home"
    home.mkdir()
    secret = f"eplb-secret-{uuid.uuid4().hex}"
    (home / ".eplb-secret").write_text(secret)
    # Beside the Python environment: a place a confined worker still sees, read-only.
    outside = Path(tempfile.mkdtemp(prefix=".eplb-outside-", dir=sys.prefix))
    listener = socket.create_server(("127.0.0.1", 0))
    copies = tmp / "gallery"
    copies.mkdir()
    for path in CASES:
        (copies / path.name).write_text(
            path.read_text().replace("@LISTENER_PORT@", str(listener.getsockname()[1]))
            .replace("@OUTSIDE_FOLDER@", str(outside)).replace("@SECRET_FILE@", str(home / ".eplb-secret")))
    # TMPDIR under tmp: every worker folder, and every process a candidate starts, is
    # marked with it, so the tests can see what is left behind.
    env = {**os.environ, "TMPDIR": str(tmp), "HOME": str(home), "EPLB_TEST_SECRET": secret}
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [*cli_command(), "run", str(copies), "--workload", str(tmp / "tiny.npy"), *TOPOLOGY,
             "--timeout", str(TIMEOUT_S), "--memory-mb", "2048", "--jobs", "2", "--results", str(tmp / "store")],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=900,
        )
        wall_s = time.perf_counter() - started
        rows = {row["candidate_name"]: row for row in ResultStore(tmp / "store").read().to_pylist()}
        yield Gallery(done, rows, wall_s, tmp, *confinement(), secret, outside, pending_connections(listener))
    finally:
        listener.close()
        shutil.rmtree(outside, ignore_errors=True)


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
        status, _, flags = expectation(path)
        if "confined" not in flags or gallery.confinement == NAMESPACES:
            assert board.get(path.stem) == f"{status}:1", f"{path.stem}: {board.get(path.stem)}\n{done.stdout}"


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_hostile_candidate_gets_its_verdict(path, gallery):
    status, fragment, flags = expectation(path)
    if "confined" in flags:
        confined_only(gallery)
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


@pytest.mark.parametrize("name, command", [("forks_grandchild", b"sleep\x001000"),
                                           ("escapes_session", b"sleep\x001001")])
def test_grandchildren_do_not_outlive_their_evaluation(name, command, gallery):
    printed = re.search(r"started grandchild (\d+)", gallery.rows[name]["stdout_tail"])
    assert printed, "the grandchild was never started, so this proves nothing"
    # Confined, the pid printed is the grandchild's in the worker's PID namespace: look
    # for the grandchild by its command line too.
    assert gallery.confinement == NAMESPACES or not is_alive(int(printed[1]))
    left = [pid for pid in live_processes_with(f"TMPDIR={gallery.tmp}".encode())
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(command)]
    assert left == []


def test_every_row_says_how_its_candidate_was_confined(gallery):
    assert {row["confinement"] for row in gallery.rows.values()} == {gallery.confinement}


def test_connections_fail_at_once_and_reach_nobody(gallery):
    confined_only(gallery)
    assert gallery.connections == 0
    assert gallery.rows["connects_to_listener"]["eval_wall_s"] < 5  # the candidate waits up to 10 s for a reply
    assert "child connect: refused (Network is unreachable)" in gallery.rows["forks_to_reach_out"]["stdout_tail"]


def test_nothing_is_written_outside_the_work_folder(gallery):
    confined_only(gallery)
    assert list(gallery.outside.iterdir()) == []
    assert "child write: refused (Read-only file system)" in gallery.rows["forks_to_reach_out"]["stdout_tail"]


def test_the_secret_is_in_no_row_and_no_output(gallery):
    confined_only(gallery)
    assert "child read: refused (No such file or directory)" in gallery.rows["forks_to_reach_out"]["stdout_tail"]
    for row in gallery.rows.values():
        leaks = [column for column, value in row.items() if gallery.secret in str(value)]
        assert leaks == [], row["candidate_name"]
    assert gallery.secret not in gallery.done.stdout + gallery.done.stderr


def test_nothing_is_left_behind(gallery):
    # No process of any evaluation (workers, grandchildren, threads' hosts) is still running,
    # and every worker folder is gone.
    assert live_processes_with(f"TMPDIR={gallery.tmp}".encode()) == []
    assert sorted(p.name for p in gallery.tmp.glob("eplb-eval-*")) == []
