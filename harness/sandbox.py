"""Parent side of the worker: one candidate process per evaluation, never trusted.

The worker is forked by the warm zygote (`harness.zygote`, which has imported numpy and
torch once) and runs in a new session (its own process group) with a scrubbed
environment, a fresh temporary working directory and a memory cap; a wall-clock timeout
kills the whole group, grandchildren included. Its stdout and stderr are drained
continuously and only a bounded tail is kept, so a flood can neither block it nor fill memory.

What parent and worker agree on (files, fields, limits) is `harness.protocol`'s.
Everything the worker leaves behind is read as hostile input (`harness.answers`), because the candidate runs
in the worker's process and can rewrite any of it: `answer.json` and `placements.npy`
must be regular files of bounded size, well formed, with every field the evaluation
reads of the right type; array headers are checked before any array is allocated. A
broken or implausible answer (say runtime samples of zero) makes an `invalid` result,
never an exception here. Descendants that leave the process group (`setsid`, a daemon's
double fork) are killed too: the zygote holds them as a child subreaper, and those that
started another program are also found by a per-evaluation token in their environment.
Everything dies with the harness.

Confinement: where the kernel allows, the worker runs in namespaces of its own
(`harness.confine`: no network, every file read-only but its work folder, the home and
temporary folders empty, only its own processes in sight); elsewhere only in its own
process, as the user, able to read what the user can, use the network, or kill its
parent (the zygote: the evaluations in flight then crash, and a new zygote serves the
next). Each outcome says which (`confinement`); the process says once when it is the
latter; `require_confinement` refuses it. The runtime samples are measured inside the
candidate's own process: they are checked for plausibility (positive, finite, adding up
to no more than the worker's wall time), but a candidate that rewrites the worker's
clock plausibly cannot be caught there.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import answers, confine, protocol, zygote
from harness.errors import HarnessError
from harness.metrics import SPEED_DOUBLINGS
from harness.stats import median_interval

__all__ = ["TAIL_BYTES", "WorkerOutcome", "WorkerRequest", "confinement", "require_confinement", "run_worker",
           "run_workers", "visible_gpus"]

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
TAIL_BYTES = 4096
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH")
_REQUIRED = False  # whether require_confinement() was called in this process


@dataclass(frozen=True)
class WorkerRequest:
    """What one worker process is asked to do: run the candidate `source` on every window
    of `weights: [windows, layers, experts]` with `settings`, within `timeout_s`."""

    source: str
    weights: np.ndarray
    settings: protocol.WorkerSettings
    timeout_s: float


@dataclass(frozen=True, eq=False)
class WorkerOutcome:
    """How the worker process ended: `answer` is its answer.json, checked (empty when it
    gave none); `status`/`error` are set when the process itself failed (timeout, crash).
    `placements` holds the arrays of an `ok` answer by `protocol.placement_key` (none
    when the request asked for none).
    `confinement`: how the worker was confined, one of `protocol.CONFINEMENTS`."""

    status: str
    error: str
    answer: protocol.Answer | dict
    placements: dict[str, np.ndarray]
    stdout_tail: str
    stderr_tail: str
    wall_s: float
    confinement: str


def _drain(stream, tail: collections.deque) -> None:
    for chunk in iter(lambda: stream.read(65536), b""):
        tail.append(chunk)
        while sum(map(len, tail)) - len(tail[0]) >= TAIL_BYTES:
            tail.popleft()
    stream.close()


def _tail_text(tail: collections.deque) -> str:
    return b"".join(tail)[-TAIL_BYTES:].decode("utf-8", errors="replace")


def _environment(threads: int) -> dict[str, str]:
    """The scrubbed environment: what a worker may see of the user's, and the harness's."""
    env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    env.update(PYTHONPATH=str(PACKAGE_ROOT), PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    return env


def confinement() -> tuple[str, str]:
    """The confinement this process's candidates get (one of `protocol.CONFINEMENTS`) and
    why it is not namespaces; starts the warm zygote when none runs (it tries them)."""
    return zygote.confinement(_environment(1), confine.request())


def prestart() -> None:
    """Start the warm zygote now, without waiting for its imports, so that they overlap
    what this process does before its first evaluation (a command's own set-up)."""
    zygote.prestart(_environment(1), confine.request())


def require_confinement() -> None:
    """From now on, refuse to run a candidate without namespaces in this process; raise
    HarnessError at once where they are unavailable."""
    global _REQUIRED
    got, reason = confinement()
    if got != protocol.NAMESPACES:
        raise HarnessError(f"candidates cannot be confined by namespaces here ({reason}); nothing was run")
    _REQUIRED = True


# The GPUs the workers started in this thread may see (CUDA_VISIBLE_DEVICES); None: those
# the harness sees. Set by `visible_gpus`, for one evaluation on a cluster worker.
_VISIBLE_GPUS: contextvars.ContextVar[str | None] = contextvars.ContextVar("visible_gpus", default=None)


@contextlib.contextmanager
def visible_gpus(ids: str) -> Iterator[None]:
    """Workers started within this block, in this thread, see only the GPUs `ids`
    (CUDA_VISIBLE_DEVICES): how a cluster worker gives each evaluation a GPU of its own."""
    token = _VISIBLE_GPUS.set(ids)
    try:
        yield
    finally:
        _VISIBLE_GPUS.reset(token)


def _worker_environment(workdir: str, threads: int, token: str) -> dict[str, str]:
    env = {**_environment(threads), "HOME": workdir, "TMPDIR": workdir, protocol.TOKEN_VARIABLE: token}
    if (gpus := _VISIBLE_GPUS.get()) is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return env


def _kill_tagged(token: str) -> None:
    """SIGKILL every process whose environment carries this evaluation's token: the
    descendants that left the worker's process group but kept the environment they
    inherited. Reads /proc (Linux); elsewhere only the process group is killed."""
    needle = f"{protocol.TOKEN_VARIABLE}={token}".encode()
    for _ in range(10):  # again until a scan finds none, in case one forked meanwhile
        try:
            pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return
        killed = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/environ", "rb") as file:
                    if needle not in file.read().split(b"\0"):
                        continue
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:  # gone, or another user's
                continue
        if not killed:
            return
        time.sleep(0.01)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals have no name of their own
        if signal.SIGRTMIN < number < signal.SIGRTMAX:
            return f"SIGRTMIN+{number - signal.SIGRTMIN}"
        return f"signal {number}"


def _exit_reason(returncode: int, stderr_tail: str = "") -> str:
    """Why a worker that gave no answer ended: the signal's name or the exit code, and
    `out of memory` when its stderr says so (or a guess, for SIGKILL)."""
    oom = "out of memory: " if protocol.mentions_out_of_memory(stderr_tail) else ""
    if returncode < 0:
        name = _signal_name(-returncode)
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" and not oom else ""
        return f"{oom}the worker died by signal {name}{hint} before answering"
    return f"{oom}the worker exited with code {returncode} before answering"


@dataclass(eq=False)
class _Running:
    """A started worker, as the parent tracks it until its outcome is known."""

    request: WorkerRequest
    workdir: Path
    child: zygote.WarmChild
    turns: protocol.Turns
    token: str
    drains: list[threading.Thread]
    tails: tuple[collections.deque, collections.deque]
    started: float  # perf_counter when the worker was started
    deadline: float  # monotonic
    samples_s: list[float] = field(default_factory=list)  # the turns' times it says it took

    @property
    def granted(self) -> int:
        return len(self.samples_s)

    def time_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def _start(request: WorkerRequest) -> _Running:
    """Take a worker from the zygote (forked and confined ahead), write the evaluation's
    files into its folder and start it."""
    token = uuid.uuid4().hex
    # numpy and torch run single-threaded in the zygote (so that it starts no thread
    # before a fork); the worker sets torch's own count.
    child = zygote.reserve(_environment(1), confine.request(), _REQUIRED)
    workdir = Path(child.workdir)
    try:
        (workdir / protocol.CANDIDATE_FILE).write_text(request.source)
        np.save(workdir / protocol.WEIGHTS_FILE, request.weights)
        (workdir / protocol.REQUEST_FILE).write_text(request.settings.to_json())
    except BaseException:
        child.go.close()  # it ends without running anything
        child.reap()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    (stdout_read, stdout_write), (stderr_read, stderr_write) = os.pipe(), os.pipe()
    ours, theirs = socket.socketpair()
    child.start(_worker_environment(str(workdir), request.settings.threads, token),
                [stdout_write, stderr_write, theirs.fileno()])
    for fd in (stdout_write, stderr_write, theirs.detach()):
        os.close(fd)
    # The clock starts with the worker: a zygote's own start (the first evaluation of a
    # process waits for it) is no candidate's time.
    started, deadline = time.perf_counter(), time.monotonic() + request.timeout_s
    tails = (collections.deque(), collections.deque())
    drains = [threading.Thread(target=_drain, args=(os.fdopen(fd, "rb", buffering=0), tail), daemon=True)
              for fd, tail in zip((stdout_read, stderr_read), tails, strict=True)]
    for thread in drains:
        thread.start()
    return _Running(request, workdir, child, protocol.Turns(ours), token, drains, tails, started, deadline)


def _signal_group(pgid: int, number: int) -> None:
    try:
        os.killpg(pgid, number)
    except (ProcessLookupError, PermissionError):
        pass


def _timed_enough(rounds: int, elapsed_s: float, windows: int, timing: dict[str, float],
                  ratios: list[float] | None) -> bool:
    """Whether the rounds so far suffice (see `settings.TimingConfig`); `ratios`: the
    per-round speedups when two workers are timed in pairs."""
    if rounds >= timing["max_samples"] or elapsed_s >= timing["max_time_s"]:
        return True
    if rounds < max(timing["min_samples"], windows):
        return False
    if ratios is None:
        return elapsed_s >= timing["min_time_s"]
    interval = median_interval(ratios)
    # A speedup surely past what the score counts needs no more rounds, nor the minimum times:
    # what is left to learn is a near-free candidate's time, which its turns of many
    # calls already average.
    if interval.low >= 2 ** SPEED_DOUBLINGS or interval.high <= 2 ** -SPEED_DOUBLINGS:
        return True
    precise = interval.high - interval.low <= 2 * timing["precision"] * interval.median
    return precise and elapsed_s >= max(timing["min_time_s"], timing["min_paired_time_s"])


def _time_in_turns(running: list[_Running]) -> None:
    """Grant the workers their turns in rounds, one turn each, all on the same window in
    a round, until `_timed_enough`. The first worker runs the candidate, any other the
    reference. During the reference's turn the candidate's process group is stopped, so
    that a candidate cannot slow the reference down; the reference, the harness's own
    code, waits idle for its next turn while the candidate's runs (stopping it as well
    would only add signals and wake-ups to every round). A worker that fails or runs out
    of time drops out; the rest go on."""
    live = [worker for worker in running if worker.turns.wait_ready(worker.time_left())]
    timing = running[0].request.settings.timing
    windows = running[0].request.weights.shape[0]
    rounds, started = 0, time.perf_counter()
    ratios: list[float] | None = [] if len(running) == 2 else None
    while live and not _timed_enough(rounds, time.perf_counter() - started, windows, timing, ratios):
        for worker in list(live):
            others = [running[0]] if worker is not running[0] and running[0] in live else []
            for other in others:
                _signal_group(other.child.pid, signal.SIGSTOP)
            sample_s = worker.turns.grant(rounds % windows, worker.time_left())
            for other in others:
                _signal_group(other.child.pid, signal.SIGCONT)
            if sample_s is None:
                live.remove(worker)
            else:
                worker.samples_s.append(sample_s)
        if ratios is not None and len(live) == 2:  # both made this round's call
            candidate_s, reference_s = running[0].samples_s[-1], running[1].samples_s[-1]
            if candidate_s > 0:  # a candidate's impossible time is judged with its answer
                ratios.append(reference_s / candidate_s)
        rounds += 1
    for worker in running:
        worker.turns.stop()


def _finish(worker: _Running) -> WorkerOutcome:
    """Wait for the worker to end (or kill it at its deadline) and read what it left."""
    try:
        returncode = worker.child.wait(worker.time_left())
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    # Whatever happened, nothing the candidate started may outlive its evaluation. In
    # namespaces, a worker that ended by itself was reported once its namespace was
    # empty: there is nothing left to look for.
    _signal_group(worker.child.pid, signal.SIGKILL)
    if timed_out or worker.child.confinement != protocol.NAMESPACES:
        _kill_tagged(worker.token)
    if timed_out:
        returncode = worker.child.reap()
    wall_s = time.perf_counter() - worker.started
    for thread in worker.drains:
        thread.join(timeout=5)
    stdout_tail, stderr_tail = map(_tail_text, worker.tails)
    request, answer_path = worker.request, worker.workdir / protocol.ANSWER_FILE
    placements: dict[str, np.ndarray] = {}
    if timed_out:
        status, error, answer = "timeout", f"no answer within {request.timeout_s:g} s; process group killed", {}
    elif not os.path.lexists(answer_path):
        status, error, answer = "crash", _exit_reason(returncode, stderr_tail), {}
    else:
        status, error = "", ""
        try:
            answer = answers.checked_answer(answers.read_regular(answer_path, protocol.ANSWER_BYTES),
                                            request.weights.shape[0] if request.settings.placements else 0, wall_s)
            if answer["status"] == "ok":
                if request.settings.placements:
                    placements = answers.read_placements(worker.workdir / protocol.PLACEMENTS_FILE,
                                                         request.weights.shape,
                                                         request.settings.topology["num_replicas"])
                if len(answer["runtime_samples_s"]) != worker.granted:
                    raise ValueError(f"runtime_samples_s holds {len(answer['runtime_samples_s'])} samples; the "
                                     f"worker was granted {worker.granted} turns")
        except ValueError as exc:
            status, error, answer = "invalid", answers.clean_text(f"answer: {exc}", protocol.ERROR_CHARS), {}
    return WorkerOutcome(status, error, answer, placements, stdout_tail, stderr_tail, wall_s, worker.child.confinement)


def run_workers(requests: Sequence[WorkerRequest]) -> list[WorkerOutcome]:
    """Run one worker per request at once, timed in turns, turn by turn (see
    `_time_in_turns`), each to completion or its own timeout; never raises for candidate
    behaviour. All requests share the timing settings and the number of windows."""
    running: list[_Running] = []
    try:
        # The last first: beside a candidate, the reference, which is often the slower to warm up.
        for request in reversed(requests):
            running.insert(0, _start(request))
        _time_in_turns(running)
    finally:
        outcomes = [_finish(worker) for worker in running]
        for worker in running:
            # ignore_errors: the candidate may have removed the folder or left a file unremovable.
            shutil.rmtree(worker.workdir, ignore_errors=True)
    if unconfined := [worker.child.unconfined for worker in running if worker.child.unconfined]:
        raise HarnessError(f"a worker could not be confined and ran nothing ({unconfined[0]})")
    return outcomes


def run_worker(request: WorkerRequest) -> WorkerOutcome:
    """Run one worker alone; see `run_workers`."""
    return run_workers([request])[0]
