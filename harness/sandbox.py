"""Parent side of the worker: one candidate process per evaluation, never trusted.

The worker runs in a new session (its own process group) with a scrubbed environment, a
fresh temporary working directory and a memory cap; a wall-clock timeout kills the whole
group, grandchildren included. Its stdout and stderr are drained continuously and only
a bounded tail is kept, so a flood can neither block it nor fill memory.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
TAIL_BYTES = 4096
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH")


@dataclass(frozen=True)
class WorkerRequest:
    """What one worker process is asked to do."""

    source: str
    weights: np.ndarray  # [windows, layers, experts]
    topology: dict[str, int]
    device: str
    threads: int
    timing: dict[str, float]
    timeout_s: float
    memory_mb: int


@dataclass(frozen=True, eq=False)
class WorkerOutcome:
    """How the worker process ended: `answer` is its answer.json (empty when it gave
    none); `status`/`error` are set when the process itself failed (timeout, crash)."""

    status: str
    error: str
    answer: dict
    placements: dict[str, np.ndarray]
    stdout_tail: str
    stderr_tail: str
    wall_s: float


def _drain(stream, tail: collections.deque) -> None:
    for chunk in iter(lambda: stream.read(65536), b""):
        tail.append(chunk)
        while sum(map(len, tail)) - len(tail[0]) >= TAIL_BYTES:
            tail.popleft()
    stream.close()


def _tail_text(tail: collections.deque) -> str:
    return b"".join(tail)[-TAIL_BYTES:].decode("utf-8", errors="replace")


def _environment(workdir: str, threads: int) -> dict[str, str]:
    env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    env.update(
        HOME=workdir, TMPDIR=workdir, PYTHONPATH=str(PACKAGE_ROOT), PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
    )
    return env


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the worker died by signal {name}{hint} before answering"
    return f"the worker exited with code {returncode} before answering"


def run_worker(request: WorkerRequest) -> WorkerOutcome:
    """Run one worker to completion or timeout; never raises for candidate behaviour."""
    with tempfile.TemporaryDirectory(prefix="eplb-eval-") as workdir:
        work = Path(workdir)
        (work / "candidate.py").write_text(request.source)
        np.save(work / "weights.npy", request.weights)
        (work / "request.json").write_text(json.dumps({
            "topology": request.topology, "device": request.device,
            "threads": request.threads, "timing": request.timing, "memory_mb": request.memory_mb,
        }))
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "harness.worker", workdir],
            cwd=workdir, env=_environment(workdir, request.threads), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        tails = (collections.deque(), collections.deque())
        drains = [threading.Thread(target=_drain, args=(stream, tail), daemon=True)
                  for stream, tail in zip((process.stdout, process.stderr), tails)]
        for thread in drains:
            thread.start()
        try:
            process.wait(timeout=request.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        # Whatever happened, nothing the candidate started may outlive its evaluation.
        _kill_group(process.pid)
        process.wait()
        wall_s = time.perf_counter() - started
        for thread in drains:
            thread.join(timeout=5)
        stdout_tail, stderr_tail = map(_tail_text, tails)
        answer_path = work / "answer.json"
        if timed_out:
            status, error, answer = "timeout", f"no answer within {request.timeout_s:g} s; process group killed", {}
        elif not answer_path.exists():
            status, error, answer = "crash", _exit_reason(process.returncode), {}
        else:
            status, error, answer = "", "", json.loads(answer_path.read_text())
        placements: dict[str, np.ndarray] = {}
        if answer.get("status") == "ok":
            with np.load(work / "placements.npz", allow_pickle=False) as archive:
                placements = {key: archive[key] for key in archive.files}
        return WorkerOutcome(status, error, answer, placements, stdout_tail, stderr_tail, wall_s)
