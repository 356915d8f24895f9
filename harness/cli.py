"""The command line: a thin layer over the library's stages.

Exit status 0 when the command did its job (a failed candidate is a result), 2 for bad
input with a one-line reason, 1 (with a traceback) for a bug in the harness.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from harness import __version__
from harness.candidates import discover
from harness.diffs import apply_diff_file
from harness.errors import HarnessError
from harness.evaluate import Settings, TimingConfig, default_jobs, evaluate, resolve_device, run
from harness.report import format_table, leaderboard
from harness.results import EvalResult
from harness.store import ResultStore
from harness.workloads import resolve_workloads

TOPOLOGY_OPTIONS = ("num_replicas", "num_groups", "num_nodes", "num_gpus")
AGGREGATE_KEYS = ("status", "error", "balancedness", "replica_balancedness", "node_balancedness",
                  "runtime_s", "combined_score")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _add_evaluation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parent", help="parent program of the diffs given (else parents.toml beside each diff)")
    parser.add_argument("--suite", help="suite name under workloads/suites/ or a suite file (default: default)")
    parser.add_argument("--workload", action="append", default=[], metavar="NAME|FILE",
                        help="a workload name or an array file; repeatable; replaces the suite")
    for option in TOPOLOGY_OPTIONS:
        parser.add_argument(f"--{option.replace('_', '-')}", dest=option, type=_positive_int,
                            help="override the workloads' own topology")
    parser.add_argument("--results", default="results", help="result store folder (default: results/)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N] (default: cpu)")
    parser.add_argument("--timeout", type=_positive_float, default=120.0, help="seconds per evaluation (default: 120)")
    parser.add_argument("--memory-mb", type=_positive_int, default=4096, help="memory cap per evaluation (default: 4096)")
    parser.add_argument("--threads", type=_positive_int, default=1, help="torch threads per worker (default: 1)")
    parser.add_argument("--fresh", action="store_true", help="evaluate again even what the store already holds")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(device=resolve_device(args.device), threads=args.threads, timeout_s=args.timeout,
                    memory_mb=args.memory_mb, timing=TimingConfig())


def _workloads(args: argparse.Namespace):
    return resolve_workloads(args.suite, args.workload, {k: getattr(args, k) for k in TOPOLOGY_OPTIONS})


def _progress(results: Iterator[EvalResult], total: int) -> Iterator[EvalResult]:
    if not sys.stderr.isatty():
        return results
    from tqdm import tqdm

    return tqdm(results, total=total, unit="eval", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    candidates = discover(args.candidates, args.parent)
    workloads = _workloads(args)
    settings = _settings(args)
    store = ResultStore(args.results)
    run_id, reused = run(candidates, workloads, settings, store, suite=args.suite or "default",
                         jobs=args.jobs, fresh=args.fresh, progress=_progress)
    total = len(candidates) * len(workloads)
    print(f"run {run_id}: {total - reused} evaluated, {reused} reused from {store.root}/")
    standings = leaderboard(store.read(), {c.hash for c in candidates}, {w.id for w in workloads})
    print(format_table(standings))
    return 0


def _json_number(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def cmd_evaluate(args: argparse.Namespace) -> int:
    (candidate,) = discover([args.program], args.parent)
    workloads = _workloads(args)
    settings = _settings(args)
    store = ResultStore(args.results)
    rows = [evaluate(candidate, w, settings, run_id="evaluate", suite=args.suite or "") for w in workloads]
    store.append(rows)
    (standing,) = leaderboard(store.read(), {candidate.hash}, {w.id for w in workloads})
    if not args.json:
        print(format_table([standing]))
        return 0
    failed = next((r for r in rows if r.status != "ok"), None)
    summary = {
        "status": failed.status if failed else "ok", "error": failed.error if failed else "",
        **{k: _json_number(getattr(standing, k)) for k in AGGREGATE_KEYS[2:]},
        "workloads": [{"workload_id": r.workload_id, **{k: _json_number(getattr(r, k)) for k in AGGREGATE_KEYS}}
                      for r in rows],
    }
    print(json.dumps(summary, indent=2))
    return 0


def cmd_apply_diff(args: argparse.Namespace) -> int:
    applied = apply_diff_file(Path(args.parent), Path(args.diff), Path(args.output))
    for note in applied.notes:
        print(note, file=sys.stderr)
    print(f"wrote {args.output}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    store = ResultStore(args.results)
    if not store.files():
        raise HarnessError(f"result store {store.root}/ holds no results; run `eplb-harness run` first")
    print(format_table(leaderboard(store.read(), sort_by=args.sort)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eplb-harness", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"eplb-harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser("run", help="score candidates on a suite and print the leaderboard")
    run_parser.add_argument("candidates", nargs="*", help="program files, diffs or folders (default: candidates/)")
    _add_evaluation_options(run_parser)
    run_parser.add_argument("--jobs", type=_positive_int, default=default_jobs(),
                            help="evaluations in parallel (default: the cores)")
    run_parser.set_defaults(handler=cmd_run)

    evaluate_parser = commands.add_parser("evaluate", help="score one program")
    evaluate_parser.add_argument("program", help="a program file or a diff")
    _add_evaluation_options(evaluate_parser)
    evaluate_parser.add_argument("--json", action="store_true", help="print JSON (aggregate and per-workload keys)")
    evaluate_parser.set_defaults(handler=cmd_evaluate)

    diff_parser = commands.add_parser("apply-diff", help="apply a SEARCH/REPLACE diff to a parent program")
    diff_parser.add_argument("parent")
    diff_parser.add_argument("diff")
    diff_parser.add_argument("-o", "--output", required=True, help="where to write the child program")
    diff_parser.set_defaults(handler=cmd_apply_diff)

    board_parser = commands.add_parser("leaderboard", help="rank the candidates in the store")
    board_parser.add_argument("--results", default="results", help="result store folder (default: results/)")
    board_parser.add_argument("--sort", default="balancedness",
                              choices=("balancedness", "replica_balancedness", "node_balancedness",
                                       "combined_score", "adrs_score", "runtime_s"))
    board_parser.set_defaults(handler=cmd_leaderboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except HarnessError as exc:
        print(f"eplb-harness: error: {exc}", file=sys.stderr)
        return 2
