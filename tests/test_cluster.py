"""Evaluations on a Dask cluster (harness.cluster): a real scheduler and two worker
processes on this machine, on the loopback only. The same rows as a local run; a worker
killed mid-run loses nothing stored and costs an evaluation one more run, two deaths make
it a `crash`; an unreachable scheduler is one line and exit 2."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster
from helpers import README_TOPOLOGY, README_WEIGHT, ROOT, cli, cli_command

from harness import cluster as harness_cluster
from harness import sandbox
from harness.candidates import REFERENCE_PATH, load_candidate
from harness.cluster import RUNS_PER_CALL, connect, disconnect, lent_gpu, worker_gpus
from harness.errors import HarnessError
from harness.evaluate import evaluate, run
from harness.settings import Settings
from harness.store import ResultStore
from harness.workloads import Topology, Workload, resolve_workloads

HOSTILE = Path(__file__).resolve().parent / "hostile"
QUICK = ["--suite", "quick"]
SHIPPED = [str(ROOT / "candidates" / name) for name in ("deepseek_eplb.py", "seed_parent.py",
                                                         "diffs/peak_aware_tail_and_two_step_fixup.diff")]


def _local_cluster(**config) -> LocalCluster:
    with dask.config.set(config):
        # Its HTTP server on a free loopback port: no dashboard, no clash with another cluster.
        return LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                            dashboard_address="127.0.0.1:0")


@pytest.fixture(scope="module")
def scheduler():
    """The address of a scheduler with two single-thread worker processes, each restarted by
    its nanny when killed; and a client of the test's own to watch and kill them."""
    with _local_cluster() as local, Client(local.scheduler_address, set_as_default=False) as client:
        yield local.scheduler_address, client
        disconnect(local.scheduler_address)  # the harness's own client, where a test ran it here


def _ready(client: Client) -> dict[str, int]:
    """Worker address -> pid, once both workers are up (again)."""
    client.wait_for_workers(2, timeout=60)
    return client.run(os.getpid)


def _rows(results: Path) -> dict[tuple[str, str], dict]:
    table = ResultStore(results).read(["candidate_name", "candidate_hash", "workload_id", "status", "error",
                                       "balancedness", "replica_balancedness", "created_at"])
    rows = table.to_pylist()
    keys = [(r["candidate_hash"], r["workload_id"]) for r in rows]
    assert len(keys) == len(set(keys)), "an evaluation was stored twice"
    return {key: row for key, row in zip(keys, rows, strict=True)}


def test_a_cluster_gives_the_rows_of_a_local_run(scheduler, tmp_path):
    address, client = scheduler
    _ready(client)
    hostile = shutil.copy(HOSTILE / "raises_in_call.py", tmp_path / "raises_in_call.py")
    candidates = [*SHIPPED[:2], hostile]
    local = cli("run", *candidates, *QUICK, "--results", str(tmp_path / "local"))
    remote = cli("run", *candidates, *QUICK, "--results", str(tmp_path / "remote"), "--scheduler", address)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    here, there = _rows(tmp_path / "local"), _rows(tmp_path / "remote")
    assert set(here) == set(there) and len(here) == 6
    for key, row in here.items():
        assert (there[key]["status"], there[key]["error"]) == (row["status"], row["error"])
        for figure in ("balancedness", "replica_balancedness"):
            assert there[key][figure] == row[figure] or np.isnan(row[figure]) and np.isnan(there[key][figure])
    assert sorted(row["status"] for row in there.values()) == ["error"] * 2 + ["ok"] * 4


