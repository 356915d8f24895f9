"""Confinement by namespaces (harness.confine): the plan of what a worker sees, the
request the parent makes of it, the fallback where namespaces are unavailable (forced
or simulated), and a confined worker as the parent drives it. What hostile candidates
meet inside is in test_hostile.py (the `confined` cases)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import README_TOPOLOGY_ARGS, README_WEIGHT, ROOT, cli_command

from harness import confine, protocol, sandbox
from harness.candidates import REFERENCE_PATH
from harness.errors import HarnessError
from harness.settings import CONFINEMENT_ENV, HIDDEN_FOLDERS, HIDE_ENV, TimingConfig

SETTINGS = protocol.WorkerSettings(
    topology={"num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8}, device="cpu", threads=1,
    timing=asdict(TimingConfig(warmup=0, min_samples=1, max_samples=2, min_time_s=0.0)), memory_mb=4096)


@pytest.fixture(scope="module")
def namespaces() -> None:
    """Skip where this machine cannot confine candidates by namespaces."""
    got, reason = sandbox.confinement()
    if got != protocol.NAMESPACES:
        pytest.skip(f"namespaces cannot confine candidates here: {reason}")


# ---------------------------------------------------------------------------- the plan


def test_the_plan_hides_each_folder_once_and_binds_back_only_what_lies_inside(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    venv = home / "env" / "lib"
    venv.mkdir(parents=True)
    data.mkdir()
    (home / "link").symlink_to(data)
    plan = confine.plan([str(tmp_path), str(home), "/", str(tmp_path / "missing")],
                        [str(venv), str(venv / ".."), str(home / "link"), "/usr", str(tmp_path / "gone")], "/bin/cat")
    assert plan.hidden == (str(tmp_path),)  # home lies inside it; / and missing folders are never hidden
    # In mounting order, shallowest first; env/lib comes with env; a link's folder is bound
    # at both the link and the folder it leads to.
    assert plan.binds == ((str(data), str(data)), (str(home / "env"), str(home / "env")),
                          (str(home / "link"), str(data)))
    assert plan.init == "/bin/cat"
    assert "/dev/null" in plan.devices and not {"/dev/sda", "/dev/vda", "/dev/tty", "/dev/kvm"} & set(plan.devices)


def test_a_plan_needs_an_init_program():
    with pytest.raises(confine.Unavailable, match="cat"):
        confine.plan(["/tmp"], [], None)


def test_the_request_hides_the_defaults_the_home_the_temporary_folder_and_named_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setenv(HIDE_ENV, os.pathsep.join(["/srv/secrets", "~/keys"]))
    monkeypatch.setenv("LD_LIBRARY_PATH", f"/opt/cuda/lib64{os.pathsep}relative")
    monkeypatch.delenv(CONFINEMENT_ENV, raising=False)
    asked = confine.request()
    assert asked["confinement"] == protocol.NAMESPACES and asked["reason"] == ""
    assert asked["hide"] == [*HIDDEN_FOLDERS, str(tmp_path / "me"), str(tmp_path), "/srv/secrets",
                             str(tmp_path / "me" / "keys")]
    assert "/opt/cuda/lib64" in asked["keep"] and "relative" not in asked["keep"]
    monkeypatch.setenv(CONFINEMENT_ENV, protocol.PROCESS)
    assert confine.request()["reason"] == f"{CONFINEMENT_ENV}={protocol.PROCESS}"


@pytest.mark.parametrize("variable, value, message", [
    (CONFINEMENT_ENV, "container", "expected one of namespaces, process"),
    (HIDE_ENV, "relative/folder", "expected absolute folders"),
    (HIDE_ENV, "/", "expected absolute folders other than /"),
    (HIDE_ENV, "/proc", "other than /, /proc"),
])
def test_a_wrong_setting_is_a_clear_error(variable, value, message, monkeypatch):
    monkeypatch.setenv(variable, value)
    with pytest.raises(HarnessError, match=message):
        confine.request()


def test_python_folders_hold_the_environment_and_the_harness_but_not_its_checkout():
    folders = confine.python_folders()
    assert sys.prefix in folders and str(ROOT / "harness") in folders
    assert str(ROOT) not in folders


# ---------------------------------------------------------------------------- without namespaces

# The zygote's probe, run in a fresh interpreter with one step of the confinement made to
# fail as a kernel or container that forbids it would: the zygote falls back to `process`.
PROBE = """
import json, sys
from harness import confine, protocol, zygote
def refused(*args):
    raise OSError(1, sys.argv[2] + ": Operation not permitted")
