"""Confinement by Linux namespaces: what a candidate's process can reach (Linux, unprivileged).

`enter` is called by the zygote's freshly forked child (`harness.zygote`), before the
candidate's code is read. A new user namespace, in which the user's own uid and gid map
to themselves, owns new mount, network, PID and IPC namespaces:

- network: the namespace's only interface, its loopback, is down, so every connection
  fails at once (ENETUNREACH); the host's abstract Unix sockets are another namespace's.
- files: every mount is read-only but the evaluation's work folder; each folder of
  `Plan.hidden` (the home folders, the temporary folders, /run: where secrets and the
  sockets of the user's daemons live) is an empty read-only folder, with only what the
  worker needs bound back read-only (`Plan.binds`: the Python environment, the harness);
  /dev holds only the harmless devices and the GPUs' (`Plan.devices`): no disk, no
  terminal, no camera or microphone.
- processes: a PID namespace of its own with a /proc of its own, so the candidate sees
  and signals only its own processes: not the machine's, whose command lines /proc shows
  to anyone, nor the user's (`kill(-1)` would end every one, the harness included).
  Tracing them, or reading their memory, environment or files through /proc, the user
  namespace already forbids (the kernel allows it only within one's own namespace).
- capabilities: all dropped for good (bounding set emptied, no_new_privs) before the
  worker goes on, so the candidate cannot undo a mount; a namespace it makes itself owns
  nothing of the above.

The parent asks for it (`request`: what to hide, from `harness.settings` and the
environment); the zygote makes a `plan` of it once, adding its own Python's folders, and
tries it end to end in a probe child; each evaluation's child then `enter`s it.

One evaluation's processes: the zygote's child, the *keeper* (the pid the parent knows,
leader of the process group the parent stops and kills), unshares, starts the
namespace's init (`cat` reading a pipe that only the keeper holds) and forks the
*worker*, which mounts, drops its capabilities and returns from `enter` to run the
candidate. The keeper waits for the worker, then lets the init go (the kernel then kills
whatever is left in the namespace), says on the report pipe that the namespace is empty
(the zygote reports the evaluation ended on that, without waiting for the keeper's own
exit) and ends as the worker ended: the same exit code or the same signal. The worker is
not the namespace's init, so signals reach it as usual.

Not confined here: CPU time and memory (the worker's RLIMIT_AS and the deadline cap
them, as before); the GPUs (their device files stay, so CUDA works); the kernel itself,
so a kernel exploit is out of scope.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import itertools
import os
import re
import resource
import signal
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from harness import protocol
from harness.errors import HarnessError
from harness.settings import CONFINEMENT_ENV, HIDDEN_FOLDERS, HIDE_ENV

__all__ = ["Plan", "Unavailable", "describe", "enter", "plan", "python_folders", "request"]

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_LIBC.unshare.argtypes = (ctypes.c_int,)

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
_CLONE_NEWPID, _CLONE_NEWNET = 0x20000000, 0x40000000
_NAMESPACES = _CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REMOUNT, _MS_NOSYMFOLLOW, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x20, 0x100, 0x1000, 0x4000, 0x40000
# Flags a remount must repeat: the kernel locks them on mounts inherited from the host.
_KEPT_FLAGS = {b"nosuid": _MS_NOSUID, b"nodev": _MS_NODEV, b"noexec": _MS_NOEXEC, b"nosymfollow": _MS_NOSYMFOLLOW}
_QUIET = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC

# What a confined worker's /dev holds: the harmless devices, the GPUs' (NVIDIA; AMD's
# kfd and dri), and the usual links to the process's own descriptors.
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/nvidia*", "/dev/kfd",
            "/dev/dri")
_DEVICE_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                 "stderr": "/proc/self/fd/2"}

_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 24, 38
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class Unavailable(Exception):
    """The namespaces cannot be made here (the kernel or a container forbids them), or a
    step of the confinement failed; the message names the step."""


@dataclass(frozen=True)
class Plan:
    """What a confined worker sees of the machine. `hidden`: folders replaced by empty
    read-only ones; `binds`: (target, source) folders bound back read-only into them, in
    mounting order; `devices`: the device files of its /dev; `init`: the program that
    serves as the namespace's init (`cat`)."""

    hidden: tuple[str, ...]
    binds: tuple[tuple[str, str], ...]
    devices: tuple[str, ...]
    init: str


