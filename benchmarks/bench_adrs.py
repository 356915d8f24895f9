#!/usr/bin/env python3
"""Scoring one ADRS-format file per candidate: the ADRS OpenEvolve evaluator's way against
`eplb-harness`, side by side in one run (target: the harness at least 5x faster).

Writes a DeepSeek-V3-shaped `expert-load.json` in the ADRS layout (`load_history[]
.logical_expert_load`, 58 layers x 256 experts per step; skewed, drifting integer loads),
then scores N candidates (the shipped programs, each copy made distinct by a comment so
that nothing is reused) both ways, alternating which side goes first:

- ADRS: re-created here from what the public evaluator of the ADRS "eplb" example
  (OpenEvolve) does, not from its code. Once per process it `json.load`s the whole file
  and sums every 100 steps into one [layers, experts] load (a shorter last run kept).
  Per candidate it imports the program in its own process, and for each pair of
  consecutive windows calls `rebalance_experts` on the first (288 replicas, 8 groups, 4
  nodes, 32 GPUs) and simulates the second: expert by expert, in Python with one `.item()`
  per read, each expert's load split evenly over the slots `log2phy` lists for it (experts
  without load or without replicas skipped), into a float32 [layers, 288] slot load; then
  balancedness = (sum over layers of the mean load) / (sum over layers of the max load),
  per slot and per GPU (32 consecutive slot blocks). It times each call alone and call
  plus simulation, and scores (mean slot balancedness + 0.002 / mean call-and-simulation
  time) / 2.
- the harness: what a search's evaluation call does through the public API: resolve the
  file as a workload (the parsed-trace cache, empty at the start, serves every call after
  the first) and `harness.evaluate.run` on one candidate into one result store kept
  across the run, timed beside the reference in turns. Twice per candidate: with the
  `screen` timing (a round of turns per window, five at least, more within 0.05 s: a search's first
  pass, and still more timing than the ADRS evaluator's one call per window) and with the
  default `precise` timing (1 s at least, then until the speedup is known within 2%, at most 3 s). The
  target is for `screen`.

Both sides' balancedness are printed: they measure the same thing (ADRS's GPU and slot
balancedness are the harness's `balancedness` and `replica_balancedness`).

Usage: .venv/bin/python benchmarks/bench_adrs.py [--candidates 12] [--steps 500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LAYERS, EXPERTS = 58, 256
TOPOLOGY = {"num_replicas": 288, "num_groups": 8, "num_nodes": 4, "num_gpus": 32}
STEPS_PER_WINDOW = 100  # ADRS's rebalance interval, and the harness's default --window-steps
ROOT = Path(__file__).resolve().parent.parent


def write_adrs_file(path: Path, steps: int, seed: int = 0) -> Path:
    """An ADRS `expert-load.json` of `steps` steps x 58 layers x 256 experts: per layer a
    lognormal expert popularity (log-std 0.66, as fitted to the DeepSeek-V3 traces) that
    drifts as a random walk between windows, 4096 tokens per step routed top-8, as
    Poisson counts. About 90 KB per step. Its modification time is set an hour back: a trace that has been on
    disk a while, which the harness's parse cache keeps."""
    rng = np.random.default_rng(seed)
    log_popularity = rng.normal(0.0, 0.66, size=(LAYERS, EXPERTS))
    history = []
    for step in range(steps):
        if step % STEPS_PER_WINDOW == 0:
            log_popularity += rng.normal(0.0, 0.23, size=log_popularity.shape)
        share = np.exp(log_popularity)
        share /= share.sum(axis=1, keepdims=True)
        counts = rng.poisson(share * 8 * 4096)
        history.append({"timestamp": 1700000000.0 + step, "logical_expert_load": counts.tolist()})
    path.write_text(json.dumps({"model": "deepseek-v3-like", "load_history": history}))
    past = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(past, past))
    return path


# ---------------------------------------------------------------------------- the ADRS way, re-created