setattr(confine, sys.argv[1], refused)
request = protocol.ConfinementRequest(confinement="namespaces", reason="", hide=["/tmp"], keep=[])
print(json.dumps(zygote._confinement(request)[:2]))
"""


@pytest.mark.parametrize("step, name", [("_unshare", "unshare"), ("_read_only_everywhere", "mount /")])
def test_where_a_step_of_the_confinement_is_refused_the_probe_falls_back_to_process(step, name):
    done = subprocess.run([sys.executable, "-c", PROBE, step, name], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [protocol.PROCESS, f"{name}: Operation not permitted"]


def _cli(tmp_path: Path, *args: str, confinement: str) -> subprocess.CompletedProcess:
    np.save(tmp_path / "example.npy", README_WEIGHT)
    return subprocess.run(
        [*cli_command(), "run", str(ROOT / "tests" / "data" / "round_robin.py"), "--workload",
         str(tmp_path / "example.npy"), *README_TOPOLOGY_ARGS, "--results", str(tmp_path / "store"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, CONFINEMENT_ENV: confinement})


def test_without_namespaces_the_run_says_so_once_and_rows_say_process(tmp_path):
    done = _cli(tmp_path, "--jobs", "2", confinement=protocol.PROCESS)
    assert done.returncode == 0, done.stderr
    told = [line for line in done.stderr.splitlines() if "without namespaces" in line]
    assert told == [f"eplb-harness: candidates run without namespaces ({CONFINEMENT_ENV}=process): each is "
                    "confined to its own process only, and can reach the network and read your files"]
    rows = pq.read_table(tmp_path / "store").to_pylist()
    assert len(rows) == 2 and {row["confinement"] for row in rows} == {protocol.PROCESS}


def test_required_confinement_refuses_to_run_without_namespaces(tmp_path):
    done = _cli(tmp_path, "--require-confinement", confinement=protocol.PROCESS)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"eplb-harness: error: candidates cannot be confined by namespaces here ({CONFINEMENT_ENV}=process); "
        "nothing was run")
    assert not (tmp_path / "store").exists()


# ---------------------------------------------------------------------------- with namespaces


def test_required_confinement_runs_where_namespaces_work(tmp_path, namespaces):
    done = _cli(tmp_path, "--require-confinement", confinement=protocol.NAMESPACES)
    assert done.returncode == 0, done.stderr
    assert "without namespaces" not in done.stderr
    rows = pq.read_table(tmp_path / "store").to_pylist()
    assert {row["confinement"] for row in rows} == {protocol.NAMESPACES}


def _group(pgid: int) -> dict[int, str]:
    """Process states (R, S, T, ...) of the processes in process group `pgid`."""
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            found[int(name)] = fields[0]
    return found


def _until(condition, timeout_s: float = 10.0) -> bool:
    ends = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > ends:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize(("said", "read"), [
    (b"", ("", None)),
    (b"mount refused", ("mount refused", None)),
    (b"\x0017", ("", None)),  # the keeper's word, not yet whole
    (b"\x000\n", ("", 0)),
    (b"mount refused\x00" + b"%d\n" % (70 << 8), ("mount refused", 70 << 8)),
    (b"\x00nine\n", ("", None)),
])
def test_a_report_pipe_says_why_then_how_the_worker_ended_once_its_namespace_is_empty(said, read):
    assert confine.read_report(said) == read


def test_the_parent_stops_and_resumes_every_process_of_a_confined_worker(tmp_path, namespaces):
    # The worker, in user, PID and other namespaces, is still the parent's user's process:
    # the process-group signals that timing in turns relies on reach it.
    source = "import time\ntime.sleep(2)\n" + REFERENCE_PATH.read_text()
    request = sandbox.WorkerRequest(source, np.stack([README_WEIGHT, README_WEIGHT]), SETTINGS, timeout_s=60)
    running = sandbox._start(request)
    try:
        assert _until(lambda: len(_group(running.child.pid)) == 3)  # the keeper, the init and the worker
        os.killpg(running.child.pid, signal.SIGSTOP)
        assert _until(lambda: set(_group(running.child.pid).values()) == {"T"})
        os.killpg(running.child.pid, signal.SIGCONT)
        assert _until(lambda: "T" not in _group(running.child.pid).values())
        sandbox._time_in_turns([running])
    finally:
        outcome = sandbox._finish(running)
    assert (outcome.status, outcome.answer["status"], outcome.confinement) == ("", "ok", protocol.NAMESPACES)
    # Reported once the namespace was empty: the init and the worker are gone; at most the
    # keeper is left, ending by itself.
    assert set(_group(running.child.pid)) <= {running.child.pid}
    assert _until(lambda: _group(running.child.pid) == {})


def test_a_confined_worker_ends_as_its_candidate_ended(tmp_path, namespaces):
    # The keeper ends with the worker's own exit code or signal, so rows read as before.
    weights = np.stack([README_WEIGHT, README_WEIGHT])
    for source, error in [("import os\nos._exit(7)\n", "exited with code 7"),
                          ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", "signal SIGTERM")]:
        outcome = sandbox.run_worker(sandbox.WorkerRequest(source, weights, SETTINGS, timeout_s=60))
        assert outcome.status == "crash" and error in outcome.error, outcome.error
        assert outcome.confinement == protocol.NAMESPACES


@pytest.mark.gpu
def test_a_confined_worker_still_reaches_the_gpu(namespaces):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    settings = protocol.WorkerSettings(**{**asdict(SETTINGS), "device": "cuda"})
    request = sandbox.WorkerRequest(REFERENCE_PATH.read_text(), np.stack([README_WEIGHT, README_WEIGHT]), settings,
                                    timeout_s=120)
    outcome = sandbox.run_worker(request)
    assert (outcome.status, outcome.answer["status"]) == ("", "ok"), (outcome.error, outcome.answer)
    assert outcome.confinement == protocol.NAMESPACES and outcome.answer["device_name"] != "cpu"


# In a process of its own: the zygote reaps whatever child of its process ended.
SPARES_THAT_END = """
import json, os, socket, sys, tempfile, time
from harness import zygote

spares, folders = {}, []
for why in (b"unshare: Operation not permitted", b""):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, why)
        os._exit(70)
    os.close(write)
    folders.append(tempfile.mkdtemp())
    spares[pid] = zygote._Spare(pid, socket.socketpair()[0], folders[-1], read)
while len(spares) == 2 or any(spare.ended is None for spare in spares.values()):
    zygote._reap({}, spares)
    time.sleep(0.01)
print(json.dumps([[spare.ended for spare in spares.values()], [os.path.isdir(f) for f in folders]]))
"""


def test_a_spare_that_cannot_be_confined_is_kept_to_say_so_and_another_that_ended_is_forgotten():
    done = subprocess.run([sys.executable, "-c", SPARES_THAT_END], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    kept, folders = json.loads(done.stdout)
    assert kept == [{"returncode": 70, "unconfined": "unshare: Operation not permitted"}]
    assert folders == [True, False]  # the forgotten one's folder is removed; the kept one's goes with its evaluation
