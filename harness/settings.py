"""How evaluations run, and the one home of every default the CLI and the integrations share.

`Settings` (with its `TimingConfig`) is part of the key under which a result is reused:
two rows with the same candidate hash, workload id and `Settings.hash` measure the same thing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from harness import __version__

__all__ = ["RESULTS_DIR", "Settings", "TimingConfig", "default_jobs", "resolve_device"]

RESULTS_DIR = "results"  # the default result store folder, relative to the working folder


@dataclass(frozen=True)
class TimingConfig:
    """How the candidate's call is timed. After one untimed call per window (which yields
    the placements) and `warmup` more, timed calls cycle over the windows until at least
    `min_samples` (and every window once) and `min_time_s`, at most `max_samples`. Each
    sample is `perf_counter` around the call alone, on a fresh copy of the window's
    weights, bracketed by CUDA synchronisation on a GPU; garbage is collected before the
    timed calls and collection is off during them (as timeit does). A median whose IQR exceeds
    `unstable_iqr` of it is flagged."""

    warmup: int = 1
    min_samples: int = 5
    max_samples: int = 100
    min_time_s: float = 0.5
    unstable_iqr: float = 0.10

    def describe(self) -> str:
        return (f"median of perf_counter around the call, gc off while timing; "
                f"{self.warmup} warm-up after the placement pass; "
                f"{self.min_samples}-{self.max_samples} samples and >= {self.min_time_s:g} s over all windows")


@dataclass(frozen=True)
class Settings:
    """How one evaluation runs: the device, torch threads in the worker, the wall-clock
    limit of one evaluation (`timeout_s`), its memory cap and the timing protocol."""

    device: str = "cpu"
    threads: int = 1
    timeout_s: float = 120.0
    memory_mb: int = 4096
    timing: TimingConfig = field(default_factory=TimingConfig)

    @property
    def hash(self) -> str:
        payload = json.dumps({**asdict(self), "harness_version": __version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda` when torch sees a GPU, else `cpu`."""
    if device != "auto":
        return device
    import torch  # only `auto` needs torch in the parent

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_jobs() -> int:
    """Evaluations in parallel by default: the cores this process may run on."""
    return len(os.sched_getaffinity(0))
