"""Evaluation: one candidate on one workload gives one `EvalResult`; a run gives many.

The candidate runs in a worker process (`harness.sandbox`); this module checks what came
back and measures it (`harness.metrics`), and a run appends each row to the store as it
completes, skipping evaluations the store already holds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from harness import __version__
from harness.candidates import REFERENCE_PATH, Candidate, load_candidate
from harness.metrics import (InvalidPlacement, Placement, adrs_combined_score, adrs_leaderboard_score,
                             balance, check_placement, moved_replicas)
from harness.results import EvalResult, RowContext, now
from harness.sandbox import WorkerOutcome, WorkerRequest, run_worker
from harness.stats import summarize
from harness.store import AUTO_COMPACT_FILES, ResultStore
from harness.workloads import Workload


@dataclass(frozen=True)
class TimingConfig:
    """How the candidate's call is timed. After one untimed call per window (which yields
    the placements) and `warmup` more, timed calls cycle over the windows until at least
    `min_samples` (and every window once) and `min_time_s`, at most `max_samples`. Each
    sample is `perf_counter` around the call alone, on a fresh copy of the window's
    weights, bracketed by CUDA synchronisation on a GPU; garbage is collected before the
    timed calls and collection is off during them (as timeit does). A median whose IQR exceeds
    `unstable_iqr` of it is flagged."""

    warmup: int = 1
    min_samples: int = 5
    max_samples: int = 100
    min_time_s: float = 0.5
    unstable_iqr: float = 0.10

    def describe(self) -> str:
        return (f"median of perf_counter around the call, gc off while timing; "
                f"{self.warmup} warm-up after the placement pass; "
                f"{self.min_samples}-{self.max_samples} samples and >= {self.min_time_s:g} s over all windows")


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


def context(candidate: Candidate, workload: Workload, settings: Settings, run_id: str, suite: str) -> RowContext:
    return RowContext(
        run_id=run_id, suite=suite, candidate_name=candidate.name, candidate_hash=candidate.hash,
        candidate_path=candidate.path, parent_hash=candidate.parent_hash, diff_name=candidate.diff_name,
        diff_description=candidate.diff_description, diff_hash=candidate.diff_hash,
        workload_id=workload.id, workload_name=workload.name, workload_kind=workload.kind,
        num_windows=workload.num_windows, num_layers=workload.num_layers,
        num_logical_experts=workload.num_logical_experts, **vars(workload.topology),
        device=settings.device, settings_hash=settings.hash, timing_method=settings.timing.describe(),
        harness_version=__version__, torch_version=_version("torch"), numpy_version=_version("numpy"),
        cpu_model=_cpu_model(), cpu_count=default_jobs(),
        gpu_driver_version=_gpu_driver_version() if settings.device.startswith("cuda") else "",
    )


def evaluate(candidate: Candidate, workload: Workload, settings: Settings, run_id: str = "adhoc",
             suite: str = "", reference_runtime_s: float = float("nan")) -> EvalResult:
    """Run `candidate` on `workload` in a worker and score what it returned;
    `reference_runtime_s` is the reference's median on this workload, for the speedup."""
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
                                 outcome.wall_s, outcome.stderr_tail, outcome.stdout_tail)
    scoring_started = time.perf_counter()
    try:
        plans = _checked_plans(outcome.placements, workload, answer["input_changed"])
    except InvalidPlacement as exc:
        return EvalResult.failed(ctx, "invalid", str(exc), outcome.wall_s, outcome.stderr_tail, outcome.stdout_tail)
    return _scored(ctx, workload, plans, outcome, settings.timing, reference_runtime_s, scoring_started)


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


