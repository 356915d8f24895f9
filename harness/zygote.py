"""The warm zygote: a long-lived process that imports numpy, torch and the worker once and
forks one fresh worker per evaluation (`python -m harness.zygote FD`).

Started by the parent (`harness.sandbox`) with an already scrubbed environment (so no
child can read the user's variables back from `/proc/self/environ`), in a session of its
own, with single-threaded numerics libraries: importing torch and numpy then starts no
thread and initialises no CUDA, so a fork is as safe as a fresh start. Each child
initialises what it uses (CUDA included) after the fork, exactly as a fresh process would.

Spares: while no worker runs and no request waits, the zygote forks up to two children
and has them confined ahead of their evaluations (a paired evaluation takes two), each in
a new work folder of its own, so that neither the fork nor the namespaces (about 20 ms
together) lie on an evaluation's path; a request finding none gets a child forked on the
spot. A spare runs nothing of an evaluation before the parent starts it.

Protocol, over the SOCK_SEQPACKET socket FD: the zygote is started with a
`protocol.ConfinementRequest` as second argument and sends a `protocol.ZygoteReady` once
it has imported everything and tried the namespaces in a probe child; each request is a
message with one descriptor attached, a stream socket for this evaluation, on which the
zygote answers with a spare (forked on the spot when none is left): `{"pid": N,
"workdir": DIR}` with the spare's *go* socket attached. The parent writes the
evaluation's files into DIR and sends on the go socket `{"env": ...}` with the
descriptors the worker gets as 1, 2, ... (stdout, stderr and its turn channel); the
worker then runs. Later the zygote sends `{"returncode": R}` on the evaluation's socket
once the child ended (R negative for a signal, as subprocess reports it): once it is
reaped, or with namespaces as soon as its keeper says the namespace is empty, with
`"unconfined": WHY` if it could not be confined and ran nothing. The parent times the
child out and kills its process group itself.

What a child gets before the candidate's code is read: a new session (its own process
group), death with the zygote (PR_SET_PDEATHSIG), stdin from /dev/null and no descriptor
but its go socket; with namespaces, `harness.confine.enter` (the child becomes their
keeper, and the worker its child inside them); then, from the go socket, the
descriptors sent, no other; the work folder as its cwd, the evaluation's environment,
fresh random seeds; then `harness.worker.serve`. The child and the zygote are child
subreapers: a descendant the candidate detaches (double fork, new session, cleared
environment) is re-parented to the child while it lives and to the zygote after, which
kills every such stray before it reports the child's return code (with namespaces, the
kernel kills them all with the namespace's init first). So no process the candidate
started outlives its evaluation's report, whatever it did to hide. When the parent goes
away (the socket closes), the zygote kills every child, spares included, and exits.

The parent's side is `reserve` (and `WarmChild.start`): it starts the zygote on first
use (one per harness process, shared by its threads; `prestart` starts it ahead), and
again should it die (an unconfined candidate can kill it: the evaluations in flight then
end as crashes, the next get a new zygote).
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from harness import confine, protocol
from harness.errors import HarnessError

__all__ = ["WarmChild", "confinement", "main", "prestart", "reserve"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_MAX_CHILD_FDS = 8
_SPARES = 2  # children kept forked and confined ahead: both workers of a paired evaluation
_LIBC = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------- the parent's side

_START_TIMEOUT_S = 300.0  # the zygote's imports on a loaded machine; a fresh CUDA torch is slow
_REAP_TIMEOUT_S = 30.0  # from a SIGKILL to the zygote's report: the kernel, then a sweep
# glibc's heap in transparent huge pages where the kernel allows them (madvise): the
# zygote's 85 MB of heap after its imports then costs a fork, and each child's exit, a
# few hundred page-table entries instead of tens of thousands (a child's exit 3.8 -> 1.5
# ms here). Read by glibc when the zygote starts; its children's environments are their own.
_TUNABLES = "glibc.malloc.hugetlb=1"
_LOCK = threading.Lock()
_CURRENT: _Zygote | None = None
_TOLD_UNCONFINED = False  # whether this process said that its candidates run without namespaces


class _Zygote:
    """One running zygote, the control socket to it, and the confinement it gives (known
    once `wait_ready` returned)."""

    def __init__(self, env: dict[str, str], request: protocol.ConfinementRequest) -> None:
        self.home = tempfile.TemporaryDirectory(prefix="eplb-zygote-", ignore_cleanup_errors=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                protocol.zygote_command(theirs.fileno(), request), pass_fds=(theirs.fileno(),),
                env={**env, "HOME": self.home.name, "TMPDIR": self.home.name, "GLIBC_TUNABLES": _TUNABLES},
                cwd=self.home.name,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        finally:
            theirs.close()
        self.control = ours
        self.send_lock = threading.Lock()
        self.ready = False
        self.confinement, self.reason = protocol.PROCESS, ""
        # At exit, let it kill what it still holds before this process is gone, so that
        # nothing of an evaluation outlives the command that ran it.
        atexit.register(self.close)

    def wait_ready(self) -> None:
        """Wait, once, until it has imported everything and tried the namespaces;
        RuntimeError if it did not start."""
        if self.ready:
            return
        self.control.settimeout(_START_TIMEOUT_S)
        try:
            ready: protocol.ZygoteReady = json.loads(self.control.recv(1 << 16) or b"{}")
        except (OSError, ValueError):
            ready = {}
        self.control.settimeout(None)
        if ready.get("ready") is not True:
            self.process.kill()
            _, stderr = self.process.communicate()
            raise RuntimeError(f"the warm zygote did not start: {stderr.decode(errors='replace')[-2000:]}")
        self.process.stderr.close()  # it writes nothing once ready; its children have pipes of their own
        self.confinement, self.reason = ready["confinement"], ready["reason"]
        self.ready = True
        global _TOLD_UNCONFINED
        if self.confinement != protocol.NAMESPACES and not _TOLD_UNCONFINED:  # said once per process
            _TOLD_UNCONFINED = True
            print(f"eplb-harness: candidates run without namespaces ({self.reason}): each is confined to its "
                  "own process only, and can reach the network and read your files", file=sys.stderr)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.control.close()
        if not self.ready:  # still importing (a command that ended before its first evaluation)
            self.process.kill()
        try:
            self.process.wait(timeout=_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.home.cleanup()


@dataclass
class WarmChild:
    """A worker forked by the zygote and confined ahead of its evaluation, in its work
    folder `workdir`: its pid (also its process group), the socket on which the zygote
    reports it, and its confinement (one of protocol.CONFINEMENTS). It runs nothing
    before `start`. `unconfined` says why, when a child that was to be confined by
    namespaces could not be and ran nothing (known once `wait` returned)."""

    pid: int
    reply: socket.socket
    workdir: str = ""
    confinement: str = protocol.PROCESS
    unconfined: str = ""
    go: socket.socket | None = None
    _pending: bytes = b""

    def start(self, env: dict[str, str], child_fds: Sequence[int]) -> None:
        """Run the worker on its folder, as filled by now, with environment `env`;
        `child_fds` become its descriptors 1, 2, ... (the caller closes its copies). A
        child that died meanwhile is reported on `reply` like any other."""
        try:
            socket.send_fds(self.go, [json.dumps({"env": env}).encode()], list(child_fds))
        except OSError:
            pass
        finally:
            self.go.close()

    def _message(self, timeout_s: float | None) -> dict | None:
        """The zygote's next message on this socket; None if the zygote went away."""
        self.reply.settimeout(timeout_s)
        while b"\n" not in self._pending:
            chunk = self.reply.recv(4096)
            if not chunk:
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def wait(self, timeout_s: float | None = None) -> int:
        """The child's return code (negative for a signal); subprocess.TimeoutExpired if it
        runs past `timeout_s`. A zygote that died reports SIGKILL: its children die with it."""
        try:
            message = self._message(timeout_s)
        except (TimeoutError, BlockingIOError):  # BlockingIOError: no time was left at all
            raise subprocess.TimeoutExpired(f"warm worker {self.pid}", timeout_s) from None
        self.reply.close()
        if message is None:
            return -signal.SIGKILL
        self.unconfined = str(message.get("unconfined", ""))
        return int(message["returncode"])

    def reap(self) -> int:
        """The return code after the process group was killed."""
        try:
            return self.wait(_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return -signal.SIGKILL


def _zygote(zygote_env: dict[str, str], request: protocol.ConfinementRequest,
            replace_dead: _Zygote | None = None) -> _Zygote:
    """The running zygote, ready; started with `zygote_env` and `request` if none runs (or
    it is `replace_dead`)."""
    with _LOCK:
        zygote = _started(zygote_env, request, replace_dead)
        zygote.wait_ready()
        return zygote


def _started(zygote_env: dict[str, str], request: protocol.ConfinementRequest,
             replace_dead: _Zygote | None = None) -> _Zygote:
    global _CURRENT
    if _CURRENT is None or _CURRENT is replace_dead or not _CURRENT.alive():
        _CURRENT = _Zygote(zygote_env, request)
    return _CURRENT


def prestart(zygote_env: dict[str, str], request: protocol.ConfinementRequest) -> None:
    """Start the zygote if none runs, without waiting for it: its imports (1.5-3 s) then
    overlap what this process does before its first evaluation."""
    with _LOCK:
        _started(zygote_env, request)


def confinement(zygote_env: dict[str, str], request: protocol.ConfinementRequest) -> tuple[str, str]:
    """The confinement the zygote's workers get, and why it is not namespaces; the zygote
    is started with `zygote_env` and `request` when none runs."""
    zygote = _zygote(zygote_env, request)
    return zygote.confinement, zygote.reason


def _reserve(zygote: _Zygote, required: bool) -> WarmChild:
    if required and zygote.confinement != protocol.NAMESPACES:
        raise HarnessError(f"candidates cannot be confined by namespaces here ({zygote.reason}), "
                           "and confinement is required")
    ours, theirs = socket.socketpair()
    child = WarmChild(0, ours, confinement=zygote.confinement)
    try:
        with zygote.send_lock:
            socket.send_fds(zygote.control, [b"{}"], [theirs.fileno()])
        theirs.close()
        ours.settimeout(_REAP_TIMEOUT_S)
        child._pending, fds, _, _ = socket.recv_fds(ours, 4096, 1)
        if not fds:
            raise ConnectionError("the zygote closed the evaluation's socket")
        child.go = socket.socket(fileno=fds[0])
        answer = child._message(_REAP_TIMEOUT_S)  # its first line came with the descriptor, or comes next
        if answer is None:
            raise ConnectionError("the zygote closed the evaluation's socket")
    except OSError:
        ours.close()
        if child.go is not None:
            child.go.close()
        raise
    finally:
        theirs.close()
    child.pid, child.workdir = int(answer["pid"]), answer["workdir"]
    return child


def reserve(zygote_env: dict[str, str], request: protocol.ConfinementRequest, required: bool = False) -> WarmChild:
    """A worker forked and confined, waiting in a work folder of its own for `start`.
    The zygote is started with `zygote_env` and the confinement `request` when none runs,
    and once more if it fails to answer. `required`: HarnessError rather than a worker
    without namespaces."""
    zygote = _zygote(zygote_env, request)
    try:
        return _reserve(zygote, required)
    except OSError:
        zygote.process.kill()  # dead or stuck
        return _reserve(_zygote(zygote_env, request, replace_dead=zygote), required)


# ---------------------------------------------------------------------------- the zygote's side


def _children(pid: int) -> list[int]:
    """The live or unreaped children of `pid`, from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(name))
    return found


@dataclass
class _Root:
    """An evaluation's child: the socket to report it on and, with namespaces, its report
    pipe (`confine.read_report`) with what was read of it so far."""

    reply: socket.socket
    report: int | None
    said: bytes = b""

    def hear(self) -> tuple[str, int | None]:
        """Read what the report pipe holds now (closed at its end); `confine.read_report` of
        all it said."""
        if self.report is not None:
            said, ended = _hear(self.report)
            self.said += said
            if ended:
                os.close(self.report)
                self.report = None
        return confine.read_report(self.said)


def _sweep(roots: dict[int, _Root], spares: dict[int, _Spare]) -> None:
    """Kill and reap every child of the zygote that is not a live evaluation nor a spare:
    the strays re-parented here when the worker that held them ended. Killing one
    re-parents its own children here, hence the rounds."""
    me = os.getpid()
    for _ in range(100):
        strays = {pid for pid in _children(me) if pid not in roots and not _waiting(spares.get(pid))}
        if not strays:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Reaped in any order: a PID namespace's init ends only once the namespace's other
        # processes are reaped, and the keeper's worker, adopted here, may be one of them.
        while strays:
            for pid in list(strays):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        strays.discard(pid)
                except ChildProcessError:
                    strays.discard(pid)
            time.sleep(0.001 if strays else 0)


def _hear(fd: int) -> tuple[bytes, bool]:
    """What the pipe `fd` holds now, without waiting, and whether it reached its end."""
    os.set_blocking(fd, False)
    said = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:  # a writer is still there
            return said, False
        if not chunk:
            return said, True
        said += chunk


def _why_unconfined(fd: int | None) -> str:
    """Why a child that ended could not be confined, as it said on its report pipe `fd`
    ('' if it was, or without namespaces); closes `fd`."""
    if fd is None:
        return ""
    try:
        return confine.read_report(_hear(fd)[0])[0]
    finally:
        os.close(fd)


def _ended(status: int, why: str) -> dict:
    """A child's report: the return code of wait status `status`, and why it could not be
    confined if it said so."""
    report = {"returncode": os.waitstatus_to_exitcode(status)}
    if why:
        report["unconfined"] = why
    return report


def _tell(root: _Root, report: dict) -> None:
    """Send an evaluation's child's report to the parent; forget the child."""
    try:
        root.reply.sendall(json.dumps(report).encode() + b"\n")
    except OSError:
        pass  # the parent stopped waiting
    root.reply.close()
    if root.report is not None:
        os.close(root.report)


def _waiting(spare: _Spare | None) -> bool:
    return spare is not None and spare.ended is None


def _reap(roots: dict[int, _Root], spares: dict[int, _Spare]) -> None:
    """Report every child that ended, after sweeping the strays it may have left. A spare
    that ended before its evaluation is kept with its report when it could not be
    confined (the request that takes it is told, and no spare is forked again meanwhile),
    and forgotten otherwise."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if _waiting(spare := spares.get(pid)):
            spare.ended = _ended(status, _why_unconfined(spare.report))
            if "unconfined" not in spare.ended:
                del spares[pid]
                spare.go.close()
                shutil.rmtree(spare.workdir, ignore_errors=True)
            continue
        root = roots.pop(pid, None)
        if root is None:
            continue  # a stray that died on its own, or a keeper whose evaluation was reported
        why, emptied = root.hear()
        if emptied is None:  # no namespaces, or its keeper was killed: its strays may be ours now
            _sweep(roots, spares)
        _tell(root, _ended(status, why))


def _hear_keepers(roots: dict[int, _Root], readable: Sequence[object]) -> None:
    """Report every evaluation whose keeper said, on a report pipe in `readable`, that its
    namespace is empty: nothing of the candidate's is left, though the keeper itself may
    still be exiting (reaped later, as a child no longer reported)."""
    for pid in [pid for pid, root in roots.items() if root.report in readable]:
        why, emptied = roots[pid].hear()
        if emptied is not None:
            _tell(roots.pop(pid), _ended(emptied, why))


def _detach(zygote_pid: int) -> None:
    """In the forked child: a session of its own, death with the zygote, and a child
    subreaper of its own."""
    os.setsid()
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote_pid:  # the zygote died before prctl
        os._exit(70)
    _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _arrange(child_fds: list[int], report_fd: int | None) -> int | None:
    """Only the descriptors given: /dev/null, then `child_fds` as 1, 2, ..., then
    `report_fd` (not inherited by programs it starts), whose new number it returns."""
    null = os.open(os.devnull, os.O_RDONLY)
    # Each moved above every target first, so that no dup2 overwrites one still to come.
    limit = os.sysconf("SC_OPEN_MAX")
    high = [os.dup2(fd, limit - 1 - index) for index, fd in enumerate(child_fds)]
    report = None if report_fd is None else os.dup2(report_fd, limit - 1 - len(high), inheritable=False)
    os.dup2(null, 0)
    for target, fd in enumerate(high, start=1):
        os.dup2(fd, target)
    if report is not None:
        report = os.dup2(report, len(high) + 1, inheritable=False)
    os.closerange(len(high) + 1 + (report is not None), limit)  # the control socket, other evaluations' pipes
    return report


def _child(zygote_pid: int, workdir: str, go_fd: int | None, report_fd: int | None,
           plan: confine.Plan | None) -> NoReturn:
    """In the forked child: detach and confine by `plan` (with namespaces) to `workdir`
    ahead of any evaluation, then wait on `go_fd` for one (`_Spare`): its environment,
    then the descriptors that become 1, 2, ... (stdout, stderr, the turn channel); then
    run the worker. Without `go_fd` (the probe), end once confined. Never returns."""
    status = 70
    try:
        _detach(zygote_pid)
        report = _arrange([] if go_fd is None else [go_fd], report_fd)
        if plan is not None:
            try:
                confine.enter(plan, workdir, report)  # returns in the worker, inside the namespaces
            except BaseException as exc:  # no NUL: it would end the text (confine.read_report)
                os.write(report, confine.describe(exc).replace("\0", " ").encode(errors="replace")[:2000])
                os._exit(status)
            os.close(report)
        if go_fd is None:
            os._exit(0)
        import random

        import numpy as np

        from harness import worker

        random.seed()
        np.random.seed()
        go = socket.socket(fileno=1)
        message, fds, _, _ = socket.recv_fds(go, 1 << 20, _MAX_CHILD_FDS)
        go.detach()
        if not message:  # the parent let the evaluation go
            os._exit(status)
        _arrange(fds, None)  # over the go socket's descriptor too
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(json.loads(message)["env"])
        tempfile.tempdir = None  # the zygote's own, cached by its imports; this worker's is in its env
        worker.serve(Path(workdir))
    finally:
        os._exit(status)  # serve() exits by itself; this is for a failure before it


@dataclass
class _Spare:
    """A child forked and confined ahead of its evaluation, waiting on `go` (the zygote's
    end, handed to the parent) in its own work folder."""

    pid: int
    go: socket.socket
    workdir: str
    report: int | None  # the read end of its confinement report, as _Root.unconfined
    ended: dict | None = None  # its report, once it ended before an evaluation took it


def _spare(plan: confine.Plan | None) -> _Spare:
    """Fork a spare child, in a new work folder of this zygote's temporary folder."""
    workdir = tempfile.mkdtemp(prefix="eplb-eval-")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    report_read, report_write = os.pipe() if plan is not None else (None, None)
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        ours.close()
        _child(zygote_pid, workdir, theirs.fileno(), report_write, plan)
    theirs.close()
    if report_write is not None:
        os.close(report_write)
    return _Spare(pid, ours, workdir, report_read)


def _confinement(request: protocol.ConfinementRequest) -> tuple[str, str, confine.Plan | None]:
    """(confinement, why not namespaces, plan): namespaces when a probe child can be
    confined by the plan, end to end, here."""
    if request["confinement"] != protocol.NAMESPACES:
        return protocol.PROCESS, request["reason"], None
    try:
        plan = confine.plan(request["hide"], [*request["keep"], *confine.python_folders()], shutil.which("cat"))
    except confine.Unavailable as exc:
        return protocol.PROCESS, str(exc), None
    report_read, report_write = os.pipe()
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(zygote_pid, os.getcwd(), None, report_write, plan)
    os.close(report_write)
    _, status = os.waitpid(pid, 0)
    why = _why_unconfined(report_read)
    code = os.waitstatus_to_exitcode(status)
    if why or code:
        return protocol.PROCESS, why or f"the confined probe ended with {code}", None
    return protocol.NAMESPACES, "", plan


def main(control_fd: int, request: protocol.ConfinementRequest) -> NoReturn:
    control = socket.socket(fileno=control_fd)
    import numpy  # noqa: F401  (the point of the zygote: imported once, before any fork)
    import torch  # noqa: F401

    from harness import worker  # noqa: F401

    # What the imports made lives as long as the zygote: out of every child's collections
    # (a full collection would walk all of torch), and its pages stay shared after a fork.
    gc.freeze()
    mode, reason, plan = _confinement(request)
    _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    roots: dict[int, _Root] = {}
    spares: dict[int, _Spare] = {}
    control.send(json.dumps(protocol.ZygoteReady(ready=True, confinement=mode, reason=reason)).encode())
    while True:
        # Spares are forked while no worker runs and no request waits: off the evaluations'
        # path, and never beside a timed worker.
        idle = 0 if len(spares) < _SPARES and not roots else None
        keepers = [root.report for root in roots.values() if root.report is not None]
        readable, _, _ = select.select([control, wake_read, *keepers], [], [], idle)
        if not readable:
            spare = _spare(plan)
            spares[spare.pid] = spare
            continue
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap(roots, spares)
        _hear_keepers(roots, readable)
        if control not in readable:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
        except OSError:
            message, fds = b"", []
        if not message or not fds:
            break
        reply = socket.socket(fileno=fds[0])
        spare = spares.pop(next(iter(spares))) if spares else _spare(plan)
        lines = [{"pid": spare.pid, "workdir": spare.workdir}, *([spare.ended] if spare.ended else [])]
        try:
            socket.send_fds(reply, [b"".join(json.dumps(line).encode() + b"\n" for line in lines)],
                            [spare.go.fileno()])
        except OSError:
            pass  # the parent stopped waiting; the child ends when its go socket closes
        spare.go.close()
        if spare.ended:
            reply.close()
        else:
            roots[spare.pid] = _Root(reply, spare.report)
    # The parent is gone: nothing of ours may outlive it.
    for pid in [*roots, *(pid for pid, spare in spares.items() if _waiting(spare))]:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    roots.clear()
    spares.clear()
    _sweep(roots, spares)
    # Not the interpreter's teardown of torch (140 ms, which the parent's exit waits for):
    # nothing is left to flush or clean (the parent removes this zygote's folder).
    os._exit(0)

if __name__ == "__main__":
    main(int(sys.argv[1]), json.loads(sys.argv[2]))
