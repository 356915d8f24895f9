"""The command line: a thin layer over the library's stages.

Exit status 0 when the command did its job (a failed candidate is a result), 2 for bad
input with a one-line reason, 1 (with a traceback) for a bug in the harness.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from harness import __version__
from harness.candidates import REFERENCE_PATH, discover, load_candidate
from harness.diffs import apply_diff_file
from harness.errors import HarnessError
from harness.evaluate import run
from harness.report import (
    COLUMNS,
    FORMATS,
    LAYER_COLUMN,
    REFERENCE,
    SORT_KEYS,
    format_table,
    latest,
    leaderboard,
    render,
    select,
    to_standings,
)
from harness.results import EvalResult
from harness.sandbox import prestart, require_confinement
from harness.settings import (
    DEADLINE_FACTOR,
    DEADLINE_START_S,
    RESULTS_DIR,
    SCHEDULER_ENV,
    TIMEOUT_CAP_S,
    TIMING_PRESETS,
    Settings,
    default_jobs,
    resolve_device,
    timing_preset,
)
from harness.store import ResultStore
from harness.workloads import DEFAULT_WINDOW_STEPS, resolve_workloads

TOPOLOGY_OPTIONS = ("num_replicas", "num_groups", "num_nodes", "num_gpus")
DEFAULTS = Settings()
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
    _add_window_steps(parser)
    _add_results(parser)
    parser.add_argument("--device", default=DEFAULTS.device, help=f"auto, cpu or cuda[:N] (default: {DEFAULTS.device})")
    parser.add_argument("--timeout", type=_positive_float, default=DEFAULTS.timeout_s,
                        help=f"seconds per evaluation (default: {DEADLINE_FACTOR:g} x the reference's evaluation "
                             f"on the workload + {DEADLINE_START_S:g} s, at most {TIMEOUT_CAP_S:g} s)")
    precise, screen = TIMING_PRESETS["precise"], TIMING_PRESETS["screen"]
    parser.add_argument("--timing", choices=TIMING_PRESETS, default="precise",
                        help=f"precise: {precise.min_paired_time_s:g} s at least, then until the paired speedup is "
                             f"known within {precise.precision * 100:g}%% (at most {precise.max_time_s:g} s per "
                             f"evaluation); screen: a round of turns per window ({screen.min_samples} at least), more "
                             f"within {screen.max_time_s:g} s (default: precise)")
    parser.add_argument("--memory-mb", type=_positive_int, default=DEFAULTS.memory_mb,
                        help=f"memory cap per evaluation (default: {DEFAULTS.memory_mb})")
    parser.add_argument("--threads", type=_positive_int, default=DEFAULTS.threads,
                        help=f"torch threads per worker (default: {DEFAULTS.threads})")
    parser.add_argument("--fresh", action="store_true", help="evaluate again even what the store already holds")
    parser.add_argument("--jobs", type=_positive_int, default=default_jobs(),
                        help="evaluations in parallel (default: the cores; with --scheduler, the workers' threads)")
    parser.add_argument("--scheduler", default=os.environ.get(SCHEDULER_ENV) or None, metavar="tcp://HOST:PORT",
                        help=f"evaluate on the workers of this Dask scheduler, store here (default: ${SCHEDULER_ENV}; "
                             "docs/cluster.md)")
    parser.add_argument("--require-confinement", action="store_true",
                        help="refuse to run candidates where namespaces cannot confine them (README: "
                             "Untrusted candidates)")


def _add_window_steps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window-steps", type=_positive_int, default=DEFAULT_WINDOW_STEPS,
                        help=f"trace steps summed per window, for trace files (default: {DEFAULT_WINDOW_STEPS})")


def _add_results(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=RESULTS_DIR, help=f"result store folder (default: {RESULTS_DIR}/)")


def _settings(args: argparse.Namespace) -> Settings:
    if args.require_confinement:
        require_confinement()
    return Settings(device=resolve_device(args.device), threads=args.threads, timeout_s=args.timeout,
                    memory_mb=args.memory_mb, timing=timing_preset(args.timing))


def _workloads(args: argparse.Namespace):
    return resolve_workloads(args.suite, args.workload, {k: getattr(args, k) for k in TOPOLOGY_OPTIONS},
                             window_steps=args.window_steps)


def _progress(results: Iterator[EvalResult], total: int) -> Iterator[EvalResult]:
    if not sys.stderr.isatty():
        return results
    from tqdm import tqdm

    return tqdm(results, total=total, unit="eval", file=sys.stderr)


def _start_workers_early(args: argparse.Namespace) -> None:
    """Have the warm zygote import torch while this command finds its candidates and
    workloads (not for a Dask cluster: its workers have zygotes of their own)."""
    if args.scheduler is None:
        prestart()


def cmd_run(args: argparse.Namespace) -> int:
    _start_workers_early(args)
    candidates = discover(args.candidates, args.parent)
    workloads = _workloads(args)
    settings = _settings(args)
    store = ResultStore(args.results)
    done = run(candidates, workloads, settings, store, suite=args.suite or "default", jobs=args.jobs,
               fresh=args.fresh, scheduler=args.scheduler, progress=_progress)
    print(f"run {done.run_id}: {done.evaluated} evaluated, {done.reused} reused from {store.root}/")
    for note in done.notes:
        print(note)
    # The reference was timed in this run too: listing it gives every speedup its baseline.
    shown = {c.hash for c in candidates} | {load_candidate(REFERENCE_PATH).hash}
    print(format_table(leaderboard(store.read(), shown, {w.id for w in workloads})))
    return 0


def _json_value(value: object) -> object:
    """A row or standing value as JSON has it: NaN and infinities as null, times in ISO 8601."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value.isoformat() if hasattr(value, "isoformat") else value