def _scored(ctx: RowContext, workload: Workload, plans: np.ndarray, outcome: WorkerOutcome,
            timing_config: TimingConfig, reference_runtime_s: float, scoring_started: float) -> EvalResult:
    topology, weights, answer = workload.topology, workload.weights, outcome.answer
    # Predictive protocol: the plan of window t serves window t+1; one window serves itself.
    pairs = [(0, 0)] if workload.num_windows == 1 else [(t, t + 1) for t in range(workload.num_windows - 1)]
    predictive = [balance(plans[plan], weights[scored], topology) for plan, scored in pairs]
    fit = [balance(plans[t], weights[t], topology).balancedness for t in range(workload.num_windows)]
    moves = [moved_replicas(plans[t - 1], plans[t], topology) for t in range(1, workload.num_windows)]
    timing = summarize(answer["runtime_samples_s"])
    mean = {name: float(np.mean([getattr(b, name) for b in predictive]))
            for name in ("balancedness", "replica_balancedness", "node_balancedness", "group_spread")}
    per_layer = np.mean([b.gpu_max_over_mean_per_layer for b in predictive], axis=0)
    return EvalResult(
        **vars(ctx), created_at=now(), status="ok", error="", **mean,
        fit_balancedness=float(np.mean(fit)),
        moved_replicas_per_plan=float(np.mean(moves)) if moves else float("nan"),
        runtime_s=timing.median_s, runtime_iqr_s=timing.iqr_s, runtime_min_s=timing.min_s,
        runtime_samples=timing.samples, runtime_unstable=timing.relative_iqr > timing_config.unstable_iqr,
        speedup_vs_reference=reference_runtime_s / timing.median_s, threads=answer["threads"],
        device_name=answer["device_name"], cuda_version=answer["cuda_version"],
        peak_device_memory_bytes=answer["peak_device_memory_bytes"], nondeterministic=answer["nondeterministic"],
        combined_score=adrs_combined_score(mean["replica_balancedness"], timing.median_s),
        adrs_score=adrs_leaderboard_score(mean["balancedness"], timing.median_s),
        scoring_s=time.perf_counter() - scoring_started, eval_wall_s=outcome.wall_s,
        stderr_tail=outcome.stderr_tail, stdout_tail=outcome.stdout_tail,
        gpu_max_over_mean_per_layer=tuple(per_layer.tolist()),
    )


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def default_jobs() -> int:
    return len(os.sched_getaffinity(0))


def run(candidates: list[Candidate], workloads: list[Workload], settings: Settings, store: ResultStore,
        suite: str = "", jobs: int | None = None, fresh: bool = False,
        progress: Callable[[Iterator[EvalResult], int], Iterator[EvalResult]] | None = None) -> tuple[str, int, int]:
    """Evaluate every (candidate, workload) pair the store lacks, appending each row as it
    completes. Returns the run id and how many evaluations were done and reused.

    Before the candidates, the DeepSeek reference is timed on each workload they need, in
    this run on this machine, so every row's `speedup_vs_reference` compares like with like.
    """
    run_id = new_run_id()
    stored = set() if fresh else store.stored_keys()
    todo = [(c, w) for c in candidates for w in workloads if (c.hash, w.id, settings.hash) not in stored]
    shipped = load_candidate(REFERENCE_PATH)
    # A candidate identical to the reference is the reference, under the name it was given.
    reference = next((c for c in candidates if c.hash == shipped.hash), shipped)
    needed = list({w.id: w for _, w in todo}.values())
    todo = [(c, w) for c, w in todo if c.hash != reference.hash]
    parallel = Parallel(n_jobs=jobs or default_jobs(), prefer="threads", return_as="generator_unordered")
    reference_runtime_s: dict[str, float] = {}

    def rows() -> Iterator[EvalResult]:
        # Threads suffice: each evaluation's work happens in its own worker process.
        for row in parallel(delayed(evaluate)(reference, w, settings, run_id, suite) for w in needed):
            reference_runtime_s[row.workload_id] = row.runtime_s
            yield replace(row, speedup_vs_reference=1.0) if row.status == "ok" else row
        yield from parallel(delayed(evaluate)(c, w, settings, run_id, suite, reference_runtime_s[w.id])
                            for c, w in todo)

    total = len(needed) + len(todo)
    for row in progress(rows(), total) if progress else rows():
        store.append([row])
    store.compact(AUTO_COMPACT_FILES)
    evaluated = len(todo) + sum(c.hash == reference.hash for c in candidates) * len(needed)
    return run_id, evaluated, len(candidates) * len(workloads) - evaluated
