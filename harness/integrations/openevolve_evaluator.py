"""OpenEvolve evaluation file for EPLB candidates (`eplb-harness integrations openevolve`
prints its path; `eplb-harness integrations openevolve --example-dir DIR` writes a search
folder whose `evaluator.py` calls it).

OpenEvolve imports this file and calls `evaluate(program_path)`, or with
`evaluator.cascade_evaluation: true` first `evaluate_stage1` (the fast validity check on
the `quick` suite, with the `screen` timing) and, past `cascade_thresholds[0]`,
`evaluate_stage2` (the `default` suite). Each returns an
`openevolve.evaluation_result.EvaluationResult` (a plain metrics dict when openevolve
cannot be imported) whose metrics always hold every key of `METRIC_KEYS`, 0.0 on
failure, and whose artifacts on failure carry the status, the reason and the
candidate's stderr tail.

The candidate runs in the harness's worker processes, killed at the evaluation's budget
(`EPLB_HARNESS_TIMEOUT`, default 120 s): a call returns within that budget plus a few
seconds whatever the candidate does, so OpenEvolve's own thread timeout (which cannot
stop a hung call) never has to fire. Keep `evaluator.timeout` above the budget.

Settings: environment variables `EPLB_HARNESS_SCORE` (adrs_combined | balancedness |
adrs_leaderboard), `EPLB_HARNESS_SUITE`, `EPLB_HARNESS_STAGE1_SUITE`,
`EPLB_HARNESS_STAGE1_TIMING`, `EPLB_HARNESS_RESULTS`, `EPLB_HARNESS_TIMEOUT`, `EPLB_HARNESS_DEVICE`, ..., a config file
named by `EPLB_HARNESS_CONFIG`, or `evaluator.evaluator_args` (forwarded by OpenEvolve as
keywords to `evaluate`, not to the cascade stages). See docs/integrations.md.

Lineage: OpenEvolve gives the evaluator a temporary file and nothing else, but while its
worker process evaluates a child, the worker's main thread sits in
`openevolve.process_parallel._run_iteration`, whose frame holds the child's id and its
parent program. The rows are then named by that id and carry the parent's source hash
(`openevolve_ids`); the initial program, which the controller evaluates itself, keeps
the default name `openevolve-<hash prefix>`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    import harness  # noqa: F401  (installed in the framework's environment)
except ImportError:  # run from a checkout: the package's root is two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.candidates import source_hash  # noqa: E402
from harness.integrations.frameworks import METRIC_KEYS, Evaluation, FrameworkIds, evaluate_program  # noqa: E402

__all__ = ["METRIC_KEYS", "evaluate", "evaluate_stage1", "evaluate_stage2", "openevolve_ids"]

_ITERATION = ("openevolve.process_parallel", "_run_iteration")


def openevolve_ids() -> FrameworkIds:
    """The id and parent of the child OpenEvolve is evaluating in this process, from its
    iteration's frame on whichever thread runs it (the call itself runs in OpenEvolve's
    evaluation thread); none outside OpenEvolve's iteration loop."""
    for frame in sys._current_frames().values():
        while frame is not None:
            if (frame.f_globals.get("__name__"), frame.f_code.co_name) == _ITERATION:
                child_id = frame.f_locals.get("child_id")
                parent_code = getattr(frame.f_locals.get("parent"), "code", None)
                return FrameworkIds(program_id=child_id if isinstance(child_id, str) else "",
                                    parent_hash=source_hash(parent_code) if isinstance(parent_code, str) else "")
            frame = frame.f_back
    return FrameworkIds()


def _result(evaluation: Evaluation) -> Any:
    try:
        from openevolve.evaluation_result import EvaluationResult
    except ImportError:
        return dict(evaluation.metrics)
    return EvaluationResult(metrics=dict(evaluation.metrics), artifacts=evaluation.artifacts())


def evaluate(program_path: str, **options: Any) -> Any:
    """Score the program on the full suite (`EPLB_HARNESS_SUITE`, default `default`).
    `options`: `program_id`, `parent_id`, `config` and any IntegrationConfig field."""
    return _result(evaluate_program(program_path, stage="full", framework="openevolve", found=openevolve_ids(),
                                     **options))


def evaluate_stage1(program_path: str, **options: Any) -> Any:
    """Cascade stage 1: validity and a first score on the small `quick` suite."""
    return _result(evaluate_program(program_path, stage="quick", framework="openevolve", found=openevolve_ids(),
                                     **options))


def evaluate_stage2(program_path: str, **options: Any) -> Any:
    """Cascade stage 2: the full suite; its metrics replace stage 1's."""
    return _result(evaluate_program(program_path, stage="full", framework="openevolve", found=openevolve_ids(),
                                     **options))
