"""ShinkaEvolve evaluation script for EPLB candidates (`eplb-harness integrations shinka`
prints its path; give it to ShinkaEvolve as the evaluation program).

ShinkaEvolve runs `python shinka_evaluate.py --program_path P --results_dir D` (plus its
`extra_cmd_args` as `--key value`) and reads back `D/metrics.json` (`combined_score`,
`public`, `private`, `text_feedback`) and `D/correct.json` (`correct`, `error`). This
script writes both for every candidate, failures included, and exits 0; a bad harness
configuration still writes them (correct false, the reason as error) and exits 2.

`combined_score` is the configured score (see docs/integrations.md: `--score` or
`EPLB_HARNESS_SCORE`); `public` holds every metric and the per-workload figures, shown to
the proposer; `text_feedback` says what to fix: the rule a placement broke, the timeout,
the error, or the weakest workload.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

try:
    import harness  # noqa: F401  (installed in the framework's environment)
except ImportError:  # run from a checkout: the package's root is two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.errors import HarnessError  # noqa: E402
from harness.files import write_atomically  # noqa: E402
from harness.integrations.frameworks import METRIC_KEYS, SCORES, Evaluation, evaluate_program  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program_path", required=True, help="the candidate program")
    parser.add_argument("--results_dir", required=True, help="where metrics.json and correct.json are written")
    parser.add_argument("--config", help="integration config file (TOML, or JSON); default $EPLB_HARNESS_CONFIG")
    parser.add_argument("--score", choices=tuple(SCORES), help="which figure is combined_score")
    parser.add_argument("--suite", help="suite name or file (default: default)")
    parser.add_argument("--budget", type=float, help="seconds for the whole evaluation (default: 120)")
    parser.add_argument("--timeout", type=float, help="seconds for one workload (default: 120)")
    parser.add_argument("--store", dest="results", help="Parquet result store folder (default: results; none: off)")
    parser.add_argument("--device", help="cpu, auto or cuda[:N] (default: cpu)")
    parser.add_argument("--run_id", help="run id of the stored rows (default: shinka)")
    parser.add_argument("--program_id", help="lineage: the program's id (default: its gen_N folder)")
    parser.add_argument("--parent_id", help="lineage: the parent's id or source file")
    return parser


def payloads(evaluation: Evaluation) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics.json, correct.json) contents."""
    public = {key: evaluation.metrics[key] for key in METRIC_KEYS if key != "combined_score"}
    public["workloads"] = evaluation.per_workload
    private = {
        "status": evaluation.status, "candidate_hash": evaluation.candidate_hash,
        "settings_hash": evaluation.settings_hash, "suite": evaluation.suite, "score": evaluation.score,
        "stored_in": evaluation.stored_in,
    }
    if not evaluation.correct:
        private["stderr_tail"] = evaluation.stderr_tail
    metrics = {"combined_score": evaluation.metrics["combined_score"], "public": public, "private": private,
               "text_feedback": evaluation.feedback}
    correct = {"correct": evaluation.correct, "error": None if evaluation.correct else
               f"{evaluation.status} on {evaluation.workload}: {evaluation.reason}"}
    return metrics, correct


def write(results_dir: Path, metrics: dict[str, Any], correct: dict[str, Any]) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    for name, payload in (("metrics.json", metrics), ("correct.json", correct)):
        write_atomically(results_dir / name, json.dumps(payload, indent=2, allow_nan=False))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {key: getattr(args, key) for key in ("config", "score", "suite", "budget", "timeout", "results",
                                                   "device", "run_id", "program_id", "parent_id")}
    results_dir = Path(args.results_dir)
    try:
        evaluation = evaluate_program(args.program_path, stage="full", framework="shinka", **options)
    except HarnessError as exc:
        message = f"harness configuration: {exc}"
        write(results_dir, {"combined_score": 0.0, "public": dict.fromkeys(METRIC_KEYS[1:], 0.0), "private": {},
                            "text_feedback": message}, {"correct": False, "error": message})
        print(f"eplb-harness: error: {exc}", file=sys.stderr)
        return 2
    write(results_dir, *payloads(evaluation))
    print(f"{evaluation.status}: combined_score {evaluation.metrics['combined_score']:.6f} "
          f"({evaluation.score}, suite {evaluation.suite}); {results_dir}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
