"""How evaluations run, and the one home of every default the CLI and the integrations share.

`Settings` (with its `TimingConfig`) is part of the key under which a result is reused:
two rows with the same candidate hash, workload id and `Settings.hash` measure the same thing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field

from harness import __version__
from harness.errors import HarnessError

__all__ = ["CLUSTER_WAIT_S", "CONFINEMENT_ENV", "DEADLINE_FACTOR", "DEADLINE_START_S", "HIDDEN_FOLDERS", "HIDE_ENV",
           "RESULTS_DIR", "SCHEDULER_ENV", "TIMEOUT_CAP_S", "TIMING_PRESETS", "Deadline", "Settings", "TimingConfig",
           "deadline", "default_jobs", "resolve_device", "timing_preset"]

RESULTS_DIR = "results"  # the default result store folder, relative to the working folder
# Without --timeout, an evaluation may take DEADLINE_FACTOR times the reference's whole
# evaluation on the same workload plus DEADLINE_START_S, and never more than TIMEOUT_CAP_S:
# a hung candidate is cut off in seconds, a slow one still has room.
TIMEOUT_CAP_S = 120.0
DEADLINE_FACTOR = 10.0
DEADLINE_START_S = 3.0
# The Dask scheduler that evaluations go to (`--scheduler`, harness.cluster) when set, and
# how long a run waits for a worker that can take them before it gives up.
SCHEDULER_ENV = "EPLB_HARNESS_SCHEDULER"
CLUSTER_WAIT_S = 60.0
# Candidates run in namespaces of their own where the kernel allows (harness.confine);
# CONFINEMENT_ENV=process runs them confined to their process only, as before. Inside,
# these folders are empty (with the Python environment and the harness bound back where
# they lie within one): the home folders, and where temporary files and the sockets of
# the user's daemons (ssh-agent, D-Bus, Docker; a read-only mount does not stop a
# connection) live. Besides them: `~` (the user's home, wherever it is), the temporary
# folder of the harness, and the folders HIDE_ENV names (absolute paths, separated by
# os.pathsep). /dev holds only the harmless devices and the GPUs'.
CONFINEMENT_ENV = "EPLB_HARNESS_CONFINEMENT"
HIDE_ENV = "EPLB_HARNESS_HIDE"
HIDDEN_FOLDERS = ("/home", "/root", "/tmp", "/var/tmp", "/run", "/var/run")


@dataclass(frozen=True)
class TimingConfig:
    """How the candidate's call is timed. After one untimed call per window (which yields
    the placements) and `warmup` more, timed turns are made in rounds that cycle over the
    windows; with the reference beside it, each round gives one turn to each, one after
    the other, on the same window. A turn is a burst of back-to-back calls lasting about
    `turn_s` (by the fastest untimed call; one call at least, 1000 at most), and its
    sample is their mean time. Rounds go on until there are at least `min_samples` (and
    one per window) and `min_time_s` has passed and, when paired, `min_paired_time_s` too
    and the 95% interval of the median speedup is within `precision` of it; when paired,
    they also end once there are `min_samples` and the interval is wholly beyond what the
    score counts; at most `max_samples` rounds or `max_time_s`. Why paired rounds take
    longer: the host's speed drifts over seconds and moves the ratio with it, so an
    interval from a fraction of a second is too narrow: one that looked narrow by chance
    ended some evaluations after 14-16 rounds (benchmarks/bench_timing.py). Each call is
    timed by `perf_counter` around the call alone, on a fresh copy of the window's
    weights, bracketed by CUDA synchronisation on a GPU; garbage is collected before the
    timed calls and collection is off during them (as timeit does). A median whose IQR
    exceeds `unstable_iqr` of it is flagged."""

    warmup: int = 1
    min_samples: int = 10
    max_samples: int = 200
    min_time_s: float = 0.2
    min_paired_time_s: float = 1.0
    max_time_s: float = 3.0
    precision: float = 0.02
    unstable_iqr: float = 0.10
    turn_s: float = 0.005

    def describe(self) -> str:
        return (f"median of per-turn mean times (perf_counter around each call, turns of ~{self.turn_s * 1e3:g} ms), "
                f"gc off while timing, in turns with the reference; {self.warmup} warm-up after the placement pass; "
                f"{self.min_samples}-{self.max_samples} rounds over all windows, >= {self.min_time_s:g} s "
                f"(paired: >= {self.min_paired_time_s:g} s, until the speedup is known within {self.precision:.0%}), "
                f"<= {self.max_time_s:g} s")


# Named timings (`--timing`). `precise`, the default, times a candidate beside the
# reference for 1 s at least, then until the paired speedup is known within 2% (or 3 s
# have passed); `screen` makes one round of turns per window (five at least), more within
# 0.05 s, with the placement pass as the only warm-up, for a first pass over many
# candidates: its speedups came within 2-20% of `precise` ones at the
# median, 30-86% at the worst (benchmarks/bench_adrs.py, 12 candidates, this project's
# 2-core machine).
TIMING_PRESETS: dict[str, TimingConfig] = {
    "precise": TimingConfig(),
    "screen": TimingConfig(warmup=0, min_samples=5, min_time_s=0.0, min_paired_time_s=0.0, max_time_s=0.05,
                           precision=0.05),
}


def timing_preset(name: str) -> TimingConfig:
    """The named timing of TIMING_PRESETS; HarnessError for another name."""
    if name not in TIMING_PRESETS:
        raise HarnessError(f"unknown timing {name!r}; choose one of {', '.join(TIMING_PRESETS)}")
    return TIMING_PRESETS[name]


@dataclass(frozen=True)
class Settings:
    """How one evaluation runs: the device, torch threads in the worker, the wall-clock
    limit of one evaluation (`timeout_s`; None: derived from the reference, see
    `deadline`), its memory cap and the timing protocol."""

    device: str = "cpu"
    threads: int = 1
    timeout_s: float | None = None
    memory_mb: int = 4096
    timing: TimingConfig = field(default_factory=TimingConfig)

    @property
    def hash(self) -> str:
        payload = json.dumps({**asdict(self), "harness_version": __version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Deadline:
    """How long one evaluation may run, and the rule that set it (stored with the row)."""

    seconds: float
    rule: str


def deadline(settings: Settings, reference_wall_s: float = math.nan) -> Deadline:
    """The deadline of an evaluation: `settings.timeout_s` when given, else derived from
    `reference_wall_s` (the reference's whole evaluation on the same workload), else the cap."""
    if settings.timeout_s is not None:
        return Deadline(settings.timeout_s, f"--timeout {settings.timeout_s:g} s")
    if math.isfinite(reference_wall_s) and reference_wall_s > 0:
        seconds = min(TIMEOUT_CAP_S, DEADLINE_START_S + DEADLINE_FACTOR * reference_wall_s)
        return Deadline(seconds, f"{DEADLINE_FACTOR:g} x the reference's {reference_wall_s:.2f} s "
                                 f"+ {DEADLINE_START_S:g} s, at most {TIMEOUT_CAP_S:g} s")
    return Deadline(TIMEOUT_CAP_S, f"the {TIMEOUT_CAP_S:g} s cap (no reference timing for this workload)")


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda` when torch sees a GPU, else `cpu`."""
    if device != "auto":
        return device
    import torch  # only `auto` needs torch in the parent

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_jobs() -> int:
    """Evaluations in parallel by default: the cores this process may run on."""
    return len(os.sched_getaffinity(0))
