"""The warm zygote: a long-lived process that imports numpy, torch and the worker once and
forks one fresh worker per evaluation (`python -m harness.zygote FD`).

Started by the parent (`harness.sandbox`) with an already scrubbed environment (so no
child can read the user's variables back from `/proc/self/environ`), in a session of its
own, with single-threaded numerics libraries: importing torch and numpy then starts no
thread and initialises no CUDA, so a fork is as safe as a fresh start. Each child
initialises what it uses (CUDA included) after the fork, exactly as a fresh process would.

Protocol, over the SOCK_SEQPACKET socket FD: the zygote sends `ready` once it has
imported everything; each request is one JSON message (`workdir`, `env`) with
descriptors attached: a stream socket for this evaluation, then those the child gets as
its descriptors 1, 2, ... (stdout, stderr and the worker's turn channel). On that
stream socket the zygote answers `{"pid": N}` at the fork and `{"returncode": R}` once
the child is reaped (R negative for a signal, as subprocess reports it). The parent
times the child out and kills its process group itself.

What a child gets before the candidate's code is read: a new session (its own process
group), death with the zygote (PR_SET_PDEATHSIG), stdin from /dev/null and the descriptors
sent with the request, no other, the work folder as its cwd, the evaluation's environment, fresh
random seeds; then `harness.worker.serve`. Each child is a child subreaper, and so is
the zygote: a descendant the candidate detaches (double fork, new session, cleared
environment) is re-parented to the child while it lives and to the zygote after, which
kills every such stray before it reports the child's return code. So no process the
candidate started outlives its evaluation's report, whatever it did to hide.
When the parent goes away (the socket closes), the zygote kills every child and exits.

The parent's side is `spawn`: it starts the zygote on first use (one per harness
process, shared by its threads), and again should it die (a candidate can kill its
parent: the evaluations in flight then end as crashes, and the next ones get a new zygote).
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import protocol

__all__ = ["WarmChild", "main", "spawn"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_MAX_CHILD_FDS = 8
_LIBC = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------- the parent's side

_START_TIMEOUT_S = 300.0  # the zygote's imports on a loaded machine; a fresh CUDA torch is slow
_REAP_TIMEOUT_S = 30.0  # from a SIGKILL to the zygote's report: the kernel, then a sweep
_LOCK = threading.Lock()
_CURRENT: _Zygote | None = None


class _Zygote:
    """One running zygote and the control socket to it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.home = tempfile.TemporaryDirectory(prefix="eplb-zygote-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                protocol.zygote_command(theirs.fileno()), pass_fds=(theirs.fileno(),),
                env={**env, "HOME": self.home.name, "TMPDIR": self.home.name}, cwd=self.home.name,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        finally:
            theirs.close()
        self.control = ours
        self.send_lock = threading.Lock()
        ours.settimeout(_START_TIMEOUT_S)
        try:
            ready = ours.recv(64)
        except OSError:
            ready = b""
        ours.settimeout(None)
        if ready != protocol.ZYGOTE_READY:
            self.process.kill()
            _, stderr = self.process.communicate()
            raise RuntimeError(f"the warm zygote did not start: {stderr.decode(errors='replace')[-2000:]}")
        self.process.stderr.close()  # it writes nothing once ready; its children have pipes of their own
        # At exit, let it kill what it still holds before this process is gone, so that
        # nothing of an evaluation outlives the command that ran it.
        atexit.register(self.close)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.control.close()
        try:
            self.process.wait(timeout=_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.home.cleanup()


@dataclass
class WarmChild:
    """A worker forked by the zygote: its pid (also its process group) and the socket on
    which the zygote reports it."""

    pid: int
    reply: socket.socket
    _pending: bytes = b""

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
        return -signal.SIGKILL if message is None else int(message["returncode"])

    def reap(self) -> int:
        """The return code after the process group was killed."""
        try:
            return self.wait(_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return -signal.SIGKILL


def _zygote(zygote_env: dict[str, str], replace_dead: _Zygote | None = None) -> _Zygote:
    global _CURRENT
    with _LOCK:
        if _CURRENT is None or _CURRENT is replace_dead or not _CURRENT.alive():
            _CURRENT = _Zygote(zygote_env)
        return _CURRENT


def _fork(zygote: _Zygote, message: bytes, child_fds: Sequence[int]) -> WarmChild:
    ours, theirs = socket.socketpair()
    child = WarmChild(0, ours)
    try:
        with zygote.send_lock:
            socket.send_fds(zygote.control, [message], [theirs.fileno(), *child_fds])
        theirs.close()
        answer = child._message(_REAP_TIMEOUT_S)
        if answer is None:
            raise ConnectionError("the zygote closed the evaluation's socket")
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    child.pid = int(answer["pid"])
    return child


def spawn(workdir: str, env: dict[str, str], zygote_env: dict[str, str], child_fds: Sequence[int]) -> WarmChild:
    """Fork a worker on the evaluation folder `workdir` with environment `env`; `child_fds`
    become its descriptors 1, 2, ... (the caller closes its copies). The zygote is started
    with `zygote_env` when none runs, and once more if it fails to answer."""
    message = json.dumps({"workdir": workdir, "env": env}).encode()
    zygote = _zygote(zygote_env)
    try:
        return _fork(zygote, message, child_fds)
    except OSError:
        zygote.process.kill()  # dead or stuck
        return _fork(_zygote(zygote_env, replace_dead=zygote), message, child_fds)


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


def _sweep(roots: dict[int, socket.socket]) -> None:
    """Kill and reap every child of the zygote that is not a live evaluation: the strays
    re-parented here when the worker that held them ended. Killing one re-parents its own
    children here, hence the rounds."""
    me = os.getpid()
    for _ in range(100):
        strays = [pid for pid in _children(me) if pid not in roots]
        if not strays:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _reap(roots: dict[int, socket.socket]) -> None:
    """Report every child that ended, after sweeping the strays it left."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        reply = roots.pop(pid, None)
        if reply is None:
            continue  # a stray that died on its own
        _sweep(roots)
        try:
            reply.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
        except OSError:
            pass  # the parent stopped waiting
        reply.close()


def _child(zygote_pid: int, request: dict, child_fds: list[int]) -> None:
    """In the forked child: isolate, then run the worker; never returns."""
    status = 70
    try:
        os.setsid()
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != zygote_pid:  # the zygote died before prctl
            os._exit(status)
        _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        # Each moved above every target first, so that no dup2 overwrites one still to come.
        limit = os.sysconf("SC_OPEN_MAX")
        high = [os.dup2(fd, limit - 1 - index) for index, fd in enumerate(child_fds)]
        os.dup2(null, 0)
        for target, fd in enumerate(high, start=1):
            os.dup2(fd, target)
        os.closerange(len(high) + 1, limit)  # the control socket, other evaluations' pipes and sockets
        os.chdir(request["workdir"])
        os.environ.clear()
        os.environ.update(request["env"])
        import random

        import numpy as np

        random.seed()
        np.random.seed()
        from harness import worker

        worker.serve(Path(request["workdir"]))
    finally:
        os._exit(status)  # serve() exits by itself; this is for a failure before it


def main(control_fd: int) -> None:
    control = socket.socket(fileno=control_fd)
    import numpy  # noqa: F401  (the point of the zygote: imported once, before any fork)
    import torch  # noqa: F401

    from harness import worker  # noqa: F401

    # What the imports made lives as long as the zygote: out of every child's collections
    # (a full collection would walk all of torch), and its pages stay shared after a fork.
    gc.freeze()
    _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    roots: dict[int, socket.socket] = {}
    control.send(protocol.ZYGOTE_READY)
    while True:
        readable, _, _ = select.select([control, wake_read], [], [])
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap(roots)
        if control not in readable:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, _MAX_CHILD_FDS + 1)
        except OSError:
            message, fds = b"", []
        if not message or not fds:
            break
        reply_fd, *child_fds = fds
        reply = socket.socket(fileno=reply_fd)
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(zygote_pid, json.loads(message), child_fds)
        for fd in child_fds:
            os.close(fd)
        roots[pid] = reply
        try:
            reply.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError:
            pass
    # The parent is gone: nothing of ours may outlive it.
    for pid in list(roots):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    roots.clear()
    _sweep(roots)


if __name__ == "__main__":
    main(int(sys.argv[1]))