def cmd_evaluate(args: argparse.Namespace) -> int:
    import pyarrow.compute as pc

    _start_workers_early(args)
    candidate_list = discover([args.program], args.parent)
    (candidate,) = candidate_list
    workloads = _workloads(args)
    settings = _settings(args)
    store = ResultStore(args.results)
    done = run(candidate_list, workloads, settings, store, suite=args.suite or "", jobs=args.jobs, fresh=args.fresh,
               scheduler=args.scheduler)
    for note in done.notes:
        print(note, file=sys.stderr)
    stored = latest(store.read())
    table = stored.filter(pc.equal(stored["settings_hash"], settings.hash))
    ids = [w.id for w in workloads]
    # The reference's rows under the same settings give the speedup its baseline; the
    # candidate is aggregated over all of its rows of this evaluation.
    board = to_standings(leaderboard(table, {candidate.hash, load_candidate(REFERENCE_PATH).hash}, set(ids),
                                     common_workloads=False))
    standing = next(s for s in board if s.candidate_hash == candidate.hash)
    if not args.json:
        print(format_table([standing]))
        return 0
    # Every column of the stored row but the bulky text tails and the per-layer vector.
    bulky = {"stdout_tail", "stderr_tail", LAYER_COLUMN}
    by_id = {r["workload_id"]: r for r in table.to_pylist() if r["candidate_hash"] == candidate.hash}
    rows = [{k: _json_value(v) for k, v in by_id[i].items() if k not in bulky} for i in ids if i in by_id]
    failed = next((r for r in rows if r["status"] != "ok"), None)
    aggregate = {k: _json_value(v) for k, v in vars(standing).items() if k not in ("rank", "workloads")}
    aggregate.update(status=failed["status"] if failed else "ok", error=failed["error"] if failed else "")
    # DESIGN.md's keys first, then every other figure of the leaderboard's `Standing`.
    summary = {**{k: aggregate.pop(k) for k in AGGREGATE_KEYS}, **aggregate, "workloads": rows}
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
    table = store.read([*COLUMNS, LAYER_COLUMN] if args.format == "html" else COLUMNS)
    filters = dict(runs=args.run, suites=args.suite, workloads=args.workload, devices=args.device,
                   candidates=args.candidate)
    described = " ".join(f"--{name[:-1]} {value}" for name, values in filters.items() for value in values)
    rows = select(table, **filters)
    if not len(rows):
        raise HarnessError(f"no result in {store.root}/ matches {described}")
    descending = {"high": True, "low": False}.get(args.order)
    board = leaderboard(table, sort_by=args.sort, reference=args.reference, descending=descending,
                        common_workloads=not args.all_workloads, **filters)
    if args.limit:
        board = board.slice(0, args.limit)
    text = render(board, args.format, rows=rows, source=str(store.root), filters=described, reference=args.reference,
                  sort_by=args.sort, layer_workload=args.layer_workload)
    if args.format in ("csv", "json"):  # they carry only the standings, so that they parse as they are
        from harness.report import note

        print(note(board), file=sys.stderr)
    if args.out is None:
        print(text)
        return 0
    out = Path(args.out)
    if not out.parent.is_dir():
        raise HarnessError(f"cannot write {out}: folder {out.parent} does not exist")
    out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(board)} candidates)", file=sys.stderr)
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    from harness import workloads as wl

    if args.action == "list":
        print(wl.format_workload_list(wl.list_workloads(args.suite), names_only=args.names))
        return 0
    workload = wl.get_workload(args.name, args.suite, window_steps=args.window_steps)
    if args.action == "show":
        print(wl.format_workload_summary(workload))
    else:
        written = wl.export_workload(workload, args.output)
        print(f"wrote {written} ({workload.id}, shape {list(workload.weights.shape)})")
    return 0