def request() -> protocol.ConfinementRequest:
    """What the parent asks of the zygote: the confinement CONFINEMENT_ENV names
    (default: namespaces); to hide, the HIDDEN_FOLDERS, the user's home, the harness's
    temporary folder (every evaluation's work folder is in it) and the folders HIDE_ENV
    names; to keep, the CUDA and library folders the worker's environment names.
    HarnessError for a value the user got wrong."""
    wanted = os.environ.get(CONFINEMENT_ENV) or protocol.NAMESPACES
    if wanted not in protocol.CONFINEMENTS:
        raise HarnessError(f"{CONFINEMENT_ENV}={wanted}: expected one of {', '.join(protocol.CONFINEMENTS)}")
    named = [os.path.expanduser(path) for path in os.environ.get(HIDE_ENV, "").split(os.pathsep) if path]
    for path in named:
        if not os.path.isabs(path) or os.path.realpath(path) in ("/", "/proc", "/dev", "/sys"):
            raise HarnessError(f"{HIDE_ENV} names {path!r}: expected absolute folders other than /, /proc, /dev, /sys")
    keep = [os.environ.get("CUDA_HOME", ""), *os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)]
    return protocol.ConfinementRequest(
        confinement=wanted, reason=f"{CONFINEMENT_ENV}={wanted}" if wanted != protocol.NAMESPACES else "",
        hide=[*HIDDEN_FOLDERS, os.path.expanduser("~"), tempfile.gettempdir(), *named],
        keep=[path for path in keep if os.path.isabs(path)])


def python_folders() -> list[str]:
    """What this Python needs to run the worker: its prefixes and import path, with the
    harness package alone rather than the folder that holds it (a checkout, with its
    results and whatever else lies there), and without the working folder."""
    harness = Path(__file__).resolve().parent
    skipped = {"", os.getcwd(), str(harness.parent)}
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path} - skipped
    return [*sorted(found), str(harness)]


