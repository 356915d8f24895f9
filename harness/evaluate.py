"""Evaluation: one candidate on one workload gives one `EvalResult`; `run` gives many.

The candidate runs in a worker process (`harness.sandbox`); `evaluate` checks what came
back and measures it (`harness.metrics`). `run` is the one evaluation loop, for the CLI
and the framework integrations alike: it skips what the store already holds, times the
reference first, runs evaluations in parallel, optionally walks each candidate's
workloads in order within a time budget and stops at its first failure, and appends each
row to the store as it comes back.
"""

from __future__ import annotations

import functools
import math
import platform
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from joblib import Parallel, delayed

from harness import __version__
from harness.bounds import Bounds, workload_bounds
from harness.candidates import REFERENCE_PATH, Candidate, load_candidate
from harness.cluster import RUNS_PER_CALL, connect
from harness.errors import HarnessError
from harness.metrics import (
    InvalidPlacement,
    Placement,
    adrs_combined_score,
    adrs_leaderboard_score,
    balance,
    check_placement,
    harness_score,
    moved_replicas,
)
from harness.protocol import PLACEMENT_ARRAYS, WorkerSettings, placement_key
from harness.results import EvalResult, RowContext, now
from harness.sandbox import WorkerOutcome, WorkerRequest, run_workers
from harness.settings import Deadline, Settings, TimingConfig, deadline, default_jobs
from harness.stats import median_interval, summarize
from harness.store import AUTO_COMPACT_FILES, ResultStore
from harness.workloads import Workload

__all__ = ["RunReport", "context", "evaluate", "new_run_id", "run", "worker_settings"]


@functools.cache
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


@functools.cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def _gpu_driver_version() -> str:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.split("\n")[0].strip() if done.returncode == 0 else ""


# Bounds by workload id: a workload's bounds are the same for every candidate scored on it.
_BOUNDS: dict[str, Bounds] = {}


def _bounds(workload: Workload) -> Bounds:
    if workload.id not in _BOUNDS:
        _BOUNDS[workload.id] = workload_bounds(workload.weights, workload.topology)
    return _BOUNDS[workload.id]


def context(candidate: Candidate, workload: Workload, settings: Settings, run_id: str, suite: str,
            limit: Deadline | None = None) -> RowContext:
    limit = limit or deadline(settings)
    return RowContext(
        run_id=run_id, suite=suite, candidate_name=candidate.name, candidate_hash=candidate.hash,
        candidate_path=candidate.path, parent_hash=candidate.parent_hash, diff_name=candidate.diff_name,
        diff_description=candidate.diff_description, diff_hash=candidate.diff_hash,
        workload_id=workload.id, workload_name=workload.name, workload_kind=workload.kind,
        num_windows=workload.num_windows, num_layers=workload.num_layers,
        num_logical_experts=workload.num_logical_experts, **vars(workload.topology), **vars(_bounds(workload)),
        device=settings.device, settings_hash=settings.hash, deadline_s=limit.seconds, deadline_rule=limit.rule,
        timing_method=settings.timing.describe(),
        harness_version=__version__, torch_version=_version("torch"), numpy_version=_version("numpy"),
        cpu_model=_cpu_model(), cpu_count=default_jobs(),
        gpu_driver_version=_gpu_driver_version() if settings.device.startswith("cuda") else "",
    )


def worker_settings(workload: Workload, settings: Settings, placements: bool = True) -> WorkerSettings:
    """What the worker needs to know of `settings` to run a candidate on `workload`
    (`placements`: and to return its placements, or only to be timed)."""
    return WorkerSettings(topology=vars(workload.topology), device=settings.device, threads=settings.threads,
                          timing=asdict(settings.timing), memory_mb=settings.memory_mb, placements=placements)


def evaluate(candidate: Candidate, workload: Workload, settings: Settings, run_id: str = "adhoc",
             suite: str = "", *, partner: Candidate | None = None, limit: Deadline | None = None) -> EvalResult:
    """Run `candidate` on `workload` in a worker and score what it returned. With a
    `partner` (the reference), a second worker runs it beside the candidate and the two
    are timed in turns, call for call on the same window, for the paired speedup. `limit`
    is the evaluation's deadline (default: `settings.timeout_s`, else the cap)."""
    limit = limit or deadline(settings)
    ctx = context(candidate, workload, settings, run_id, suite, limit)
    if candidate.patch_error:
        return EvalResult.failed(ctx, "patch_failed", candidate.patch_error)
    # The partner is only timed: its placements on the workload are in its own row.
    requests = [WorkerRequest(candidate.source, workload.weights, worker_settings(workload, settings), limit.seconds)]
    if partner is not None:
        requests.append(WorkerRequest(partner.source, workload.weights, worker_settings(workload, settings, False),
                                      limit.seconds))
    outcome, *partnered = run_workers(requests)
    answer = outcome.answer
    if outcome.status or answer["status"] != "ok":
        return EvalResult.failed(ctx, outcome.status or answer["status"], outcome.error or answer["error"],
                                 outcome.wall_s, outcome.stderr_tail, outcome.stdout_tail, outcome.confinement)
    scoring_started = time.perf_counter()
    try:
        plans = _checked_plans(outcome.placements, workload, answer["input_changed"])
    except InvalidPlacement as exc:
        return EvalResult.failed(ctx, "invalid", str(exc), outcome.wall_s, outcome.stderr_tail, outcome.stdout_tail,
                                 outcome.confinement)
    # The partner's answer, checked like any (empty if it failed, and without a partner).
    return _scored(ctx, workload, plans, outcome, settings.timing, partnered[0].answer if partnered else {},
                   scoring_started)