def adrs_windows(path: Path):
    """What the ADRS evaluator does once per process: the whole file through `json.load`,
    each run of 100 steps summed into one [layers, experts] torch tensor."""
    import torch

    history = json.loads(path.read_text())["load_history"]
    return [torch.tensor([step["logical_expert_load"] for step in history[start:start + STEPS_PER_WINDOW]]).sum(dim=0)
            for start in range(0, len(history), STEPS_PER_WINDOW)]


def adrs_balancedness(log2phy, logcnt, load) -> tuple[float, float]:
    """(GPU, slot) balancedness of the placement `log2phy`/`logcnt` under `load`, the way
    the ADRS evaluator simulates it: a Python loop over every (layer, expert)."""
    import torch

    layers, experts = load.shape
    slot_load = torch.zeros(layers, TOPOLOGY["num_replicas"], dtype=torch.float)
    for layer in range(layers):
        for expert in range(experts):
            amount = load[layer][expert].item()
            if amount <= 0:
                continue
            copies = int(logcnt[layer][expert].item())
            if copies <= 0:
                continue
            slot_load[layer, log2phy[layer][expert][:copies]] += amount / copies
    if slot_load.sum() == 0:
        return 0.0, 0.0
    per_slot = slot_load.mean(dim=1).sum().item() / slot_load.max(dim=1).values.sum().item()
    per_gpu = slot_load.view(layers, TOPOLOGY["num_gpus"], -1).sum(dim=2)
    return per_gpu.mean(dim=1).sum().item() / per_gpu.max(dim=1).values.sum().item(), per_slot


def adrs_evaluate(program: Path, windows) -> dict[str, float]:
    """One candidate, the ADRS way: imported in this process, planned on each window and
    simulated on the next."""
    spec = importlib.util.spec_from_file_location(f"adrs_{program.stem}", program)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gpu, slot, call_s, total_s = [], [], [], []
    for plan_on, score_on in zip(windows[:-1], windows[1:], strict=True):
        start = time.perf_counter()
        _, log2phy, logcnt = module.rebalance_experts(plan_on, *TOPOLOGY.values())
        called = time.perf_counter()
        by_gpu, by_slot = adrs_balancedness(log2phy, logcnt, score_on)
        total_s.append(time.perf_counter() - start)
        call_s.append(called - start)
        gpu.append(by_gpu)
        slot.append(by_slot)
    speed = 0.002 / statistics.fmean(total_s)
    return {"balancedness_gpu": statistics.fmean(gpu), "balancedness_slot": statistics.fmean(slot),
            "call_s": statistics.fmean(call_s), "combined_score": (statistics.fmean(slot) + speed) / 2}


# ---------------------------------------------------------------------------- the harness way

def harness_evaluate(program: Path, trace: Path, store, timing: str) -> dict[str, float]:
    """One candidate, as a search's evaluation call scores it through the public API."""
    from harness.candidates import load_candidate
    from harness.evaluate import run
    from harness.settings import Settings, timing_preset
    from harness.workloads import resolve_workloads

    candidate = load_candidate(program)
    workloads = resolve_workloads(None, [str(trace)], dict(TOPOLOGY), window_steps=STEPS_PER_WINDOW)
    settings = Settings(timing=timing_preset(timing))
    report = run([candidate], workloads, settings, store, jobs=1, fresh=True)  # as a new program is
    (row,) = [r for r in report.rows if r.candidate_hash == candidate.hash]
    return {"status": row.status, "balancedness_gpu": row.balancedness, "balancedness_slot": row.replica_balancedness,
            "call_s": row.runtime_s, "speedup": row.speedup_vs_reference}


def distinct_programs(folder: Path, count: int) -> list[Path]:
    """`count` program files: the shipped candidates in turn, each copy with its own
    comment, so that its content hash (and the harness's reuse key) is its own."""
    from harness.candidates import discover

    shipped = discover([str(ROOT / "candidates")])
    programs = []
    for i in range(count):
        candidate = shipped[i % len(shipped)]
        path = folder / f"candidate_{i:02d}_{candidate.name}.py"
        path.write_text(f"{candidate.source}\n# benchmark copy {i}\n")
        programs.append(path)
    return programs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=12, help="candidates scored by each side (default: 12)")
    parser.add_argument("--steps", type=int, default=500,
                        help="steps in the file, 100 per window (default: 500, about 34 MB)")
    parser.add_argument("--keep", type=Path, help="write the file, programs and store here and keep them")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return bench(args.keep, args.candidates, args.steps)
    with tempfile.TemporaryDirectory(prefix="bench-adrs-") as folder:
        return bench(Path(folder), args.candidates, args.steps)