def _under(path: str, folders: Iterable[str]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def _depth(path: str) -> int:
    return path.rstrip("/").count("/")


def plan(hide: Sequence[str], keep: Sequence[str], init: str | None) -> Plan:
    """The plan that hides the existing folders of `hide` (absolute paths) and binds back
    each existing folder of `keep` found in one of them, where it is found: at its own
    path and at its resolved one, so that symbolic links into or within them still lead
    there. Unavailable when there is no `init` program."""
    if not init:
        raise Unavailable("no `cat` program on PATH to serve as the namespace's init")
    given = {os.path.abspath(path) for path in hide if os.path.isdir(path) and os.path.realpath(path) != "/"}
    hidden = sorted({os.path.realpath(path) for path in given}, key=lambda path: (_depth(path), path))
    hidden = [path for index, path in enumerate(hidden) if not _under(path, hidden[:index])]
    lexical = given | set(hidden)
    binds: list[tuple[str, str]] = []
    wanted = sorted({(target, os.path.realpath(path)) for path in keep if os.path.isdir(path)
                     for target in (os.path.abspath(path), os.path.realpath(path)) if _under(target, lexical)},
                    key=lambda bind: (_depth(bind[0]), bind))
    for target, source in wanted:
        # A bind is recursive: one inside another that shows the same files is redundant.
        if not any(_under(target, [outer]) and source == outer_source + target[len(outer):]
                   for outer, outer_source in binds):
            binds.append((target, source))
    devices = sorted({path for pattern in _DEVICES for path in glob.glob(pattern)})
    return Plan(tuple(hidden), tuple(binds), tuple(devices), init)


# ---------------------------------------------------------------------------- system calls


def describe(exc: BaseException) -> str:
    """Why a step of the confinement failed, in words: `mount /proc: Operation not permitted`."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f" ({exc.filename})" if exc.filename else "")
    return str(exc) or type(exc).__name__


def _check(result: int, step: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{step}: {os.strerror(number)}")


def _mount(source: bytes | None, target: bytes, kind: bytes | None, flags: int, data: bytes | None = None) -> None:
    _check(_LIBC.mount(source, target, kind, flags, data), f"mount {target.decode(errors='replace')}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def _unshare() -> None:
    """New namespaces, owned by a new user namespace in which this process has every
    capability and the user's uid and gid map to themselves."""
    uid, gid = os.geteuid(), os.getegid()
    _check(_LIBC.unshare(_NAMESPACES), "unshare")
    _write("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n")


def _mount_points() -> list[tuple[bytes, bytes]]:
    """(mount point, per-mount options) of every mount this process's namespace holds."""
    def unescape(field: bytes) -> bytes:
        return re.sub(rb"\\([0-7]{3})", lambda match: bytes([int(match[1], 8)]), field)

    with open("/proc/self/mountinfo", "rb") as file:
        return [(unescape(fields[4]), fields[5]) for fields in (line.split() for line in file)]


def _read_only_everywhere(writable: set[bytes]) -> None:
    """Remount every mount read-only, but those at `writable`. A mount point this process
    cannot reach (hidden under another mount, or in a folder it may not enter) is one the
    candidate cannot reach either."""
    # The last mount at a point is the one on top, the one a path reaches.
    for point, options in dict(_mount_points()).items():
        flags = options.split(b",")
        if point in writable or b"ro" in flags:
            continue
        kept = sum(value for name, value in _KEPT_FLAGS.items() if name in flags)
        try:
            _mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept)
        except FileNotFoundError:
            continue
        except PermissionError:
            if os.path.exists(point):
                raise
            continue


