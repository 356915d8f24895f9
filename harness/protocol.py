"""What the parent (`harness.sandbox`) and the worker (`harness.worker`) agree on, written once.

One evaluation is one work folder. The parent writes `candidate.py` (the program),
`weights.npy` ([windows, layers, experts] float) and `request.json` (a `WorkerSettings`),
then asks the warm zygote (`zygote_command`, see `harness.zygote`) to fork a worker on
that folder. The worker calls the candidate's `rebalance_experts` once per window and
writes `placements.npy` (.npy records one after another, no pickle: for each window, one
of each of PLACEMENT_ARRAYS, in order), makes its warm-up calls, then times a burst of
calls each time the parent grants it a turn on its `Turns` channel (descriptor TURN_FD),
and writes, last and atomically, `answer.json` (an `Answer`, an `OkAnswer` when the
status is `ok`). The parent reads both files as hostile input.

Confinement: the parent asks the zygote for one of CONFINEMENTS with a
`ConfinementRequest` on its command line; the zygote answers, once it is ready, with the
confinement its workers get (`ZygoteReady`): `namespaces` where the kernel allows them
(see `harness.confine`), else `process`, saying why.

Standard library only: the worker imports this before the candidate, so it must stay light.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
from dataclasses import asdict, dataclass
from typing import TypedDict, get_origin, get_type_hints

__all__ = [
    "ANSWER_BYTES", "ANSWER_FILE", "Answer", "CANDIDATE_FILE", "CONFINEMENTS", "ConfinementRequest", "ENTRY_POINT",
    "ERROR_CHARS", "EXCEPTION_MESSAGE_CHARS", "MAX_CALLS_PER_TURN", "NAMESPACES", "OK_ANSWER_FIELDS",
    "OUT_OF_MEMORY_MARKERS", "OkAnswer", "PLACEMENTS_FILE", "PLACEMENT_ARRAYS", "PROCESS", "REQUEST_FILE",
    "TOKEN_VARIABLE", "TURN_FD", "Turns", "WEIGHTS_FILE", "WORKER_STATUSES", "ZYGOTE_MODULE", "ZygoteReady",
    "WorkerSettings", "max_placement_elements", "mentions_out_of_memory", "placement_key", "shorten",
    "zygote_command",
]

ZYGOTE_MODULE = "harness.zygote"
ENTRY_POINT = "rebalance_experts"  # the function a candidate defines

# The work folder's files, by who writes them: the parent, then the worker.
CANDIDATE_FILE = "candidate.py"
WEIGHTS_FILE = "weights.npy"
REQUEST_FILE = "request.json"
PLACEMENTS_FILE = "placements.npy"
ANSWER_FILE = "answer.json"

# Set in the worker's environment to a per-evaluation token, so every process descended
# from it, even one that left its process group, can be found and killed.
TOKEN_VARIABLE = "EPLB_HARNESS_EVAL"

# The worker cuts a candidate's exception message here: a 100 MB message must not become
# a 100 MB row.
EXCEPTION_MESSAGE_CHARS = 2000
# The parent cuts any error text it takes from the worker here (the worker's message with
# the stage it names, or whatever a forged answer holds).
ERROR_CHARS = 4000
# answer.json holds statuses, an error cut as above and timings; anything larger is forged.
ANSWER_BYTES = 1 << 20

WORKER_STATUSES = ("ok", "error", "invalid", "crash")
# Matched in lower-cased text: an exception the worker describes, or the worker's stderr.
OUT_OF_MEMORY_MARKERS = ("memoryerror", "std::bad_alloc", "can't allocate memory", "cannot allocate memory",
                         "out of memory", "not enough memory")

# How far a worker is confined: by namespaces of its own (no network, read-only files but
# its work folder, no home folder, only its own processes), or only to its own process.
NAMESPACES, PROCESS = "namespaces", "process"
CONFINEMENTS = (NAMESPACES, PROCESS)

# The worker's end of its turn channel (a stream socket), beside stdin, stdout and stderr.
TURN_FD = 3
# A turn makes at most this many calls: a near-free candidate's turn stops at a few
# milliseconds of microsecond calls.
MAX_CALLS_PER_TURN = 1000

# What `rebalance_experts` returns, in order; one array of each per window.
PLACEMENT_ARRAYS = ("phy2log", "log2phy", "logcnt")


class ConfinementRequest(TypedDict):
    """What the parent asks of the zygote: `confinement`, one of CONFINEMENTS (`process`:
    do not even try namespaces, because of `reason`); with namespaces, the folders to
    `hide` (absolute paths) and those to `keep` visible inside them, read-only, beside the
    Python environment and the harness, which the zygote adds itself."""

    confinement: str
    reason: str
    hide: list[str]
    keep: list[str]


class ZygoteReady(TypedDict):
    """The zygote's first message, once it has imported numpy, torch and the worker:
    `ready` is true, and `confinement` is what every worker it forks gets (`reason` says
    why it is not `namespaces`)."""

    ready: bool
    confinement: str
    reason: str


def zygote_command(control_fd: int, confinement: ConfinementRequest) -> list[str]:
    """The command line that starts the warm zygote on the control socket `control_fd`."""
    return [sys.executable, "-m", ZYGOTE_MODULE, str(control_fd), json.dumps(confinement)]


@dataclass(frozen=True)
class WorkerSettings:
    """request.json: the settings the worker runs the candidate with.

    `topology` holds num_replicas, num_groups, num_nodes and num_gpus; `timing` holds
    TimingConfig's fields (warmup, min_samples, max_samples, min_time_s, ...).
    `placements`: keep what the placement pass returns (placements.npy); a worker that is
    only timed (the reference beside a candidate, whose placements are stored already)
    makes the same calls and keeps nothing."""

    topology: dict[str, int]
    device: str
    threads: int
    timing: dict[str, float]
    memory_mb: int
    placements: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        return cls(**json.loads(text))


class Answer(TypedDict):
    """answer.json, whatever happened: `status` is one of WORKER_STATUSES; `error` is
    empty when it is `ok` and says what went wrong otherwise."""

    status: str
    error: str


class OkAnswer(Answer):
    """answer.json when the candidate ran: timings and facts of the run. The parent checks
    every field's JSON type, so a field added here cannot be missing from a forged answer."""

    runtime_samples_s: list[float]  # one per turn: the mean time of its calls; every window at least once
    calls_per_turn: int  # the calls each turn made
    input_changed: list[bool]  # per window of the placement pass (none without one): the call wrote into its weights
    nondeterministic: bool  # a timed call returned another phy2log than the first call
    threads: int
    device_name: str
    cuda_version: str
    peak_device_memory_bytes: int