def _checked_plans(placements: dict[str, np.ndarray], workload: Workload, input_changed: list[bool]) -> np.ndarray:
    """Check every window's placement; return the plans `[windows, layers, num_replicas]`."""
    plans = []
    for t in range(workload.num_windows):
        if input_changed[t]:
            raise InvalidPlacement(f"window {t}: the call changed its input weight tensor")
        placement = Placement(*(placements[placement_key(array, t)] for array in PLACEMENT_ARRAYS))
        try:
            check_placement(placement, workload.num_layers, workload.num_logical_experts, workload.topology)
        except InvalidPlacement as exc:
            raise InvalidPlacement(f"window {t}: {exc}") from None
        plans.append(placement.phy2log.astype(np.int64))
    return np.stack(plans)


def _scored(ctx: RowContext, workload: Workload, plans: np.ndarray, outcome: WorkerOutcome,
            timing_config: TimingConfig, reference: dict, scoring_started: float) -> EvalResult:
    topology, weights, answer = workload.topology, workload.weights, outcome.answer
    # Predictive protocol: the plan of window t serves window t+1; one window serves itself.
    pairs = [(0, 0)] if workload.num_windows == 1 else [(t, t + 1) for t in range(workload.num_windows - 1)]
    predictive = [balance(plans[plan], weights[scored], topology) for plan, scored in pairs]
    fit = [balance(plans[t], weights[t], topology).balancedness for t in range(workload.num_windows)]
    moves = [moved_replicas(plans[t - 1], plans[t], topology) for t in range(1, workload.num_windows)]
    timing = summarize(answer["runtime_samples_s"])
    reference_samples_s = reference.get("runtime_samples_s", [])
    # Sample i of each worker was timed in the same round, on the same window.
    ratios = [r / c for r, c in zip(reference_samples_s, answer["runtime_samples_s"], strict=False)]
    speedup = median_interval(ratios)
    mean = {name: float(np.mean([getattr(b, name) for b in predictive]))
            for name in ("balancedness", "replica_balancedness", "node_balancedness", "group_spread")}
    per_layer = np.mean([b.gpu_max_over_mean_per_layer for b in predictive], axis=0)
    return EvalResult(
        **vars(ctx), created_at=now(), status="ok", error="", **mean,
        fit_balancedness=float(np.mean(fit)),
        moved_replicas_per_plan=float(np.mean(moves)) if moves else float("nan"),
        runtime_s=timing.median_s, runtime_iqr_s=timing.iqr_s, runtime_min_s=timing.min_s,
        runtime_samples=timing.samples, runtime_unstable=timing.relative_iqr > timing_config.unstable_iqr,
        speedup_vs_reference=speedup.median, speedup_ci95_low=speedup.low, speedup_ci95_high=speedup.high,
        reference_runtime_s=median_interval(reference_samples_s).median, threads=answer["threads"],
        device_name=answer["device_name"], cuda_version=answer["cuda_version"],
        peak_device_memory_bytes=answer["peak_device_memory_bytes"], nondeterministic=answer["nondeterministic"],
        score=harness_score(mean["balancedness"], speedup.median),
        combined_score=adrs_combined_score(mean["replica_balancedness"], timing.median_s),
        adrs_score=adrs_leaderboard_score(mean["balancedness"], timing.median_s),
        scoring_s=time.perf_counter() - scoring_started, eval_wall_s=outcome.wall_s,
        stderr_tail=outcome.stderr_tail, stdout_tail=outcome.stdout_tail,
        gpu_max_over_mean_per_layer=tuple(per_layer.tolist()), confinement=outcome.confinement,
        runtime_calls_per_sample=answer["calls_per_turn"],
        reference_calls_per_sample=reference.get("calls_per_turn", 0),
    )


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class RunReport:
    """What `run` did: its id, the rows it evaluated (the reference's included; rows reused
    from the store are not repeated here), and how many of the candidates' evaluations it
    did and how many the store already held."""

    run_id: str
    rows: tuple[EvalResult, ...]
    evaluated: int
    reused: int
    notes: tuple[str, ...] = ()  # what else happened: Dask workers that died under evaluations