def _drop_capabilities() -> None:
    """Every capability, for good: the bounding set emptied (no program run later gets one
    back), the sets cleared, and no_new_privs (no set-user-ID program either)."""
    for number in range(64):
        if _LIBC.prctl(_PR_CAPBSET_DROP, number, 0, 0, 0) != 0:
            if ctypes.get_errno() != errno.EINVAL:  # EINVAL: past the last capability this kernel knows
                _check(-1, "dropping the bounding set")
            break
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    _check(_LIBC.capset(ctypes.byref(header), data), "capset")
    _check(_LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _confine_files(plan: Plan, workdir: str) -> None:
    """In the new namespaces: a /proc of the new PID namespace, the hidden folders, the
    binds back, the work folder writable and everything else read-only."""
    workdirs = sorted({os.path.abspath(workdir), os.path.realpath(workdir)}, key=_depth)
    # Opened before any folder is hidden: a bind's source is reached through its descriptor.
    sources = {path: os.open(path, os.O_PATH) for path in
               {source for _, source in plan.binds} | {os.path.realpath(workdir), *plan.devices}}
    try:
        _mount(None, b"/", None, _MS_REC | _MS_PRIVATE)  # nothing done here reaches the host
        _mount(b"proc", b"/proc", b"proc", _QUIET | _MS_RDONLY)
        _mount(b"tmpfs", b"/dev", b"tmpfs", _MS_NOSUID | _MS_NOEXEC, b"mode=0755")
        for name, target in _DEVICE_LINKS.items():
            os.symlink(target, f"/dev/{name}")
        steps = sorted([(target, None) for target in plan.hidden] + list(plan.binds), key=lambda s: _depth(s[0]))
        for target, source in [*steps, *((path, os.path.realpath(workdir)) for path in workdirs),
                               *((path, path) for path in plan.devices)]:
            if source is None:
                _mount(b"tmpfs", os.fsencode(target), b"tmpfs", _QUIET, b"mode=0755")
                continue
            # The mount point, inside a hidden folder's empty tmpfs: a folder, or a file for a device.
            if stat.S_ISDIR(os.fstat(sources[source]).st_mode):
                os.makedirs(target, exist_ok=True)
            elif not os.path.exists(target):
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
            _mount(os.fsencode(f"/proc/self/fd/{sources[source]}"), os.fsencode(target), None, _MS_BIND | _MS_REC)
    finally:
        for fd in sources.values():
            os.close(fd)
    _read_only_everywhere({os.fsencode(path) for path in workdirs})
    os.chdir(workdir)  # after the mounts: a folder entered before them is the host's


def _end_like(status: int) -> NoReturn:
    """End this process as the process whose wait status is `status` ended."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code  # only if the signal did not end this process
    os._exit(code)


# The keeper's last word on the report pipe, after whatever the worker wrote there (why it
# could not be confined): this byte, the worker's wait status in decimal, a newline.
_ENDED = b"\0"


def read_report(said: bytes) -> tuple[str, int | None]:
    """What a report pipe carried so far: (why the worker could not be confined, '' if it
    said nothing; the worker's wait status once its keeper saw the namespace empty, else
    None)."""
    why, ended, status = said.partition(_ENDED)
    whole = ended and status.endswith(b"\n") and status[:-1].isdigit()
    return why.decode(errors="replace"), int(status[:-1]) if whole else None


def _keep(worker: int, init: int, hold: int, report: int) -> NoReturn:
    """The keeper's part: wait for the worker, then for the namespace to empty, say so on
    `report` (`read_report`) and end as the worker ended. It holds no descriptor of the
    evaluation's, so the parent sees the worker's pipes close when the worker goes."""
    for low, high in _gaps((hold, report), os.sysconf("SC_OPEN_MAX")):
        os.closerange(low, high)
    _, status = os.waitpid(worker, 0)
    os.close(hold)  # the init reads the end of its input and exits; the kernel kills the rest
    os.waitpid(init, 0)  # returns once the namespace is empty
    # Said before this process's own exit (a few ms for a fork of the zygote, and the
    # namespaces' teardown), which nothing of the candidate's outlives.
    try:
        os.write(report, _ENDED + b"%d\n" % status)
    except OSError:
        pass  # the zygote is gone; so is the evaluation
    _end_like(status)


def _gaps(kept: Sequence[int], limit: int) -> list[tuple[int, int]]:
    """The ranges [low, high) of descriptors below `limit` that are not in `kept`."""
    bounds = [-1, *sorted(kept), limit]
    return [(low + 1, high) for low, high in itertools.pairwise(bounds) if high > low + 1]


def enter(plan: Plan, workdir: str, report: int) -> None:
    """Confine the calling process (a fork child of a single-threaded process, in the
    folder `workdir`); return only in the confined worker. The caller becomes the keeper
    and never returns; it says on `report` when the namespace is empty (`read_report`).
    Unavailable when the namespaces cannot be made; OSError when a later step fails (in
    the worker: it must then end without running anything)."""
    try:
        _unshare()
    except OSError as exc:
        raise Unavailable(describe(exc)) from None
    hold_read, hold = os.pipe()
    try:
        init = os.posix_spawn(plan.init, [plan.init], {}, file_actions=[
            (os.POSIX_SPAWN_DUP2, hold_read, 0), (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, 1, 2), (os.POSIX_SPAWN_OPEN, 3, os.devnull, os.O_RDONLY, 0)])
    except OSError as exc:
        raise Unavailable(f"the namespace's init {plan.init} cannot start: {describe(exc)}") from None
    finally:
        os.close(hold_read)
    worker = os.fork()
    if worker:
        _keep(worker, init, hold, report)
    os.close(hold)
    _check(_LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    if os.getppid() != 0:  # the keeper, outside this PID namespace, died before prctl: the init adopted us
        os._exit(70)
    _confine_files(plan, workdir)
    _drop_capabilities()