def _add_workloads_parser(commands) -> None:
    parser = commands.add_parser("workloads", help="list, show or export workloads")
    actions = parser.add_subparsers(dest="action", required=True)
    list_parser = actions.add_parser("list", help="the workloads of every suite (or --suite)")
    list_parser.add_argument("--suite", help="only this suite (a name or a suite file)")
    list_parser.add_argument("--names", action="store_true", help="one workload name a line")
    for action, text in (("show", "what a workload is: shape, skew, hash"), ("export", "write its loads as .npy")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("name", metavar="NAME|FILE", help="a suite workload's name or a workload file")
        sub.add_argument("--suite", help="look the name up in this suite first")
        _add_window_steps(sub)
        if action == "export":
            sub.add_argument("-o", "--output", required=True, help="the .npy file to write")
    parser.set_defaults(handler=cmd_workloads)


def cmd_integrations(args: argparse.Namespace) -> int:
    from harness.integrations import EVALUATION_FILES
    from harness.integrations.scaffold import write_search_folder

    folders = {"shinka": args.task_dir, "openevolve": args.example_dir}
    usage = "eplb-harness integrations shinka --task-dir DIR, or eplb-harness integrations openevolve --example-dir DIR"
    if not any(folders.values()):
        settings = [option for option, value in (("--initial", args.initial), ("--score", args.score),
                                                 ("--suite", args.suite), ("--budget", args.budget),
                                                 ("--results", args.results), ("--force", args.force or None))
                    if value is not None]
        if settings:
            raise HarnessError(f"{', '.join(settings)}: settings of a search folder, so give the folder: {usage}")
        for name, path in EVALUATION_FILES.items():
            if args.framework in (None, name):
                print(path if args.framework else f"{name}\t{path}")
        return 0
    if args.framework is None or not folders[args.framework] or all(folders.values()):
        raise HarnessError(f"a search folder is written for one framework: {usage}")
    written = write_search_folder(args.framework, folders[args.framework], initial=args.initial, score=args.score,
                                  suite=args.suite, budget_s=args.budget, results=args.results, force=args.force)
    print(f"wrote {written.folder}: {', '.join(path.name for path in written.files)}")
    print("start the search (its README.md says more):")
    for command in written.commands:
        print(f"  {command}")
    return 0


def _add_integrations_parser(commands) -> None:
    parser = commands.add_parser(
        "integrations", help="OpenEvolve and ShinkaEvolve: evaluator paths, ready search folders",
        description="Without a folder, print the evaluation file a framework is given (without a name, both). "
                    "With --task-dir (shinka) or --example-dir (openevolve), write a ready search folder: "
                    "the evaluation file, the starting program, the harness's and the framework's settings "
                    "and a README of the commands (docs/integrations.md).")
    parser.add_argument("framework", nargs="?", choices=("openevolve", "shinka"))
    parser.add_argument("--task-dir", help="write a ShinkaEvolve task folder here (shinka_run --task-dir)")
    parser.add_argument("--example-dir", help="write an OpenEvolve search folder here")
    parser.add_argument("--initial", help="the starting program, with EVOLVE-BLOCK markers "
                                          "(default: candidates/seed_parent.py)")
    parser.add_argument("--score", help="which figure combined_score is")
    parser.add_argument("--suite", help="the suite programs are scored on: a name or a suite file")
    parser.add_argument("--budget", type=float, help="seconds one evaluation may take, all workloads together")
    parser.add_argument("--results", help=f"the result store the search writes to (default: {RESULTS_DIR}/ here)")
    parser.add_argument("--force", action="store_true", help="overwrite the folder's files")
    parser.set_defaults(handler=cmd_integrations)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eplb-harness", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"eplb-harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser("run", help="score candidates on a suite and print the leaderboard")
    run_parser.add_argument("candidates", nargs="*", help="program files, diffs or folders (default: candidates/)")
    _add_evaluation_options(run_parser)
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

    board_parser = commands.add_parser("leaderboard", help="rank the candidates in the store; tables and reports")
    _add_results(board_parser)
    for option, what in (("run", "run id"), ("suite", "suite name"), ("workload", "workload name or id"),
                         ("device", "device (cpu, cuda, ...)"), ("candidate", "candidate name or hash prefix")):
        board_parser.add_argument(f"--{option}", action="append", default=[], metavar=option.upper(),
                                  help=f"only rows of this {what}; repeatable (any of them)")
    board_parser.add_argument("--sort", default="balancedness", choices=sorted(SORT_KEYS),
                              help="rank by this (default: balancedness)")
    board_parser.add_argument("--order", choices=("high", "low"),
                              help="which end of the sort key ranks first (default: the better one)")
    board_parser.add_argument("--reference", default=REFERENCE,
                              help=f"candidate name speedups are measured against (default: {REFERENCE})")
    board_parser.add_argument("--format", default="table", choices=FORMATS, help="output format (default: table)")
    board_parser.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    board_parser.add_argument("--limit", type=_positive_int, help="show only the first N candidates")
    board_parser.add_argument("--all-workloads", action="store_true",
                              help="rank each candidate over all of its own workloads (default: only on the "
                                   "workloads every candidate has rows for; candidates that lack them are listed)")
    board_parser.add_argument("--layer-workload", metavar="NAME|ID",
                              help="html: the workload of the per-layer plot (default: where the best gains most)")
    board_parser.set_defaults(handler=cmd_leaderboard)

    _add_workloads_parser(commands)
    _add_integrations_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except HarnessError as exc:
        print(f"eplb-harness: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, with the status a shell gives SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