def test_nothing_the_workers_run_reads_the_clients_files(scheduler, tmp_path):
    """The candidate's source and the workload's arrays travel as data: both files are
    gone before the run starts."""
    address, client = scheduler
    _ready(client)
    program = shutil.copy(ROOT / "candidates" / "seed_parent.py", tmp_path / "gone.py")
    array = tmp_path / "gone.npy"
    np.save(array, README_WEIGHT[None].repeat(2, axis=0))
    candidate = load_candidate(Path(program))
    workloads = resolve_workloads(None, [str(array)], README_TOPOLOGY)
    os.unlink(program)
    os.unlink(array)
    done = run([candidate], workloads, Settings(), None, scheduler=address)
    assert [(row.candidate_name, row.status) for row in done.rows] == [("deepseek_eplb", "ok"), ("gone", "ok")]


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    results = tmp_path / "results"
    command = subprocess.Popen([*cli_command(), "run", *args, "--results", str(results)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return command, results


def _wait_for(probe, what: str, timeout_s: float = 60):
    """What `probe()` returns once it is true."""
    ends = time.monotonic() + timeout_s
    while not (found := probe()):
        assert time.monotonic() < ends, f"waited {timeout_s} s for {what}"
        time.sleep(0.05)
    return found


def _children(pid: int) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(name))
        except OSError:
            continue
    return found


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        todo += (children := _children(todo.pop()))
        found += children
    return found


def _runs_a_candidate(pid: int) -> bool:
    """Whether a process below a Dask worker runs a candidate: one of the zygote's workers
    once its evaluation gave it its output pipes (a spare's stdout is still its socket)."""
    zygotes = []
    for child in _children(pid):
        with contextlib.suppress(OSError):  # gone meanwhile
            if b"harness.zygote" in Path(f"/proc/{child}/cmdline").read_bytes():
                zygotes.append(child)
    for below in (process for zygote in zygotes for process in _descendants(zygote)):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{below}/fd/1").startswith("pipe:"):
                return True
    return False


def _kill_an_evaluating_worker(client: Client) -> None:
    """SIGKILL the process of a worker in the middle of an evaluation. The nanny restarts
    the worker."""
    pids = _ready(client)
    evaluating = _wait_for(lambda: next((address for address, pid in pids.items() if _runs_a_candidate(pid)), None),
                           "an evaluation")
    os.kill(pids[evaluating], signal.SIGKILL)
    _wait_for(lambda: evaluating not in client.scheduler_info()["workers"], "the scheduler to see it die")


def test_a_worker_killed_mid_run_loses_nothing_and_its_evaluation_runs_elsewhere(scheduler, tmp_path):
    address, client = scheduler
    command, results = _start(tmp_path, *SHIPPED, *QUICK, "--scheduler", address)
    _wait_for(lambda: ResultStore(results).files(), "the first row")
    before = _rows(results)
    _kill_an_evaluating_worker(client)
    stdout, stderr = command.communicate(timeout=240)
    assert command.returncode == 0, stderr
    after = _rows(results)
    assert len(after) == 6  # the reference, its parent and a diff, on two workloads
    assert all(after[key] == row for key, row in before.items())
    assert {row["status"] for row in after.values()} <= {"ok", "crash"}
    assert "ran again on another Dask worker after theirs died" in stdout


def test_an_evaluation_whose_worker_dies_twice_is_stored_as_crash(scheduler, tmp_path):
    address, client = scheduler
    hang = shutil.copy(HOSTILE / "hang_in_call.py", tmp_path / "hang_in_call.py")
    command, results = _start(tmp_path, hang, "--workload", "v2lite-zipf-quick", *QUICK, "--timeout", "60",
                              "--scheduler", address)
    _wait_for(lambda: ResultStore(results).files(), "the reference's row")
    for _ in range(RUNS_PER_CALL):  # only the hanging evaluation is left to run
        _kill_an_evaluating_worker(client)
    stdout, stderr = command.communicate(timeout=120)
    assert command.returncode == 0, stderr
    rows = {row["candidate_name"]: row for row in _rows(results).values()}
    assert rows["deepseek_eplb"]["status"] == "ok"
    assert rows["hang_in_call"]["status"] == "crash"
    assert f"died during each of its {RUNS_PER_CALL} runs" in rows["hang_in_call"]["error"]
    assert "1 evaluations lost their Dask worker" in stdout


def _square_unless_three(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # the Dask worker itself
    return x * x


def test_calls_go_on_when_the_scheduler_gives_up_first(tmp_path):
    """With `allowed-failures` 0 the scheduler fails a call at its worker's first death
    (KilledWorker): it is sent again, the others' results still come, and the call that
    kills every worker it runs on is lost after RUNS_PER_CALL runs."""
    with _local_cluster(**{"distributed.scheduler.allowed-failures": 0}) as local:
        outcomes = {o.index: o for o in connect(local.scheduler_address).map(
            _square_unless_three, [(x,) for x in range(5)], gpu=False)}
        disconnect(local.scheduler_address)
    assert {i: o.value for i, o in outcomes.items() if i != 3} == {0: 0, 1: 1, 2: 4, 4: 16}
    assert outcomes[3].runs == RUNS_PER_CALL and "died" in outcomes[3].lost


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "1s")
    with refusing_port() as port:
        done = cli("run", *QUICK, "--results", str(tmp_path), "--scheduler", f"tcp://127.0.0.1:{port}")
    assert done.returncode == 2
    assert done.stderr.startswith(f"eplb-harness: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")
    assert len(done.stderr.strip().splitlines()) == 1 and not ResultStore(tmp_path).files()
    done = cli("run", *QUICK, "--results", str(tmp_path), "--scheduler", "nowhere")
    assert done.returncode == 2 and "is not HOST:PORT" in done.stderr


def test_a_gpu_run_needs_a_worker_with_a_gpu_resource(scheduler, monkeypatch):
    address, client = scheduler
    _ready(client)
    monkeypatch.setattr(harness_cluster, "CLUSTER_WAIT_S", 0.5)
    workloads = resolve_workloads(QUICK[1], ["v2lite-zipf-quick"], {})
    reference = load_candidate(REFERENCE_PATH)
    with pytest.raises(HarnessError, match="no worker with a GPU resource"):
        run([reference], workloads, Settings(device="cuda"), None, scheduler=address)
    with pytest.raises(HarnessError, match="give cpu or cuda"):
        run([reference], workloads, Settings(device="cuda:1"), None, scheduler=address)


def test_each_gpu_of_a_worker_is_lent_to_one_evaluation():
    assert worker_gpus(None, 2) == ["0", "1"]
    assert worker_gpus("3,1,2", 2) == ["3", "1"]  # dask-cuda lists a worker's own GPU first
    assert worker_gpus(" 5 ", 1) == ["5"]
    with pytest.raises(HarnessError, match="offers GPU=2 but sees 1"):
        worker_gpus("0", 2)
    with pytest.raises(HarnessError, match="sees 0"):
        worker_gpus("", 1)


def test_a_worker_lends_each_of_its_gpus_to_one_evaluation_at_a_time():
    """A worker with two GPU resources and three threads, seeing three GPUs: at most two
    GPU calls at once, each holding a GPU of its own, the first two it sees."""

    def hold_a_gpu() -> tuple[str, float, float]:
        with lent_gpu() as gpu:
            started = time.monotonic()
            time.sleep(0.3)
            return gpu, started, time.monotonic()

    with (LocalCluster(n_workers=1, processes=True, threads_per_worker=3, host="127.0.0.1",
                       dashboard_address="127.0.0.1:0", resources={"GPU": 2}, env={"CUDA_VISIBLE_DEVICES": "5,7,9"})
          as local, Client(local.scheduler_address, set_as_default=False) as client):
        held = client.gather([client.submit(hold_a_gpu, pure=False, resources={"GPU": 1}) for _ in range(6)])
    assert {gpu for gpu, _, _ in held} == {"5", "7"}
    for gpu in ("5", "7"):
        spans = sorted((start, end) for lent, start, end in held if lent == gpu)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False))


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port bound but never listening, so that connections to it are refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


def test_an_evaluation_sees_only_the_gpu_lent_to_it(tmp_path):
    program = tmp_path / "tells_its_gpus.py"
    program.write_text("import os\n\n\ndef rebalance_experts(*args):\n"
                       "    raise RuntimeError('sees ' + os.environ.get('CUDA_VISIBLE_DEVICES', 'all'))\n")
    workload = Workload("readme", "file", README_WEIGHT[None], Topology(**README_TOPOLOGY))
    with sandbox.visible_gpus("7"):
        lent = evaluate(load_candidate(program), workload, Settings())
    alone = evaluate(load_candidate(program), workload, Settings())
    assert "RuntimeError: sees 7" in lent.error and "sees 7" not in alone.error