def _chain(candidate: Candidate, workloads: Sequence[Workload], settings: Settings, run_id: str, suite: str,
           partner: Candidate | None, limits: dict[str, Deadline], stop_at_first_failure: bool,
           budget_s: float | None) -> list[EvalResult]:
    """Evaluate `candidate` on `workloads` in order, timed beside `partner`; the rows,
    stopping after the first failure when asked. Within `budget_s`, each evaluation gets
    at most what is left of it, and a workload the budget does not reach is a `timeout` row."""
    budget_ends = time.monotonic() + budget_s if budget_s is not None else math.inf
    rows: list[EvalResult] = []
    for workload in workloads:
        limit = limits.get(workload.id) or deadline(settings)
        left_s = budget_ends - time.monotonic()
        if left_s <= 0:
            row = EvalResult.failed(context(candidate, workload, settings, run_id, suite, limit), "timeout",
                                    f"no answer within the {budget_s:g} s budget of the evaluation")
        else:
            cut = left_s < limit.seconds
            if cut:
                limit = Deadline(left_s, f"what was left of the {budget_s:g} s budget of the evaluation")
            row = evaluate(candidate, workload, settings, run_id, suite, partner=partner, limit=limit)
            if row.status == "timeout" and cut:
                row = replace(row, error=f"no answer within the {budget_s:g} s budget of the evaluation; "
                                         "process group killed")
        rows.append(row)
        if row.status != "ok" and (stop_at_first_failure or left_s <= 0):
            break
    return rows


def _lost(candidate: Candidate, workloads: Sequence[Workload], settings: Settings, run_id: str, suite: str,
          partner: Candidate | None, limits: dict[str, Deadline], stop_at_first_failure: bool,
          budget_s: float | None, *, reason: str) -> list[EvalResult]:
    """The rows of a `_chain` call that never came back (its Dask workers died under it):
    `crash`, for its first workload where it would have stopped at a failure, else for each."""
    return [EvalResult.failed(context(candidate, w, settings, run_id, suite, limits.get(w.id) or deadline(settings)),
                              "crash", reason) for w in (workloads[:1] if stop_at_first_failure else workloads)]


# The reference's whole evaluation time per (reference hash, workload id, settings hash),
# for deadlines: kept for the process, so that a long-lived caller (OpenEvolve imports its
# evaluator once) times the reference once per workload even without a store.
_REFERENCE_WALL_S: dict[tuple[str, str, str], float] = {}


def _stored_reference_walls(store: ResultStore | None, reference: Candidate, settings: Settings,
                            workloads: Sequence[Workload]) -> None:
    """Learn the reference's evaluation times from its stored `ok` rows, unless this
    process knows them for every one of `workloads` (a search calls `run` per candidate)."""
    if all((reference.hash, w.id, settings.hash) in _REFERENCE_WALL_S for w in workloads):
        return
    if store is None or not store.files():
        return
    table = store.read(["candidate_hash", "workload_id", "settings_hash", "status", "eval_wall_s"])
    # Column-wise: a search's store holds many rows, the reference's only a few of them.
    own = table.filter(pc.and_(pc.and_(pc.equal(table["candidate_hash"], reference.hash),
                                       pc.equal(table["settings_hash"], settings.hash)),
                               pc.equal(table["status"], "ok")))
    for workload_id, wall_s in zip(own["workload_id"].to_pylist(), own["eval_wall_s"].to_pylist(), strict=True):
        _REFERENCE_WALL_S[(reference.hash, workload_id, settings.hash)] = wall_s


def _as_reference(row: EvalResult) -> EvalResult:
    """The reference's own row: its speedup over itself is 1 by definition."""
    if row.status != "ok":
        return row
    return replace(row, speedup_vs_reference=1.0, speedup_ci95_low=1.0, speedup_ci95_high=1.0,
                   reference_runtime_s=row.runtime_s, reference_calls_per_sample=row.runtime_calls_per_sample,
                   score=harness_score(row.balancedness, 1.0))


