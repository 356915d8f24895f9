"""ShinkaEvolve evaluation script for EPLB candidates (`eplb-harness integrations shinka`
prints its path; `eplb-harness integrations shinka --task-dir DIR` writes a task folder
whose `evaluate.py` runs it).

ShinkaEvolve runs `python evaluate.py --program_path P --results_dir D` (plus its
`extra_cmd_args` as `--key value`) and reads back `D/metrics.json` (`combined_score`,
`public`, `private`, `text_feedback`) and `D/correct.json` (`correct`, `error`). This
script writes both whatever happens: for every candidate, failures included (exit 0),
and for a bad harness configuration or a bad argument (correct false, the reason as
error, exit 2). It prints the feedback on stdout as well, because ShinkaEvolve shows
`text_feedback` to the model only with `evo.use_text_feedback=true` but shows a failed
program's stdout when it asks for a fix.

`combined_score` is the configured score (see docs/integrations.md: `--score` or
`EPLB_HARNESS_SCORE`); `public` holds every metric and the per-workload figures, shown to
the proposer; `text_feedback` says what to fix: the rule a placement broke, the timeout,
the error, or the weakest workload.

Lineage: a program at `<search>/gen_N/main.py` (ShinkaEvolve's results folder) is
stored as `<search name>/gen_N` under the run id `shinka-<search name>-<hash of its
path>`, so several searches share one store; its parent is the program whose source
ShinkaEvolve kept as `gen_N/original.py`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

try:
    import harness  # noqa: F401  (installed in the framework's environment)
except ImportError:  # run from a checkout: the package's root is two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.candidates import source_hash  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.files import write_atomically  # noqa: E402
from harness.integrations.frameworks import (  # noqa: E402
    METRIC_KEYS,
    SCORES,
    Evaluation,
    FrameworkIds,
    evaluate_program,
    search_run_id,
)

__all__ = ["build_parser", "main", "payloads", "shinka_ids"]

_GENERATION = re.compile(r"gen_(\d+)")
_OPTIONS = ("config", "score", "suite", "budget", "timeout", "results", "device", "run_id", "program_id", "parent_id")


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a bad argument before anything is written; raising instead
    lets the script still answer ShinkaEvolve with both files."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise HarnessError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--program_path", required=True, help="the candidate program")
    parser.add_argument("--results_dir", required=True, help="where metrics.json and correct.json are written")
    parser.add_argument("--config", help="integration config file (TOML, or JSON); default $EPLB_HARNESS_CONFIG")
    parser.add_argument("--score", choices=tuple(SCORES), help="which figure is combined_score")
    parser.add_argument("--suite", help="suite name or file (default: default)")
    parser.add_argument("--budget", type=float, help="seconds for the whole evaluation (default: 120)")
    parser.add_argument("--timeout", type=float, help="seconds for one workload (default: 120)")
    parser.add_argument("--store", dest="results", help="Parquet result store folder (default: results; none: off)")
    parser.add_argument("--device", help="cpu, auto or cuda[:N] (default: cpu)")
    parser.add_argument("--run_id", help="run id of the stored rows (default: the results folder's)")
    parser.add_argument("--program_id", help="lineage: the program's id (default: <results folder name>/gen_N)")
    parser.add_argument("--parent_id", help="lineage: the parent's id or source file (default: gen_N/original.py)")
    return parser


def _stripped(text: str) -> str:
    """The text as ShinkaEvolve's diff patcher leaves it: trailing whitespace and the
    final newline gone."""
    return "\n".join(line.rstrip() for line in text.splitlines())


def _parent_hash(gen_dir: Path) -> str:
    """The source hash of the program ShinkaEvolve derived `gen_dir`'s from. It keeps the
    parent's text as `original.py` beside the child, but its diff patcher strips it (see
    `_stripped`), so a parent whose own `main.py` was not stripped (the initial program)
    is the sibling `gen_M/main.py` with the same stripped text."""
    try:
        original = (gen_dir / "original.py").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # generation 0, or a folder ShinkaEvolve did not write
        return ""
    wanted, near = _stripped(original), ""
    for main in gen_dir.parent.glob("gen_*/main.py"):
        if main.parent == gen_dir or not _GENERATION.fullmatch(main.parent.name):
            continue
        try:
            source = main.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if source == original:
            return source_hash(source)
        if not near and _stripped(source) == wanted:
            near = source_hash(source)
    return near or source_hash(original)


def shinka_ids(program_path: str | Path) -> FrameworkIds:
    """The ids ShinkaEvolve's results folder gives the program at `<search>/gen_N/main.py`:
    the search's run id (`search_run_id`), program `<search name>/gen_N` and the parent's
    source hash; none for a program elsewhere."""
    gen_dir = Path(program_path).resolve().parent
    if not _GENERATION.fullmatch(gen_dir.name):
        return FrameworkIds()
    search = gen_dir.parent
    return FrameworkIds(run_id=search_run_id("shinka", search), program_id=f"{search.name}/{gen_dir.name}",
                        parent_hash=_parent_hash(gen_dir))


def payloads(evaluation: Evaluation) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics.json, correct.json) contents."""
    public = {key: evaluation.metrics[key] for key in METRIC_KEYS if key != "combined_score"}
    public["workloads"] = evaluation.per_workload
    first = evaluation.rows[0] if evaluation.rows else None
    private = {
        "status": evaluation.status, "candidate_hash": evaluation.candidate_hash,
        "settings_hash": evaluation.settings_hash, "suite": evaluation.suite, "score": evaluation.score,
        "stored_in": evaluation.stored_in, "run_id": first.run_id if first else "",
        "candidate_name": first.candidate_name if first else "",
    }
    if not evaluation.correct:
        private["stderr_tail"] = evaluation.stderr_tail
    metrics = {"combined_score": evaluation.metrics["combined_score"], "public": public, "private": private,
               "text_feedback": evaluation.feedback}
    correct = {"correct": evaluation.correct, "error": None if evaluation.correct else
               f"{evaluation.status} on {evaluation.workload}: {evaluation.reason}"}
    return metrics, correct


