#!/usr/bin/env python3
"""Per-evaluation overhead of the harness, before and after, in one run on this machine.

"Before" is an earlier revision of this repository (default: the first release, the
last one that started a fresh interpreter per evaluation), checked out in a temporary
git worktree; "after" is this checkout. Both are measured the same way, each in its own
interpreter importing its own `harness`:

1. Overhead on the default suite: the DeepSeek reference, wrapped in a probe that
   timestamps every call into a file, is evaluated alone (`evaluate()`, no partner) on
   each workload of the default suite. Overhead = the evaluation's wall time minus the
   candidate's own calls (the placement pass, the warm-up and every timed call). Target:
   at most 25% of the candidate's own time. "After" also runs the same evaluations timed
   in pairs beside the reference (what `run` does), and prints the reference's share
   apart: it is measurement, not overhead.
2. Twelve near-free candidates (round robin, a few microseconds a call) on the `quick`
   suite through the command line with `--jobs 2`: wall time per evaluation. Target:
   at most 0.25 s.

    .venv/bin/python benchmarks/bench_overhead.py [--before REV] [--skip-before]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_RELEASE = "7cdcc59"

# Appended to the reference: the running total of its calls' time, printed after each call
# (the row keeps the tail of stdout, and a confined candidate can write nowhere else).
PROBE = '''import time as _probe_time
_probe_total = [0.0]


def rebalance_experts(*args):
    begin = _probe_time.perf_counter()
    try:
        return _probe_entry(*args)
    finally:
        _probe_total[0] += _probe_time.perf_counter() - begin
        print(f"probe-calls-s {_probe_total[0]!r}", flush=True)
'''

# Run inside the version's own folder (its `harness` first on sys.path); prints JSON.
MEASURE = '''
import json, sys, time
from harness import workloads
from harness.candidates import REFERENCE_PATH, Candidate, load_candidate, source_hash
from harness.evaluate import evaluate
try:
    from harness.settings import Settings
except ImportError:
    from harness.evaluate import Settings

paired = sys.argv[1] == "paired"
suite = (getattr(workloads, "suite_workloads", None) or workloads.load_suite)("default")
reference = load_candidate(REFERENCE_PATH)
probe_template = sys.argv[2]
entry = "rebalance_experts"
results = []
source = reference.source.replace(f"def {entry}(", "def _probe_entry(", 1) + probe_template
probed = Candidate(name="probed", source=source, hash=source_hash(source), path="")
options = {"partner": reference} if paired else {}
evaluate(probed, suite[0], Settings(), **options)  # a warm start is paid once per process
for workload in suite:
    started = time.perf_counter()
    row = evaluate(probed, workload, Settings(), **options)
    wall_s = time.perf_counter() - started
    assert row.status == "ok", row.error
    calls_s = float(row.stdout_tail.strip().splitlines()[-1].split()[1])
    # Each sample is the mean of a turn's calls, and the reference's turns made this many.
    paired_s = row.reference_runtime_s * row.runtime_samples * row.reference_calls_per_sample if paired else 0.0
    results.append({"workload": workload.name, "wall_s": wall_s, "calls_s": calls_s, "paired_s": paired_s})
print(json.dumps(results))
'''

# A valid placement in microseconds; copies differ by a comment.
NEAR_FREE = (ROOT / "tests" / "data" / "round_robin.py").read_text() + "\n# variant {index}\n"


def measure_suite(root: Path, paired: bool) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(root)!r})\n{MEASURE}",
                           "paired" if paired else "alone", PROBE], cwd=root, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise SystemExit(f"measuring {root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def measure_near_free(root: Path, scratch: Path) -> tuple[float, int]:
    folder = scratch / f"near-free-{root.name}"
    folder.mkdir()
    for index in range(12):
        (folder / f"free_{index:02d}.py").write_text(NEAR_FREE.format(index=index))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(root)!r}); "
                           "from harness.cli import main; sys.exit(main())", "run", str(folder), "--suite", "quick",
                           "--jobs", "2", "--results", str(folder / "store")], cwd=root, capture_output=True,
                          text=True, check=False)
    wall_s = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"near-free run in {root} failed:\n{done.stderr[-3000:]}")
    return wall_s, 12 * 2


def report(label: str, rows: list[dict], near_free: tuple[float, int] | None = None) -> None:
    overhead = [r["wall_s"] - r["calls_s"] - r["paired_s"] for r in rows]
    calls = [r["calls_s"] for r in rows]
    ratio = sum(overhead) / sum(calls)
    print(f"{label}: default suite, {len(rows)} workloads: candidate's own calls {statistics.median(calls):.3f} s "
          f"(median), harness overhead {statistics.median(overhead):.3f} s per evaluation (median); "
          f"overhead / own time over the suite {ratio:.0%} (target <= 25%)")
    for row, extra in zip(rows, overhead, strict=True):
        paired = f", reference's paired calls {row['paired_s']:.3f} s" if row["paired_s"] else ""
        print(f"    {row['workload']:28s} wall {row['wall_s']:.3f} s, own calls {row['calls_s']:.3f} s{paired}, "
              f"overhead {extra:.3f} s ({extra / row['calls_s']:.0%})")
    if near_free is None:
        return
    wall_s, evaluations = near_free
    print(f"{label}: 12 near-free candidates on `quick`, --jobs 2: {wall_s:.1f} s for {evaluations} evaluations, "
          f"{wall_s / evaluations:.3f} s per evaluation (target <= 0.25 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=FIRST_RELEASE, help=f"revision to compare with (default {FIRST_RELEASE})")
    parser.add_argument("--skip-before", action="store_true", help="measure this checkout only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        if not args.skip_before:
            before = scratch / "before"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
                           check=True, capture_output=True)
            try:
                report(f"before ({args.before})", measure_suite(before, paired=False),
                       measure_near_free(before, scratch))
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
        report("after", measure_suite(ROOT, paired=False), measure_near_free(ROOT, scratch))
        report("after, timed in pairs", measure_suite(ROOT, paired=True))


if __name__ == "__main__":
    main()
