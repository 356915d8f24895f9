"""Evaluation: one candidate on one workload gives one `EvalResult`; a run gives many.

The candidate runs in a worker process (`harness.sandbox`); this module checks what came
back and measures it (`harness.metrics`), and a run appends each row to the store as it
completes, skipping evaluations the store already holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata

import numpy as np
from joblib import Parallel, delayed

from harness import __version__
from harness.candidates import Candidate
from harness.metrics import (InvalidPlacement, Placement, adrs_combined_score, adrs_leaderboard_score,
                             balance, check_placement, moved_replicas)
from harness.results import EvalResult, RowContext, now
from harness.sandbox import WorkerRequest, run_worker
from harness.stats import summarize
from harness.store import ResultStore
from harness.workloads import Workload


@dataclass(frozen=True)
class TimingConfig:
    """After one untimed call per window (which yields the placements and warms up),
    timed calls cycle over the windows until at least `min_samples` and `min_time_s`,
    at most `max_samples`."""

    min_samples: int = 3
    max_samples: int = 50
    min_time_s: float = 0.5

    def describe(self) -> str:
        return (f"perf_counter around the call only, after an untimed pass over the windows; "
                f"{self.min_samples}-{self.max_samples} samples, at least {self.min_time_s:g} s; median")


@dataclass(frozen=True)
class Settings:
    """How evaluations are run; part of the key under which results are reused."""

    device: str = "cpu"
    threads: int = 1
    timeout_s: float = 120.0
    memory_mb: int = 4096
    timing: TimingConfig = field(default_factory=TimingConfig)

    @property
    def hash(self) -> str:
        payload = json.dumps({**asdict(self), "harness_version": __version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda` when torch sees a GPU, else `cpu`."""
    if device != "auto":
        return device
    import torch  # only `auto` needs torch in the parent

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return ""


def context(candidate: Candidate, workload: Workload, settings: Settings, run_id: str, suite: str) -> RowContext:
    return RowContext(
        run_id=run_id, suite=suite, candidate_name=candidate.name, candidate_hash=candidate.hash,
        candidate_path=candidate.path, parent_hash=candidate.parent_hash, diff_name=candidate.diff_name,
        diff_description=candidate.diff_description, diff_hash=candidate.diff_hash,
        workload_id=workload.id, workload_name=workload.name, workload_kind=workload.kind,
        num_windows=workload.num_windows, num_layers=workload.num_layers,
        num_logical_experts=workload.num_logical_experts, **vars(workload.topology),
        device=settings.device, settings_hash=settings.hash, timing_method=settings.timing.describe(),
        harness_version=__version__, torch_version=_torch_version(),
    )


def evaluate(candidate: Candidate, workload: Workload, settings: Settings, run_id: str = "adhoc",
             suite: str = "") -> EvalResult:
    """Run `candidate` on `workload` in a worker and score what it returned."""
    ctx = context(candidate, workload, settings, run_id, suite)
    if candidate.patch_error:
        return EvalResult.failed(ctx, "patch_failed", candidate.patch_error)
    outcome = run_worker(WorkerRequest(
        source=candidate.source, weights=workload.weights, topology=vars(workload.topology),
        device=settings.device, threads=settings.threads, timing=asdict(settings.timing),
        timeout_s=settings.timeout_s, memory_mb=settings.memory_mb,
    ))
    answer = outcome.answer
    if outcome.status or answer["status"] != "ok":
        return EvalResult.failed(ctx, outcome.status or answer["status"], outcome.error or answer["error"],
                                 outcome.wall_s, outcome.stderr_tail)
    try:
        plans = _checked_plans(outcome.placements, workload, answer["input_changed"])
    except InvalidPlacement as exc:
        return EvalResult.failed(ctx, "invalid", str(exc), outcome.wall_s, outcome.stderr_tail)
    return _scored(ctx, workload, plans, answer, outcome.wall_s, outcome.stderr_tail)


def _checked_plans(placements: dict[str, np.ndarray], workload: Workload, input_changed: list[bool]) -> np.ndarray:
    """Check every window's placement; return the plans `[windows, layers, num_replicas]`."""
    plans = []
    for t in range(workload.num_windows):
        if input_changed[t]:
            raise InvalidPlacement(f"window {t}: the call changed its input weight tensor")
        placement = Placement(placements[f"phy2log_{t}"], placements[f"log2phy_{t}"], placements[f"logcnt_{t}"])
        try:
            check_placement(placement, workload.num_layers, workload.num_logical_experts, workload.topology)
        except InvalidPlacement as exc:
            raise InvalidPlacement(f"window {t}: {exc}") from None
        plans.append(placement.phy2log.astype(np.int64))
    return np.stack(plans)


def _scored(ctx: RowContext, workload: Workload, plans: np.ndarray, answer: dict, wall_s: float,
            stderr_tail: str) -> EvalResult:
    topology, weights = workload.topology, workload.weights
    # Predictive protocol: the plan of window t serves window t+1; one window serves itself.
    pairs = [(0, 0)] if workload.num_windows == 1 else [(t, t + 1) for t in range(workload.num_windows - 1)]
    predictive = [balance(plans[plan], weights[scored], topology) for plan, scored in pairs]
    fit = [balance(plans[t], weights[t], topology).balancedness for t in range(workload.num_windows)]
    moves = [moved_replicas(plans[t - 1], plans[t], topology) for t in range(1, workload.num_windows)]
    timing = summarize(answer["runtime_samples_s"])
    mean = {name: float(np.mean([getattr(b, name) for b in predictive]))
            for name in ("balancedness", "replica_balancedness", "node_balancedness", "group_spread")}
    return EvalResult(
        **vars(ctx), created_at=now(), status="ok", error="", **mean,
        fit_balancedness=float(np.mean(fit)),
        moved_replicas_per_plan=float(np.mean(moves)) if moves else float("nan"),
        runtime_s=timing.median_s, runtime_iqr_s=timing.iqr_s, runtime_min_s=timing.min_s,
        runtime_samples=timing.samples, threads=answer["threads"], nondeterministic=answer["nondeterministic"],
        combined_score=adrs_combined_score(mean["replica_balancedness"], timing.median_s),
        adrs_score=adrs_leaderboard_score(mean["balancedness"], timing.median_s),
        eval_wall_s=wall_s, stderr_tail=stderr_tail,
    )


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def default_jobs() -> int:
    return len(os.sched_getaffinity(0))


def run(candidates: list[Candidate], workloads: list[Workload], settings: Settings, store: ResultStore,
        suite: str = "", jobs: int | None = None, fresh: bool = False,
        progress: Callable[[Iterator[EvalResult], int], Iterator[EvalResult]] | None = None) -> tuple[str, int]:
    """Evaluate every (candidate, workload) pair the store lacks, appending each row as it
    completes. Returns the run id and how many evaluations were reused from the store."""
    run_id = new_run_id()
    stored = set() if fresh else store.stored_keys()
    todo = [(c, w) for c in candidates for w in workloads if (c.hash, w.id, settings.hash) not in stored]
    # Threads suffice: each evaluation's work happens in its own worker process.
    results = Parallel(n_jobs=jobs or default_jobs(), prefer="threads", return_as="generator_unordered")(
        delayed(evaluate)(c, w, settings, run_id, suite) for c, w in todo
    )
    for row in progress(results, len(todo)) if progress else results:
        store.append([row])
    return run_id, len(candidates) * len(workloads) - len(todo)
