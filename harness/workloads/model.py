"""The workload model: `Topology`, `Workload`, the model presets and where workload data lives.

Everything else in the package produces or describes the records defined here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

__all__ = [
    "DEFAULT_WINDOW_STEPS",
    "PRESETS",
    "TRACES_ENV",
    "WORKLOADS_DIR",
    "Preset",
    "Topology",
    "Workload",
    "get_preset",
    "topology_for_shape",
    "traces_dir",
]

_REPO_ROOT = Path(__file__).resolve().parents[2]
WORKLOADS_DIR = _REPO_ROOT / "workloads"
TRACES_ENV = "EPLB_TRACES_DIR"
DEFAULT_WINDOW_STEPS = 100


def traces_dir() -> Path:
    """The shared real-trace folder: $EPLB_TRACES_DIR, else `../shared/traces` beside the repo."""
    env = os.environ.get(TRACES_ENV)
    return Path(env) if env else _REPO_ROOT.parent / "shared" / "traces"


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
    notes: what a loader changed or assumed (dense layers dropped, a partial last window).
    id: "name@hash12", a content hash of the weights, their shape and the topology.
    """

    name: str
    kind: str  # synthetic | file | trace
    weights: np.ndarray
    topology: Topology
    description: str = ""
    notes: tuple[str, ...] = ()
    id: str = field(init=False)

    def __post_init__(self) -> None:
        weights = np.asarray(self.weights)
        if weights.ndim != 3:
            raise HarnessError(
                f"workload {self.name!r} must be [windows, layers, experts], got shape {weights.shape}"
            )
        if 0 in weights.shape:
            raise HarnessError(f"workload {self.name!r} is empty (shape {weights.shape})")
        if weights.dtype != np.float64 or not weights.flags.c_contiguous:
            weights = np.ascontiguousarray(weights, dtype=np.float64)
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise HarnessError(f"workload {self.name!r} has negative or non-finite loads")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "notes", tuple(self.notes))
        self.topology.check(self.num_logical_experts)
        weights.setflags(write=False)
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(weights, dtype="<f8").tobytes())
        digest.update(json.dumps([weights.shape, vars(self.topology)], sort_keys=True).encode())
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
    """A served model's MoE shape and a typical expert-parallel topology for it.

    num_layers counts MoE layers only (dense layers carry no expert load); top_k is the
    routed experts per token; source names the public config the shape comes from.
    """

    num_layers: int
    num_logical_experts: int
    topology: Topology
    source: str
    model: str = ""
    top_k: int = 0


# Shapes from the models' public Hugging Face configs (config.json of the model named).
# Topologies: the DeepSeek-V3 one is the ADRS benchmark's (288 slots = 256 experts + 32
# redundant, 4 nodes x 8 GPUs); the others are typical EP deployments with about one
# redundant slot per GPU, chosen by us. Models without expert groups get num_groups 1.
PRESETS: dict[str, Preset] = {
    "deepseek-v3": Preset(
        58, 256, Topology(288, 8, 4, 32),
        "deepseek-ai/DeepSeek-V3 config.json (DeepSeek-R1 shares it): num_hidden_layers 61, "
        "first_k_dense_replace 3, n_routed_experts 256, n_group 8, topk_group 4, num_experts_per_tok 8; "
        "topology of the ADRS EPLB benchmark",
        "deepseek-ai/DeepSeek-V3", 8),
    "qwen3-235b-a22b": Preset(
        94, 128, Topology(160, 1, 4, 32),
        "Qwen/Qwen3-235B-A22B config.json: num_hidden_layers 94 (all MoE), num_experts 128, "
        "num_experts_per_tok 8, no expert groups",
        "Qwen/Qwen3-235B-A22B", 8),
    "qwen3-30b-a3b": Preset(
        48, 128, Topology(144, 1, 1, 8),
        "Qwen/Qwen3-30B-A3B config.json: num_hidden_layers 48 (all MoE), num_experts 128, "
        "num_experts_per_tok 8, no expert groups",
        "Qwen/Qwen3-30B-A3B", 8),
    "deepseek-v2-lite": Preset(
        26, 64, Topology(80, 1, 1, 8),
        "deepseek-ai/DeepSeek-V2-Lite config.json: num_hidden_layers 27, first_k_dense_replace 1, "
        "n_routed_experts 64, n_group 1, num_experts_per_tok 6",
        "deepseek-ai/DeepSeek-V2-Lite", 6),
    "mixtral-8x7b": Preset(
        32, 8, Topology(16, 1, 1, 8),
        "mistralai/Mixtral-8x7B-v0.1 config.json: num_hidden_layers 32 (all MoE), num_local_experts 8, "
        "num_experts_per_tok 2",
        "mistralai/Mixtral-8x7B-v0.1", 2),
    "olmoe-1b-7b": Preset(
        16, 64, Topology(72, 1, 1, 8),
        "allenai/OLMoE-1B-7B-0924 config.json: num_hidden_layers 16 (all MoE), num_experts 64, "
        "num_experts_per_tok 8",
        "allenai/OLMoE-1B-7B-0924", 8),
    "llama-4-maverick": Preset(
        24, 128, Topology(144, 1, 2, 16),
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct config.json: num_hidden_layers 48, "
        "interleave_moe_layer_step 2 (24 MoE layers), num_local_experts 128 (+1 shared), "
        "num_experts_per_tok 1",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct", 1),
}


def get_preset(name: str) -> Preset:
    """PRESETS[name], or a HarnessError naming the known presets."""
    if name not in PRESETS:
        raise HarnessError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def topology_for_shape(path: Path | str, shape: tuple[int, int], overrides: dict[str, int | None] | None,
                       preset: str | None = None) -> Topology:
    """The topology for loads of `shape` (layers, experts) read from `path`: `preset`'s (its
    shape must match), else full overrides, else the preset whose shape matches; override
    fields replace the chosen topology's."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    layers, experts = shape
    if preset is not None:
        model = get_preset(preset)
        if (model.num_layers, model.num_logical_experts) != (layers, experts):
            raise HarnessError(
                f"trace {path} has {layers} MoE layers x {experts} experts but preset {preset} has "
                f"{model.num_layers} x {model.num_logical_experts}"
            )
        return replace(model.topology, **given)
    if len(given) == 4:
        return Topology(**given)
    for model in PRESETS.values():
        if (model.num_layers, model.num_logical_experts) == shape:
            return replace(model.topology, **given)
    missing = ", ".join(f"--{k.replace('_', '-')}" for k in ("num_replicas", "num_groups", "num_nodes", "num_gpus")
                        if k not in given)
    same_experts = [n for n, m in PRESETS.items() if m.num_logical_experts == experts]
    if same_experts:
        counts = ", ".join(f"{n} has {PRESETS[n].num_layers}" for n in same_experts)
        raise HarnessError(f"trace {path} has {layers} MoE layers x {experts} experts, a layer count no preset "
                           f"topology fits ({counts}); give {missing}")
    raise HarnessError(f"workload file {path} ({layers} layers x {experts} experts) matches no model preset; "
                       f"give {missing}")
