"""Workloads: the expert loads a candidate plans for and is scored on.

A `Workload` is a time series of load windows `weights: [windows, layers, experts]` and the
expert-parallel `Topology` to place them on. Workloads come from seeded synthetic
families (drawn on a model preset's shape), from array files, and from named suites that
list both. Everything here is numpy: the parent process never needs torch to build them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

SUITES_DIR = Path(__file__).resolve().parent.parent / "workloads" / "suites"


@dataclass(frozen=True)
class Topology:
    """Where physical expert slots live: slot p on GPU p // (num_replicas // num_gpus),
    GPU g on node g // (num_gpus // num_nodes); logical expert e in group
    e // (num_logical_experts // num_groups)."""

    num_replicas: int
    num_groups: int
    num_nodes: int
    num_gpus: int

    def check(self, num_logical_experts: int) -> None:
        """Raise HarnessError unless this topology can hold `num_logical_experts`."""
        if min(self.num_replicas, self.num_groups, self.num_nodes, self.num_gpus) < 1:
            raise HarnessError(f"topology {self.describe()} must have positive counts")
        if self.num_replicas % self.num_gpus:
            raise HarnessError(
                f"{self.num_replicas} replicas do not divide evenly over {self.num_gpus} GPUs"
            )
        if self.num_gpus % self.num_nodes:
            raise HarnessError(f"{self.num_gpus} GPUs do not divide evenly over {self.num_nodes} nodes")
        if num_logical_experts % self.num_groups:
            raise HarnessError(
                f"{num_logical_experts} experts do not divide evenly into {self.num_groups} groups"
            )
        if self.num_replicas < num_logical_experts:
            raise HarnessError(
                f"{self.num_replicas} replicas cannot hold {num_logical_experts} experts"
            )

    def describe(self) -> str:
        return (
            f"{self.num_replicas} replicas / {self.num_groups} groups / "
            f"{self.num_nodes} nodes / {self.num_gpus} GPUs"
        )


@dataclass(frozen=True, eq=False)
class Workload:
    """A named load series and the topology it is placed on.

    weights: [windows, layers, experts] float64, non-negative; window t+1 follows window t.
    """

    name: str
    kind: str  # synthetic | file | trace
    weights: np.ndarray
    topology: Topology
    description: str = ""
    id: str = field(init=False)

    def __post_init__(self) -> None:
        if self.weights.ndim != 3:
            raise HarnessError(
                f"workload {self.name!r} must be [windows, layers, experts], got shape {self.weights.shape}"
            )
        self.topology.check(self.num_logical_experts)
        self.weights.setflags(write=False)
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.weights, dtype="<f8").tobytes())
        digest.update(json.dumps([self.weights.shape, vars(self.topology)], sort_keys=True).encode())
        object.__setattr__(self, "id", f"{self.name}@{digest.hexdigest()[:12]}")

    @property
    def num_windows(self) -> int:
        return self.weights.shape[0]

    @property
    def num_layers(self) -> int:
        return self.weights.shape[1]

    @property
    def num_logical_experts(self) -> int:
        return self.weights.shape[2]


@dataclass(frozen=True)
class Preset:
    """A served model's MoE shape and a typical expert-parallel topology for it."""

    num_layers: int
    num_logical_experts: int
    topology: Topology
    source: str


# Shapes from the models' public configs; the DeepSeek-V3 topology is the ADRS benchmark's.
PRESETS: dict[str, Preset] = {
    "deepseek-v3": Preset(58, 256, Topology(288, 8, 4, 32), "DeepSeek-V3 config.json: 61 layers, first 3 dense, 256 routed experts, n_group 8"),
    "deepseek-v2-lite": Preset(26, 64, Topology(80, 1, 1, 8), "DeepSeek-V2-Lite config.json: 27 layers, first dense, 64 routed experts"),
}


def _drift(rng: np.random.Generator, base: np.ndarray, num_windows: int, drift: float) -> np.ndarray:
    """A series of windows around `base: [layers, experts]` whose log-load takes a
    Gaussian random walk with step `drift`, so consecutive windows stay correlated.
    Returns [windows, layers, experts]."""
    steps = rng.normal(0.0, drift, size=(num_windows,) + base.shape)
    steps[0] = 0.0
    return base[None] * np.exp(np.cumsum(steps, axis=0))


def zipf(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int,
         exponent: float = 1.0, drift: float = 0.1) -> np.ndarray:
    """Zipf-skewed loads: in each layer a random permutation of experts gets load
    proportional to rank**-exponent (exponent 0 is uniform, 1 a classic long tail).
    Returns [windows, layers, experts], scaled to 1e4 tokens per expert on average."""
    ranks = np.argsort(rng.random((num_layers, num_logical_experts)), axis=-1) + 1.0
    base = ranks ** -exponent
    series = _drift(rng, base, num_windows, drift)
    return series / series.mean(axis=-1, keepdims=True) * 1e4


def lognormal(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int,
              sigma: float = 1.0, drift: float = 0.1) -> np.ndarray:
    """Lognormal loads: log-load of each (layer, expert) drawn from N(0, sigma), so sigma
    sets the skew (busiest expert about exp(2.5 sigma) times the median for 256 experts).
    Returns [windows, layers, experts], scaled to 1e4 tokens per expert on average."""
    base = rng.lognormal(0.0, sigma, size=(num_layers, num_logical_experts))
    series = _drift(rng, base, num_windows, drift)
    return series / series.mean(axis=-1, keepdims=True) * 1e4


