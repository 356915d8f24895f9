"""Evaluations on a Dask cluster, through joblib's Dask backend (`--scheduler tcp://HOST:PORT`).

The client (the command line, or a framework's evaluator) keeps what a local run keeps:
the reference-first order, the progress bar and the one store, which it alone writes as
rows come back. Only the calls travel, and they are data: the candidate's source, the
workload's arrays and the settings, pickled to a Dask worker, which runs each evaluation
as a local run does (a sandboxed worker process for the candidate and one for its
reference, forked by that machine's warm zygote, timed in turns there, so a speedup is
always measured on one machine and device) and sends the rows back. No worker reads the
client's files; each needs the same eplb-harness installed, which `connect` checks.

GPUs. A call on CUDA asks Dask for one `GPU` resource, so a worker started with
`--resources GPU=N` runs at most N of them at once and a worker without it runs none.
The worker lends each such evaluation one of its GPUs for its duration: the first N of
the worker's CUDA_VISIBLE_DEVICES (0..N-1 when unset), each held by one evaluation at a
time, and the evaluation's processes see only that one (as device 0). CPU calls ask for
nothing and run on any worker.

Faults. Dask gives the calls of a worker that died to another worker. The harness counts
the starts of each call on the scheduler (with `distributed.Event`s), so a call runs at
most `RUNS_PER_CALL` times: the next start returns at once as lost, and the client
stores its rows as `crash`, saying why. Should the scheduler give up first (`KilledWorker`,
with `distributed.scheduler.allowed-failures` under 2), the unfinished calls are sent
again and their counts go on. Rows already stored are never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harness import __version__, sandbox
from harness.errors import HarnessError
from harness.settings import CLUSTER_WAIT_S

__all__ = ["RUNS_PER_CALL", "Cluster", "Outcome", "connect", "disconnect", "lent_gpu", "worker_gpus"]

RUNS_PER_CALL = 2  # a first run, and one more elsewhere when its Dask worker died under it
_POLL_S = 0.5


@dataclass(frozen=True)
class Outcome:
    """How call number `index` ended: `value` is what it returned; `runs` how often it was
    started (more than once: a Dask worker died under an earlier run); `lost` says why it
    has no value (its workers died under every run)."""

    index: int
    value: Any
    runs: int
    lost: str = ""


class Cluster:
    """A client of the Dask scheduler at `address`, checked to have workers that run this
    eplb-harness; `connect` gives the one of each address."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
            from distributed.comm import parse_address, parse_host_port
        except ImportError:
            raise HarnessError("--scheduler needs Dask: pip install 'eplb-harness[dask]'") from None
        self.address = address
        try:
            parse_host_port(parse_address(address)[1])
        except ValueError as exc:
            raise HarnessError(f"scheduler address {address!r} is not HOST:PORT or SCHEME://HOST:PORT: {exc}") from None
        try:
            self.client = Client(address, set_as_default=False)
        except OSError as exc:
            raise HarnessError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            self._check_workers(self._workers())
        except BaseException:
            self.client.close()
            raise
        atexit.register(self.client.close)

    def _workers(self, can_take: Callable[[dict], bool] = lambda worker: True, wanted: str = "a worker") -> list[str]:
        """The addresses of the workers `can_take` accepts, once there is one (HarnessError
        after CLUSTER_WAIT_S)."""
        waited_until = time.monotonic() + CLUSTER_WAIT_S
        while True:
            workers = self.client.scheduler_info()["workers"]
            found = [address for address, worker in workers.items() if can_take(worker)]
            if found:
                return found
            if time.monotonic() > waited_until:
                raise HarnessError(f"the Dask scheduler at {self.address} has no {wanted} "
                                   f"({len(workers)} workers; waited {CLUSTER_WAIT_S:g} s)")
            time.sleep(_POLL_S)

    def _check_workers(self, workers: list[str]) -> None:
        try:
            versions = self.client.run(_harness_version, workers=workers)
        except Exception as exc:  # whatever a worker without the harness raises
            raise HarnessError(f"the Dask workers of {self.address} cannot run eplb-harness "
                               f"({type(exc).__name__}: {exc}); install eplb-harness {__version__} there") from None
        other = {address: version for address, version in versions.items() if version != __version__}
        if other:
            raise HarnessError(f"Dask workers of {self.address} run another eplb-harness than {__version__}: {other}")

    def map(self, function: Callable[..., Any], calls: Sequence[tuple], *, gpu: bool) -> Iterator[Outcome]:
        """`function(*call)` for each call on the workers, one Dask task per call (with one
        `GPU` resource when `gpu`), yielded as each ends, in any order."""
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError
        from joblib import Parallel, delayed, parallel_config

        if gpu and calls:
            self._workers(lambda worker: worker.get("resources", {}).get("GPU", 0) >= 1,
                          "worker with a GPU resource (dask worker --resources GPU=N)")
        counters = f"eplb-harness-runs-{uuid.uuid4().hex}"
        pending = dict(enumerate(calls))
        while pending:
            try:
                with parallel_config(backend=_joblib_backend(self.client, {"GPU": 1} if gpu else None)):
                    # One call per task, all at once: the scheduler places them, and a
                    # worker's death takes only its own.
                    parallel = Parallel(n_jobs=-1, batch_size=1, pre_dispatch="all", return_as="generator_unordered")
                    for outcome in parallel(delayed(_counted)(f"{counters}-{index}", index, gpu, function, call)
                                            for index, call in list(pending.items())):
                        del pending[outcome.index]
                        yield outcome
            except KilledWorker:
                continue  # the scheduler gave up on a call first; the starts counted go on
            except TimeoutError:  # joblib's, from waiting for a worker
                raise HarnessError(f"the Dask scheduler at {self.address} has had no worker for {CLUSTER_WAIT_S:g} s; "
                                   "the rows that came back are stored: run again for the rest") from None
            except FutureCancelledError as exc:
                disconnect(self.address)
                raise HarnessError(f"lost the Dask scheduler at {self.address} during the run ({exc.reason}); the "
                                   "rows that came back are stored: run again for the rest") from None