def _refusal(message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both files for an evaluation that could not start: every metric 0.0."""
    public = {key: 0.0 for key in METRIC_KEYS if key != "combined_score"}
    return ({"combined_score": 0.0, "public": public, "private": {}, "text_feedback": message},
            {"correct": False, "error": message})


def write(results_dir: Path, metrics: dict[str, Any], correct: dict[str, Any]) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    for name, payload in (("metrics.json", metrics), ("correct.json", correct)):
        write_atomically(results_dir / name, json.dumps(payload, indent=2, allow_nan=False))


def _results_dir(argv: list[str]) -> Path | None:
    """`--results_dir` read leniently, so both files are written even when the other
    arguments are wrong."""
    parser = _Parser(add_help=False)
    parser.add_argument("--results_dir")
    try:
        known, _ = parser.parse_known_args(argv)
    except HarnessError:
        return None
    return Path(known.results_dir) if known.results_dir else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        evaluation = evaluate_program(args.program_path, stage="full", framework="shinka",
                                      found=shinka_ids(args.program_path),
                                      **{key: getattr(args, key) for key in _OPTIONS})
    except HarnessError as exc:
        message = f"harness configuration: {exc}"
        results_dir = _results_dir(argv)
        if results_dir is not None:
            try:
                write(results_dir, *_refusal(message))
            except OSError as write_error:
                print(f"eplb-harness: error: {results_dir} cannot be written: {write_error}", file=sys.stderr)
        print(message)
        print(f"eplb-harness: error: {exc}", file=sys.stderr)
        return 2
    results_dir = Path(args.results_dir)
    metrics, correct = payloads(evaluation)
    write(results_dir, metrics, correct)
    print(f"{evaluation.status}: combined_score {evaluation.metrics['combined_score']:.6f} "
          f"({evaluation.score}, suite {evaluation.suite}); {results_dir}/metrics.json; stored as "
          f"{metrics['private']['candidate_name']} in run {metrics['private']['run_id']}")
    print(evaluation.feedback)
    return 0


if __name__ == "__main__":
    sys.exit(main())