def run(candidates: list[Candidate], workloads: list[Workload], settings: Settings, store: ResultStore | None,
        *, suite: str = "", run_id: str | None = None, jobs: int | None = None, fresh: bool = False,
        reference: bool = True, stop_at_first_failure: bool = False, budget_s: float | None = None,
        scheduler: str | None = None,
        progress: Callable[[Iterator[EvalResult], int], Iterator[EvalResult]] | None = None) -> RunReport:
    """Evaluate every (candidate, workload) pair (those the store lacks unless `fresh`),
    appending each row to `store` (None: neither read nor written) as it comes back.

    `reference`: every candidate is timed beside the DeepSeek reference, call for call in
    turns (the paired speedup), and its deadline follows the reference's time on the
    workload. The reference's own row is evaluated first where neither the store nor this
    process holds it, once per workload and settings. `stop_at_first_failure` or
    `budget_s` (seconds per candidate, for all its workloads) walk each candidate's
    workloads in order in one task, as a search's evaluation call does: a candidate that
    fails once scores nothing, so the rest would cost time and tell nothing. Otherwise
    every pair is its own task. Tasks run `jobs` at a time in threads here, or, given the
    address of a Dask `scheduler`, on its workers, as many at a time as they have threads
    (`harness.cluster`); the rows come back here either way.
    """
    run_id = run_id or new_run_id()
    cluster = connect(scheduler) if scheduler else None
    if cluster is not None and settings.device not in ("cpu", "cuda"):
        raise HarnessError(f"device {settings.device!r} on a Dask cluster: give cpu or cuda (each evaluation "
                           "gets one GPU of its worker)")
    stored = set() if fresh or store is None else store.stored_keys()
    todo = [(c, w) for c in candidates for w in workloads if (c.hash, w.id, settings.hash) not in stored]
    baseline: Candidate | None = None
    missing: list[Workload] = []
    if reference:
        shipped = load_candidate(REFERENCE_PATH)
        # A candidate identical to the reference is the reference, under the name it was given.
        baseline = next((c for c in candidates if c.hash == shipped.hash), shipped)
        _stored_reference_walls(store, baseline, settings, workloads)
        own = {w.id for c, w in todo if c.hash == baseline.hash}
        needed = {w.id: w for _, w in todo}.values()
        missing = [w for w in needed if w.id in own or (baseline.hash, w.id, settings.hash) not in _REFERENCE_WALL_S]
        todo = [(c, w) for c, w in todo if c.hash != baseline.hash]
    chained = stop_at_first_failure or budget_s is not None
    tasks: list[tuple[Candidate, list[Workload]]] = []
    for candidate, workload in todo:
        if chained and tasks and tasks[-1][0] is candidate:
            tasks[-1][1].append(workload)
        else:
            tasks.append((candidate, [workload]))
    reruns: list[EvalResult] = []
    lost: list[EvalResult] = []

    def chains(calls: list[tuple]) -> Iterator[list[EvalResult]]:
        """The rows of each `_chain(*call)` as it ends, in any order."""
        if cluster is None:
            # Threads suffice: each evaluation's work happens in its own worker process.
            parallel = Parallel(n_jobs=jobs or default_jobs(), prefer="threads", return_as="generator_unordered")
            yield from parallel(delayed(_chain)(*call) for call in calls)
            return
        for outcome in cluster.map(_chain, calls, gpu=settings.device == "cuda"):
            if outcome.lost:
                crashed = _lost(*calls[outcome.index], reason=outcome.lost)
                lost.extend(crashed)
                yield crashed
            else:
                if outcome.runs > 1:
                    reruns.extend(outcome.value)
                yield outcome.value

    def rows() -> Iterator[EvalResult]:
        for (row,) in chains([(baseline, [w], settings, run_id, suite, None, {}, False, None) for w in missing]):
            if row.status == "ok":
                _REFERENCE_WALL_S[(row.candidate_hash, row.workload_id, settings.hash)] = row.eval_wall_s
            yield _as_reference(row)
        limits = {w.id: deadline(settings, _REFERENCE_WALL_S.get((baseline.hash, w.id, settings.hash), math.nan)
                                 if baseline is not None else math.nan) for w in workloads}
        for chain in chains([(c, ws, settings, run_id, suite, baseline, limits, stop_at_first_failure, budget_s)
                             for c, ws in tasks]):
            yield from chain

    done: list[EvalResult] = []
    for row in progress(rows(), len(missing) + len(todo)) if progress else rows():
        if store is not None:
            store.append([row])
        done.append(row)
    if store is not None:
        store.compact(AUTO_COMPACT_FILES)
    hashes = {c.hash for c in candidates}
    evaluated = sum(row.candidate_hash in hashes for row in done)
    reused = sum((c.hash, w.id, settings.hash) in stored for c in candidates for w in workloads)
    notes = [f"{len(reruns)} evaluations ran again on another Dask worker after theirs died"] if reruns else []
    if lost:
        notes.append(f"{len(lost)} evaluations lost their Dask worker on each of {RUNS_PER_CALL} runs "
                     f"and are stored as crash: {lost[0].error}")
    return RunReport(run_id, tuple(done), evaluated, reused, tuple(notes))