def _joblib_backend(client: Any, resources: dict[str, float] | None) -> Any:
    """joblib's Dask backend on `client`, each task asking for `resources`; it also tells
    joblib of a task that the scheduler failed (KilledWorker), of which joblib's own
    (1.6) never tells it, leaving the call waiting for ever."""
    from joblib._dask import DaskDistributedBackend

    class Backend(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs: int) -> int:
            # Told of a single thread (a worker being restarted, say), joblib would run the
            # calls itself, here in the client.
            return max(2, super().effective_n_jobs(n_jobs))

        def submit(self, func, callback=None):
            future = super().submit(func, callback)
            # A failed task's exception, given to joblib's callback, is raised by Parallel.
            future.add_done_callback(lambda done: done.exception() is None or callback(done.exception()))
            return future

    return Backend(client=client, wait_for_workers_timeout=CLUSTER_WAIT_S, resources=resources)


_CLUSTERS: dict[str, Cluster] = {}
_CLUSTERS_LOCK = threading.Lock()


def connect(address: str) -> Cluster:
    """The cluster of the scheduler at `address`, connected once per process (a framework's
    evaluator runs one evaluation call after another). HarnessError if it cannot be used."""
    with _CLUSTERS_LOCK:
        if address not in _CLUSTERS:
            _CLUSTERS[address] = Cluster(address)
        return _CLUSTERS[address]


def disconnect(address: str) -> None:
    """Close this process's connection to the scheduler at `address`, if it has one."""
    with _CLUSTERS_LOCK:
        cluster = _CLUSTERS.pop(address, None)
    if cluster is not None:
        cluster.client.close()


# ---------------------------------------------------------------------------- on the Dask workers


def _harness_version() -> str:
    return __version__


def _counted(counter: str, index: int, gpu: bool, function: Callable[..., Any], call: tuple) -> Outcome:
    """Run `function(*call)` unless it was started `RUNS_PER_CALL` times already. Start n
    sets the scheduler's event `counter`-n (a call sent again has the same `counter`); an
    ended call clears them."""
    from distributed import Event

    starts = [Event(f"{counter}-{n}") for n in range(1, RUNS_PER_CALL + 1)]
    runs = next((n for n in range(RUNS_PER_CALL, 0, -1) if starts[n - 1].is_set()), 0)
    if runs == RUNS_PER_CALL:
        for event in starts:
            event.clear()
        return Outcome(index, None, runs, f"the Dask worker running it died during each of its {runs} runs; "
                                          "it was not run again")
    starts[runs].set()
    try:
        if gpu:
            with lent_gpu() as lent, sandbox.visible_gpus(lent):
                value = function(*call)
        else:
            value = function(*call)
    finally:  # where the worker lives on to say so
        for event in starts[:runs + 1]:
            event.clear()
    return Outcome(index, value, runs + 1)


def worker_gpus(visible: str | None, count: float) -> list[str]:
    """The GPUs a Dask worker with `count` GPU resources lends its evaluations: the first
    `count` of `visible` (its CUDA_VISIBLE_DEVICES), or 0..count-1 when that is unset."""
    ids = ([part.strip() for part in visible.split(",") if part.strip()] if visible is not None
           else [str(index) for index in range(int(count))])
    if len(ids) < count:
        raise HarnessError(f"a Dask worker offers GPU={count:g} but sees {len(ids)} GPUs "
                           f"(CUDA_VISIBLE_DEVICES={visible!r})")
    return ids[:int(count)]


_FREE_GPUS: list[str] | None = None
_GPUS_LOCK = threading.Lock()


@contextlib.contextmanager
def lent_gpu() -> Iterator[str]:
    """One GPU of this Dask worker (its id, as CUDA_VISIBLE_DEVICES names it), held by no
    other evaluation until the block ends. Dask starts at most as many GPU calls at once
    as the worker has GPUs, so one is free."""
    from distributed import get_worker

    global _FREE_GPUS
    with _GPUS_LOCK:
        if _FREE_GPUS is None:
            _FREE_GPUS = worker_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"),
                                     get_worker().state.total_resources.get("GPU", 0))
        gpu = _FREE_GPUS.pop(0)
    try:
        yield gpu
    finally:
        with _GPUS_LOCK:
            _FREE_GPUS.append(gpu)