def bench(folder: Path, candidates: int, steps: int) -> int:
    # An empty parse cache of the run's own: the harness's first call parses, the others hit.
    os.environ["EPLB_HARNESS_CACHE"] = str(folder / "cache")
    from harness.store import ResultStore

    trace = folder / "expert-load.json"
    started = time.perf_counter()
    write_adrs_file(trace, steps)
    print(f"wrote {trace}: {steps} steps x {LAYERS} x {EXPERTS}, {trace.stat().st_size / 1e6:.1f} MB, "
          f"in {time.perf_counter() - started:.1f} s")
    programs = distinct_programs(folder, candidates)
    started = time.perf_counter()
    windows = adrs_windows(trace)
    print(f"ADRS: file loaded once per process in {time.perf_counter() - started:.2f} s "
          f"({len(windows)} windows, {len(windows) - 1} scored)")
    store = ResultStore(folder / "results")

    sides = ("adrs", "screen", "precise")
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    speedup_pairs: list[tuple[float, float]] = []  # (screen, precise) where both are ok
    gaps = []
    print(f"{'candidate':40s} {'ADRS s':>7s} {'screen s':>8s} {'precise s':>9s}  {'bal ADRS':>8s} {'bal harness':>11s}"
          f"  {'speedup screen':>14s} {'precise':>7s}")
    for i, program in enumerate(programs):
        timed = {}
        for side in sides[i % 3:] + sides[:i % 3]:  # each side goes first in turn
            start = time.perf_counter()
            timed[side] = (adrs_evaluate(program, windows) if side == "adrs"
                           else harness_evaluate(program, trace, store, side))
            seconds[side].append(time.perf_counter() - start)
        theirs = timed["adrs"]
        failed = [f"  {side}: {timed[side]['status']}" for side in ("screen", "precise")
                  if timed[side]["status"] != "ok"]
        for side in ("screen", "precise"):
            if timed[side]["status"] == "ok":
                gaps += [abs(timed[side][k] - theirs[k]) for k in ("balancedness_gpu", "balancedness_slot")]
        if not failed:
            speedup_pairs.append((timed["screen"]["speedup"], timed["precise"]["speedup"]))
        print(f"{program.stem[:40]:40s} {seconds['adrs'][-1]:7.2f} {seconds['screen'][-1]:8.2f} "
              f"{seconds['precise'][-1]:9.2f}  {theirs['balancedness_gpu']:8.5f} "
              f"{timed['screen']['balancedness_gpu']:11.5f}  {timed['screen']['speedup']:14.3f} "
              f"{timed['precise']['speedup']:7.3f}" + "".join(failed), flush=True)

    def line(label: str, side: str, skip: int) -> str:
        theirs, ours = seconds["adrs"][skip:], seconds[side][skip:]
        theirs_s, ours_s = statistics.median(theirs), statistics.median(ours)
        return (f"{label:28s} ADRS median {theirs_s:.2f} s, harness ({side}) median {ours_s:.2f} s per candidate: "
                f"{theirs_s / ours_s:.1f}x (totals {sum(theirs):.1f} s vs {sum(ours):.1f} s: "
                f"{sum(theirs) / sum(ours):.1f}x)")

    for side in ("screen", "precise"):
        print(line(f"all {len(programs)} candidates", side, 0))
        if len(programs) > 1:
            print(line("after the first", side, 1))
    differences = [abs(screen / precise - 1) for screen, precise in speedup_pairs]
    if differences:
        print(f"screen speedup against precise: median difference {statistics.median(differences):.1%}, "
              f"largest {max(differences):.1%}")
    if gaps:
        print(f"largest balancedness difference between the two sides: {max(gaps):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