# Each field of an `ok` answer with its JSON type (list, bool, int, str).
OK_ANSWER_FIELDS: dict[str, type] = {
    name: get_origin(hint) or hint for name, hint in get_type_hints(OkAnswer).items()
}


def placement_key(array: str, window: int) -> str:
    """The key of one of PLACEMENT_ARRAYS for one window, as the parent holds them: `phy2log_0`."""
    return f"{array}_{window}"


def max_placement_elements(layers: int, experts: int, num_replicas: int) -> int:
    """The most elements a returned array may hold: no legal array is larger than
    log2phy with one column per slot."""
    return layers * experts * num_replicas


def mentions_out_of_memory(text: str) -> bool:
    """Whether `text` (an exception described, a stderr tail) says memory ran out."""
    lowered = text.lower()
    return any(marker in lowered for marker in OUT_OF_MEMORY_MARKERS)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how long it was."""
    return f"{text[:limit]}... ({len(text)} characters)" if len(text) > limit else text


class Turns:
    """The turn channel between the parent and one worker, so that the parent can time
    two workers (a candidate and the reference) in alternation, turn by turn, on the same
    window: the worker says it is `ready` after its warm-up, then the parent `grant`s one
    turn on window t at a time and the worker says `done` with the mean time of the turn's
    calls (the parent decides from these when it has timed enough); `stop` ends the
    timing. Each message is tiny; a worker that fails closes the channel by exiting."""

    _READY, _WINDOW, _DONE = b"R", struct.Struct("<i"), struct.Struct("<cd")

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel

    def _receive(self, size: int, timeout_s: float | None) -> bytes:
        """`size` bytes, or fewer if the other side closed, stopped or ran out of time."""
        self.channel.settimeout(timeout_s)
        data = b""
        try:
            while len(data) < size:
                chunk = self.channel.recv(size - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError:  # a timeout, or a channel the other side broke
            pass
        return data

    # The worker's side.
    def ready(self) -> None:
        self.channel.sendall(self._READY)

    def next_window(self) -> int | None:
        """The window of the next timed call; None when the timing is over."""
        data = self._receive(self._WINDOW.size, None)
        window = self._WINDOW.unpack(data)[0] if len(data) == self._WINDOW.size else -1
        return window if window >= 0 else None

    def done(self, sample_s: float) -> None:
        """The turn's calls are made; they took `sample_s` seconds each, on average."""
        self.channel.sendall(self._DONE.pack(b"D", sample_s))

    # The parent's side.
    def wait_ready(self, timeout_s: float) -> bool:
        return self._receive(1, timeout_s) == self._READY

    def grant(self, window: int, timeout_s: float) -> float | None:
        """Give the worker a turn on `window`: the mean seconds per call it says the turn's
        calls took, None if it did not say so in time."""
        try:
            self.channel.sendall(self._WINDOW.pack(window))
        except OSError:
            return None
        data = self._receive(self._DONE.size, timeout_s)
        if len(data) != self._DONE.size:
            return None
        tag, sample_s = self._DONE.unpack(data)
        return sample_s if tag == b"D" else None

    def stop(self) -> None:
        try:
            self.channel.sendall(self._WINDOW.pack(-1))
        except OSError:
            pass  # the worker is gone already