FAMILIES = {"zipf": zipf, "lognormal": lognormal}


def synthetic(family: str, preset: str, seed: int, num_windows: int, name: str | None = None,
              **params: float) -> Workload:
    """Draw a seeded series of `family` on the shape and topology of `preset`."""
    if family not in FAMILIES:
        raise HarnessError(f"unknown synthetic family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    if preset not in PRESETS:
        raise HarnessError(f"unknown model preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    shape = PRESETS[preset]
    rng = np.random.default_rng(seed)
    weights = FAMILIES[family](rng, num_windows, shape.num_layers, shape.num_logical_experts, **params)
    return Workload(
        name=name or f"{family}-{preset}-s{seed}",
        kind="synthetic",
        weights=weights,
        topology=shape.topology,
        description=f"{family} {params or ''} on {preset}, seed {seed}, {num_windows} windows".replace("  ", " "),
    )


def load_array_file(path: Path, topology: Topology) -> Workload:
    """Read `[windows, layers, experts]` or `[layers, experts]` loads from .npy, .npz (its
    only array) or .pt (a tensor)."""
    if not path.is_file():
        raise HarnessError(f"workload file {path} does not exist")
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if len(archive.files) != 1:
                    raise HarnessError(f"workload file {path} holds {len(archive.files)} arrays; expected one")
                array = archive[archive.files[0]]
        elif path.suffix == ".pt":
            import torch  # only .pt files need torch in the parent

            array = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(array, torch.Tensor):
                raise HarnessError(f"workload file {path} holds a {type(array).__name__}, not a tensor")
            array = array.double().numpy()
        else:
            raise HarnessError(f"workload file {path} has unknown suffix {path.suffix!r}; use .npy, .npz or .pt")
    except HarnessError:
        raise
    except Exception as exc:  # a corrupt file reaches us as whatever numpy or torch raises
        raise HarnessError(f"workload file {path} cannot be read: {exc}") from exc
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise HarnessError(
            f"workload file {path} has shape {array.shape}; expected [windows, layers, experts] or [layers, experts]"
        )
    if not np.isfinite(array).all() or (array < 0).any():
        raise HarnessError(f"workload file {path} has negative or non-finite loads")
    return Workload(name=path.stem, kind="file", weights=array, topology=topology, description=str(path))


def with_topology(workload: Workload, overrides: dict[str, int]) -> Workload:
    """The same loads on a topology with some fields overridden (None fields kept)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return workload
    return Workload(workload.name, workload.kind, workload.weights,
                    replace(workload.topology, **given), workload.description)


def load_suite(name_or_path: str) -> list[Workload]:
    """The workloads of a suite spec: a name under workloads/suites/ or a JSON file path.

    A spec is `{"name", "version", "workloads": [{"family", "preset", "seed",
    "num_windows", "params"?, "name"?} | {"file", "topology"}]}`.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.json")))
        raise HarnessError(f"unknown suite {name_or_path!r}; known suites: {known}")
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"suite file {path} cannot be read: {exc}") from exc
    workloads = []
    for entry in spec.get("workloads", []):
        if "family" in entry:
            workloads.append(synthetic(entry["family"], entry["preset"], entry["seed"], entry["num_windows"],
                                       entry.get("name"), **entry.get("params", {})))
        else:
            workloads.append(load_array_file((path.parent / entry["file"]).resolve(), Topology(**entry["topology"])))
    if not workloads:
        raise HarnessError(f"suite {path} lists no workloads")
    return workloads


def resolve_workloads(suite: str | None, workload_args: list[str], overrides: dict[str, int | None]) -> list[Workload]:
    """The workloads a command scores: each `--workload` (a suite workload's name or an
    array file), else the suite's; topology fields in `overrides` replace a workload's own.

    A file carries no topology: it takes the preset whose shape it has, else every
    topology field must be given.
    """
    if not workload_args:
        return [with_topology(w, overrides) for w in load_suite(suite or "default")]
    workloads = []
    for arg in workload_args:
        path = Path(arg)
        if path.suffix:
            workloads.append(load_array_file(path, _file_topology(path, overrides)))
            continue
        named = {w.name: w for spec in sorted(SUITES_DIR.glob("*.json")) for w in load_suite(str(spec))}
        if arg not in named:
            raise HarnessError(f"unknown workload {arg!r}: not a file path and not a workload of any suite")
        workloads.append(with_topology(named[arg], overrides))
    return workloads


def _file_topology(path: Path, overrides: dict[str, int | None]) -> Topology:
    if all(value is not None for value in overrides.values()):
        return Topology(**overrides)
    if path.is_file() and path.suffix == ".npy":
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape[-2:]
        for preset in PRESETS.values():
            if shape == (preset.num_layers, preset.num_logical_experts):
                return replace(preset.topology, **{k: v for k, v in overrides.items() if v is not None})
    missing = ", ".join(f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is None)
    raise HarnessError(f"workload file {path} has no topology of its own; give {missing}")
