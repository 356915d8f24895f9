"""The result of one (candidate, workload) evaluation: one frozen record, one store row.

`EvalResult`'s fields are the store's columns (the Parquet schema is derived from them in
`harness.store`), with units in the names. A failed evaluation is built by `failed()`
only: its metrics are NaN, its `status` says what happened and `error` says why, as
`module.Class: message` for exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

STATUSES = ("ok", "invalid", "error", "timeout", "crash", "patch_failed")
NAN = float("nan")


@dataclass(frozen=True)
class RowContext:
    """Everything a row says about what was evaluated, where and how; known before the
    evaluation starts and shared by its success and failure rows."""

    run_id: str
    suite: str
    candidate_name: str
    candidate_hash: str
    candidate_path: str
    parent_hash: str
    diff_name: str
    diff_description: str
    diff_hash: str
    workload_id: str
    workload_name: str
    workload_kind: str
    num_windows: int
    num_layers: int
    num_logical_experts: int
    num_replicas: int
    num_groups: int
    num_nodes: int
    num_gpus: int
    # Ceilings of the workload's fit balancedness (harness.bounds): for any placement, and
    # for one that keeps every expert group on one node (NaN where none can; the method
    # says whether that figure is exact).
    bound_balancedness: float
    local_bound_balancedness: float
    local_bound_method: str
    device: str
    settings_hash: str
    deadline_s: float  # how long the evaluation might run
    deadline_rule: str  # why: --timeout, derived from the reference's time, or a budget's rest
    timing_method: str
    harness_version: str
    torch_version: str
    numpy_version: str
    cpu_model: str
    cpu_count: int
    gpu_driver_version: str


@dataclass(frozen=True)
class EvalResult(RowContext):
    """One stored row: the context, the outcome and the measures.

    Balance figures are means over the workload's window pairs: `balancedness` and its
    replica/node variants use the predictive protocol (plan on window t, score on t+1; a
    single window is scored on itself), `fit_balancedness` plans and scores on the same
    window. Runtime figures are of the candidate's call alone; `runtime_unstable` flags an
    IQR above 10% of the median. The DeepSeek reference is timed beside it, call for call
    on the same window in turns: `speedup_vs_reference` is the median of the per-pair
    ratios (reference time over this one's) with a 95% interval, `reference_runtime_s`
    the reference's median (NaN without a reference). `score` is the harness's score of
    balance and paired speedup. `scoring_s` is the harness's own time to check and
    measure the placements.
    """

    created_at: datetime
    status: str
    error: str
    balancedness: float
    replica_balancedness: float
    node_balancedness: float
    fit_balancedness: float
    group_spread: float
    moved_replicas_per_plan: float
    runtime_s: float
    runtime_iqr_s: float
    runtime_min_s: float
    runtime_samples: int
    runtime_unstable: bool
    speedup_vs_reference: float
    speedup_ci95_low: float
    speedup_ci95_high: float
    reference_runtime_s: float
    threads: int
    device_name: str
    cuda_version: str
    peak_device_memory_bytes: int
    nondeterministic: bool
    score: float
    combined_score: float
    adrs_score: float
    scoring_s: float
    eval_wall_s: float
    stderr_tail: str  # the last 4 KiB the worker wrote to stderr (a flood keeps only this)
    stdout_tail: str  # likewise for stdout
    # Per layer, max over mean GPU load (1.0 = even), mean over the window pairs of the
    # predictive protocol; empty for a failed evaluation. For per-layer plots in reports.
    gpu_max_over_mean_per_layer: tuple[float, ...] = ()
    # How the candidate's process was confined: `namespaces` (no network, read-only files
    # but its work folder, no home folder; see harness.confine) or `process` (its own
    # process only); empty when no worker ran (patch_failed, a budget spent before it).
    confinement: str = ""
    # The calls each timing sample is the mean of (a turn's calls): the candidate's, and
    # the reference's beside it (0 without a reference, and in failed rows).
    runtime_calls_per_sample: int = 0
    reference_calls_per_sample: int = 0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")

    @classmethod
    def failed(cls, context: RowContext, status: str, error: str, eval_wall_s: float = NAN,
               stderr_tail: str = "", stdout_tail: str = "", confinement: str = "") -> EvalResult:
        """The row of an evaluation that produced no valid placement."""
        if status == "ok":
            raise ValueError("a failed result needs a failure status")
        return cls(
            **vars(context), created_at=now(), status=status, error=error,
            balancedness=NAN, replica_balancedness=NAN, node_balancedness=NAN, fit_balancedness=NAN,
            group_spread=NAN, moved_replicas_per_plan=NAN, runtime_s=NAN, runtime_iqr_s=NAN,
            runtime_min_s=NAN, runtime_samples=0, runtime_unstable=False, speedup_vs_reference=NAN,
            speedup_ci95_low=NAN, speedup_ci95_high=NAN, reference_runtime_s=NAN, threads=0,
            device_name="", cuda_version="", peak_device_memory_bytes=0, nondeterministic=False,
            score=NAN, combined_score=NAN, adrs_score=NAN, scoring_s=NAN, eval_wall_s=eval_wall_s,
            stderr_tail=stderr_tail, stdout_tail=stdout_tail, gpu_max_over_mean_per_layer=(),
            confinement=confinement,
        )


def now() -> datetime:
    return datetime.now(UTC)


def column_names() -> list[str]:
    return [f.name for f in fields(EvalResult)]


def describe_exception(exc: BaseException) -> str:
    """`module.Class: message`, the form every stored exception takes."""
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}: {exc}"
