"""What the OpenEvolve and ShinkaEvolve evaluators share: configuration, one bounded
evaluation of a program file on a suite, the metrics dict, feedback text and storage.

One evaluation is `harness.evaluate.run` on one program: every workload of a suite in
order, one worker process each, stopping at the first failure (a program that fails
anywhere scores 0.0, so the rest would cost time and tell nothing). `timeout` is what
one workload may take, as on the command line (so rows share the CLI's settings hash);
`budget` is what the whole call may take: each worker gets what is left of it and is
killed with its process group when it runs out.

Every row lands in the Parquet store (unless `results` is `none`), with lineage when the
caller gives it or the framework's records show it (`FrameworkIds`): the program id
becomes `candidate_name`, the parent's source hash `parent_hash`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.candidates import Candidate, source_hash
from harness.errors import HarnessError
from harness.evaluate import context, run
from harness.report import SCORES, leaderboard, to_standings
from harness.results import EvalResult
from harness.settings import RESULTS_DIR, TIMING_PRESETS, Settings, TimingConfig, resolve_device, timing_preset
from harness.stats import finite_or
from harness.store import ResultStore, to_table
from harness.workloads import Workload, suite_workloads

__all__ = ["METRIC_KEYS", "SCORES", "Evaluation", "FrameworkIds", "IntegrationConfig", "evaluate_program",
           "resolve_config", "search_run_id"]

ENV_PREFIX = "EPLB_HARNESS_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
PROGRAM_ID_ENV = ENV_PREFIX + "PROGRAM_ID"
PARENT_ID_ENV = ENV_PREFIX + "PARENT_ID"
NO_STORE = ("", "none", "off")

# Every result carries every one of these keys, failures included (as 0.0), so a
# MAP-Elites feature dimension never goes missing.
METRIC_KEYS = (
    "combined_score", "valid", "balancedness", "replica_balancedness", "node_balancedness",
    "fit_balancedness", "worst_balancedness", "group_spread", "moved_replicas_per_plan", "runtime_s",
    "speedup_vs_reference", "score", "adrs_combined_score", "adrs_score",
)
_CLI = Settings()

@dataclass(frozen=True)
class IntegrationConfig:
    """How a framework's evaluation call runs. From lowest to highest precedence:
    these defaults, a config file (TOML, or JSON by suffix; `EPLB_HARNESS_CONFIG` or the
    caller's `config`), `EPLB_HARNESS_<FIELD>` environment variables, the caller's keywords."""

    score: str = "harness"  # which figure is `combined_score`: a key of SCORES
    suite: str = "default"  # `evaluate` and `evaluate_stage2`
    stage1_suite: str = "quick"  # `evaluate_stage1`: the fast validity check
    stage1_timing: str = "screen"  # its timing, a name of TIMING_PRESETS: a first pass needs no 2% speedup
    results: str = RESULTS_DIR  # the Parquet store; `none` stores nothing
    budget: float = 120.0  # seconds for one whole evaluation call, all its workloads
    # The CLI's defaults, so that rows share its settings hash.
    timeout: float = _CLI.timeout_s  # seconds for one workload, as the CLI's --timeout
    device: str = _CLI.device
    threads: int = _CLI.threads
    memory_mb: int = _CLI.memory_mb
    run_id: str = ""  # default: the search's, where the framework shows it (FrameworkIds), else its name
    scheduler: str = ""  # tcp://HOST:PORT of a Dask scheduler whose workers evaluate (docs/cluster.md); "": here
    # A name of TIMING_PRESETS, as the CLI's --timing; or a table of TimingConfig fields
    # (file or keywords only).
    timing: str | Mapping[str, float] = "precise"

    def settings(self, stage: str = "full") -> Settings:
        """The evaluation settings of `stage` (`quick`: the cascade's first; with the
        defaults, the full stage's are the CLI's)."""
        if stage == "quick":
            timing = timing_preset(self.stage1_timing)
        elif isinstance(self.timing, str):
            timing = timing_preset(self.timing)
        else:
            timing = TimingConfig(**self.timing)
        return Settings(device=resolve_device(self.device), threads=self.threads, timeout_s=self.timeout,
                        memory_mb=self.memory_mb, timing=timing)


_CONFIG_FIELDS = {f.name: f for f in fields(IntegrationConfig)}
_CASTS = {"score": str, "suite": str, "stage1_suite": str, "stage1_timing": str, "results": str, "budget": float,
          "timeout": float, "device": str, "threads": int, "memory_mb": int, "run_id": str, "scheduler": str,
          "timing": str}
_TIMING_FIELDS = {f.name for f in fields(TimingConfig)}


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise HarnessError(f"integration config {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise HarnessError(f"integration config {path} must hold a table of settings")
    # Paths in the file are relative to the file.
    for key in ("results", "suite", "stage1_suite"):
        value = data.get(key)
        if isinstance(value, str) and value.lower() not in NO_STORE and (
                key == "results" or Path(value).suffix or "/" in value):
            data[key] = str((path.parent / value).resolve())
    return data


def _cast(key: str, value: Any, origin: str) -> Any:
    if key not in _CONFIG_FIELDS:
        known = ", ".join(sorted(_CONFIG_FIELDS))
        raise HarnessError(f"unknown integration setting {key!r} in {origin}; known: {known}")
    # A timing by name: stage1_timing always, timing unless it is a table.
    if key == "stage1_timing" or (key == "timing" and isinstance(value, str)):
        if not isinstance(value, str) or value not in TIMING_PRESETS:
            raise HarnessError(f"{key} {value!r} in {origin} is not one of {', '.join(TIMING_PRESETS)}")
        return value
    if key == "timing":
        if not isinstance(value, Mapping) or not set(value) <= _TIMING_FIELDS:
            known = ", ".join(sorted(_TIMING_FIELDS))
            raise HarnessError(f"timing in {origin} must be one of {', '.join(TIMING_PRESETS)} or a table with "
                               f"keys among {known}")
        return dict(value)
    try:
        return _CASTS[key](value)
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"integration setting {key}={value!r} in {origin} is not a {_CASTS[key].__name__}") from exc


def resolve_config(config: str | os.PathLike | None = None, **overrides: Any) -> IntegrationConfig:
    """The configuration in force now (see IntegrationConfig for the precedence)."""
    values: dict[str, Any] = {}
    config_path = config or os.environ.get(CONFIG_ENV)
    if config_path:
        path = Path(config_path)
        for key, value in _read_config_file(path).items():
            values[key] = _cast(key, value, str(path))
    for key in _CASTS:
        env = os.environ.get(ENV_PREFIX + key.upper())
        if env is not None and env != "":
            values[key] = _cast(key, env, ENV_PREFIX + key.upper())
    for key, value in overrides.items():
        if value is not None:
            values[key] = _cast(key, value, "the caller's arguments")
    cfg = IntegrationConfig(**values)
    if cfg.score not in SCORES:
        raise HarnessError(f"unknown score {cfg.score!r} for combined_score; choose one of {', '.join(SCORES)}")
    if not (cfg.budget > 0 and (cfg.timeout is None or cfg.timeout > 0)) or cfg.threads < 1 or cfg.memory_mb < 1:
        raise HarnessError("budget, timeout, threads and memory_mb must be positive")
    return cfg


_SUITES: dict[str, tuple[float, list[Workload]]] = {}


def _suite(name: str) -> list[Workload]:
    """The suite's workloads, built once per process (per spec file version)."""
    path = Path(name)
    stamp = path.stat().st_mtime if path.is_file() else 0.0
    cached = _SUITES.get(name)
    if cached is None or cached[0] != stamp:
        cached = _SUITES[name] = (stamp, suite_workloads(name))
    return cached[1]


@dataclass(frozen=True)
class FrameworkIds:
    """What the framework's own records tell about the program being evaluated, where the
    evaluator can read them: the search's run id, the program's id and its parent's
    source hash. Each is a default, below the caller's options and the environment."""

    run_id: str = ""
    program_id: str = ""
    parent_hash: str = ""


def search_run_id(framework: str, folder: Path) -> str:
    """The run id of the search living in `folder`: readable, and distinct for every
    folder (a short hash of its absolute path), so searches can share one store. No
    slash: the store names its files after run ids."""
    folder = folder.resolve()
    return f"{framework}-{folder.name}-{hashlib.sha256(str(folder).encode()).hexdigest()[:6]}"


def _framework_candidate(program_path: Path, source: str, framework: str, program_id: str | None,
                         parent_id: str | None, found: FrameworkIds) -> Candidate:
    """The candidate with its lineage. Its name is the program id: the caller's, else
    `EPLB_HARNESS_PROGRAM_ID`, else the framework's own (`found`), else
    `<framework>-<hash prefix>`. Its `parent_hash` comes from the parent id (the caller's,
    else `EPLB_HARNESS_PARENT_ID`: a path to the parent's source gives that source's hash,
    any other id is kept as given), else from `found`."""
    digest = source_hash(source)
    program_id = program_id or os.environ.get(PROGRAM_ID_ENV) or found.program_id or f"{framework}-{digest[:8]}"
    parent_hash = parent_id or os.environ.get(PARENT_ID_ENV) or ""
    if parent_hash and Path(parent_hash).is_file():
        parent_hash = source_hash(Path(parent_hash).read_text(encoding="utf-8", errors="replace"))
    return Candidate(name=program_id, source=source, hash=digest, path=str(program_path),
                     parent_hash=parent_hash or found.parent_hash)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation call's outcome, in the shapes both frameworks need."""

    status: str  # ok, or the first failure's status
    reason: str  # the first failure's error ("" when ok)
    workload: str  # the failing workload, or the weakest one when ok
    metrics: dict[str, float]  # every METRIC_KEYS key
    per_workload: dict[str, dict[str, Any]]
    feedback: str
    stderr_tail: str
    candidate_hash: str
    settings_hash: str
    suite: str
    score: str
    stored_in: str
    rows: list[EvalResult]

    @property
    def correct(self) -> bool:
        return self.status == "ok"

    def artifacts(self) -> dict[str, str]:
        """OpenEvolve artifacts: on failure the status, the reason and the stderr tail;
        always the feedback."""
        artifacts = {"feedback": self.feedback}
        if not self.correct:
            artifacts.update(status=self.status, reason=self.reason, workload=self.workload,
                             stderr=self.stderr_tail or "(empty)")
        return artifacts


def _metrics(rows: list[EvalResult], score: str) -> dict[str, float]:
    """Every METRIC_KEYS figure: the leaderboard's aggregation of the rows (one program),
    0.0 for all when any workload failed."""
    if not rows or any(row.status != "ok" for row in rows):
        return dict.fromkeys(METRIC_KEYS, 0.0)
    (standing,) = to_standings(leaderboard(to_table(rows)))
    figures = {key: getattr(standing, key) for key in METRIC_KEYS if hasattr(standing, key)}
    figures.update(valid=1.0, adrs_combined_score=standing.combined_score,
                   combined_score=getattr(standing, SCORES[score][0]))
    return {key: finite_or(figures[key], 0.0) for key in METRIC_KEYS}


def _feedback(status: str, reason: str, workload: str, rows: list[EvalResult], metrics: dict[str, float],
              budget_s: float, stderr_tail: str) -> str:
    """What the proposer should fix, in a few sentences."""
    if status == "ok":
        worst = min(rows, key=lambda row: row.balancedness)
        slowest = max(rows, key=lambda row: row.runtime_s)
        return (
            f"Valid on all {len(rows)} workloads. Mean GPU balancedness {metrics['balancedness']:.4f} "
            f"(1.0 is perfect; replica {metrics['replica_balancedness']:.4f}, "
            f"node {metrics['node_balancedness']:.4f}), "
            f"mean runtime {metrics['runtime_s'] * 1e3:.2f} ms, combined_score {metrics['combined_score']:.4f}. "
            f"Weakest workload: {worst.workload_name} with GPU balancedness {worst.balancedness:.4f} "
            f"({worst.num_layers} layers, {worst.num_logical_experts} experts, {worst.num_replicas} replicas "
            f"on {worst.num_gpus} GPUs in {worst.num_nodes} nodes, {worst.num_groups} groups; "
            f"group spread {worst.group_spread:.2f} nodes per group): improve the balance there. "
            f"Slowest workload: {slowest.workload_name} at {slowest.runtime_s * 1e3:.2f} ms per call."
        )
    tail = stderr_tail.strip()[-1500:]
    stderr = f"\nstderr tail of the candidate:\n{tail}" if tail else ""
    if status == "invalid":
        return (f"INVALID placement on workload {workload}: {reason}. A placement must satisfy every rule of the "
                f"contract: phy2log [layers, num_replicas] with ids in [0, E), every expert at least one replica, "
                f"logcnt equal to the per-layer count of phy2log, log2phy listing exactly each expert's slots "
                f"then -1, integer dtypes, and the input weight left unchanged. Fix that rule first.{stderr}")
    if status == "timeout":
        return (f"TIMEOUT on workload {workload}: {reason}. rebalance_experts must return well within the "
                f"{budget_s:g} s budget of the whole evaluation; remove unbounded loops and per-element Python "
                f"loops over layers and experts (vectorise with torch).{stderr}")
    if status == "error":
        return f"ERROR on workload {workload}: {reason}. Fix the exception.{stderr}"
    if status == "crash":
        return (f"CRASH on workload {workload}: {reason}. The process died (signal, exit or out of memory); "
                f"reduce memory use and do not exit the process.{stderr}")
    return f"{status.upper()} on workload {workload}: {reason}.{stderr}"


def evaluate_program(program_path: str | os.PathLike, *, stage: str = "full", framework: str = "harness",
                     program_id: str | None = None, parent_id: str | None = None, found: FrameworkIds = FrameworkIds(),
                     config: str | os.PathLike | None = None, **overrides: Any) -> Evaluation:
    """Score the program at `program_path` on the configured suite (`stage="quick"`: the
    stage-1 suite) within the configured budget, store the rows, and summarise. The rows'
    run id is the configured one, else `found.run_id`, else the framework's name.

    Raises HarnessError only for a bad configuration; whatever the candidate does is a result.
    """
    cfg = resolve_config(config, **overrides)
    settings = cfg.settings(stage)
    suite = cfg.stage1_suite if stage == "quick" else cfg.suite
    workloads = _suite(suite)
    run_id = cfg.run_id or found.run_id or framework
    path = Path(program_path)
    try:
        source, read_error = path.read_text(encoding="utf-8"), ""
    except (OSError, UnicodeDecodeError) as exc:
        source, read_error = "", f"the program {path} cannot be read: {exc}"
    candidate = _framework_candidate(path, source, framework, program_id, parent_id, found)
    store = _writable_store(cfg.results)
    if read_error:
        rows = [EvalResult.failed(context(candidate, workloads[0], settings, run_id, suite), "error", read_error)]
        if store is not None:
            store.append(rows)
    else:
        done = run([candidate], workloads, settings, store, suite=suite, run_id=run_id, jobs=1, fresh=True,
                   stop_at_first_failure=True, budget_s=cfg.budget, scheduler=cfg.scheduler or None)
        # The reference's own rows, where this call had to make them, are stored but not this program's.
        rows = [row for row in done.rows if row.candidate_hash == candidate.hash]

    failed = next((row for row in rows if row.status != "ok"), None)
    metrics = _metrics(rows, cfg.score)
    status, reason = (failed.status, failed.error) if failed else ("ok", "")
    stderr_tail = failed.stderr_tail if failed else ""
    workload = failed.workload_name if failed else min(rows, key=lambda r: r.balancedness).workload_name
    stored_in = "" if store is None else str(store.root)
    return Evaluation(
        status=status, reason=reason, workload=workload, metrics=metrics,
        per_workload={row.workload_name: {"status": row.status, "balancedness": finite_or(row.balancedness, 0.0),
                                          "runtime_s": finite_or(row.runtime_s, 0.0)} for row in rows},
        feedback=_feedback(status, reason, workload, rows, metrics, cfg.budget, stderr_tail),
        stderr_tail=stderr_tail, candidate_hash=candidate.hash, settings_hash=settings.hash, suite=suite,
        score=cfg.score, stored_in=stored_in, rows=rows,
    )


def _writable_store(results: str) -> ResultStore | None:
    """The configured store; None when storing is off, or when the folder cannot be
    written (said on stderr: a store must never fail an evaluation)."""
    if results.lower() in NO_STORE:
        return None
    try:
        store = ResultStore(results)
        store.root.mkdir(parents=True, exist_ok=True)
        if not os.access(store.root, os.W_OK):
            raise OSError(f"{store.root} is not writable")
        return store
    except (OSError, HarnessError) as exc:
        print(f"eplb-harness: warning: result store {results} not written: {exc}", file=sys.stderr)
        return None
