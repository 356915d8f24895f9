"""Workloads: the expert loads a candidate plans for and is scored on.

A `Workload` is a time series of load windows `weights: [windows, layers, experts]` and the
expert-parallel `Topology` to place them on. Workloads come from three places:

- seeded synthetic families (`FAMILIES`, drawn on a model preset's shape, `synthetic`);
- files: arrays (.npy/.npz/.pt/.parquet), the ADRS `expert-load.json`, SGLang
  expert-distribution dumps (JSON or .pt) and per-token routing traces (`load_trace`);
- named, versioned suites under `workloads/suites/` that list both (`load_suite`).

Everything here is numpy (torch only to read .pt files): the parent process never needs
torch to build a workload, and nothing loops in Python over layers or experts.

Conventions every loader follows:
- steps are summed into windows of `window_steps` consecutive steps; a last, shorter
  window is kept (the ADRS evaluator does the same); a window larger than the whole trace
  is an error;
- layers with no load in any window (dense layers such as DeepSeek-V3's rows 0-2) are
  dropped and the drop is recorded in `Workload.notes`;
- loads must be finite and non-negative.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np

from harness.errors import HarnessError

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKLOADS_DIR = REPO_ROOT / "workloads"
SUITES_DIR = WORKLOADS_DIR / "suites"
FITTED_DIR = WORKLOADS_DIR / "fitted"
TRACES_ENV = "EPLB_TRACES_DIR"
DEFAULT_WINDOW_STEPS = 100
MEAN_EXPERT_LOAD = 1e4  # synthetic loads without sampling noise average this per expert
# Order in which suites are searched for a workload name; other suites follow by name.
SUITE_ORDER = ("default", "quick", "adrs", "full", "real")


def traces_dir() -> Path:
    """The shared real-trace folder: $EPLB_TRACES_DIR, else `../shared/traces` beside the repo."""
    env = os.environ.get(TRACES_ENV)
    return Path(env) if env else REPO_ROOT.parent / "shared" / "traces"


# --------------------------------------------------------------------------- records


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


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise HarnessError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


# --------------------------------------------------------------------------- synthetic families
#
# A family is `f(rng, num_windows, num_layers, num_logical_experts, *, num_groups=1, **params)`
# returning [windows, layers, experts] float64. Parameters shared by most families:
#   drift      std of the per-window innovation of every expert's log-load (0 = static);
#   reversion  how much of its deviation an expert's log-load gives back per window
#              (0 = random walk, 1 = independent noise around the base pattern);
#   tokens     > 0: loads are Poisson token counts with this many expert assignments per
#              layer per window (small windows are noisy, as measured ones are);
#              0: exact expected loads, MEAN_EXPERT_LOAD per expert on average.


def _ar_noise(rng: np.random.Generator, num_windows: int, shape: tuple[int, ...],
              drift: float, reversion: float) -> np.ndarray:
    """Log-space drift [windows, *shape]: z_0 = 0, z_t = (1 - reversion) z_{t-1} + drift * N(0, 1),
    computed for all windows at once as a lower-triangular matrix product."""
    if drift < 0 or not 0 <= reversion <= 1:
        raise HarnessError(f"drift must be >= 0 and reversion in [0, 1]; got {drift}, {reversion}")
    if drift == 0 or num_windows == 1:
        return np.zeros((num_windows,) + shape)
    phi = 1.0 - reversion
    innovations = rng.standard_normal((num_windows - 1,) + shape) * drift
    lag = np.arange(num_windows)[:, None] - 1 - np.arange(num_windows - 1)[None, :]
    weights = np.where(lag >= 0, phi ** np.maximum(lag, 0), 0.0)
    return np.tensordot(weights, innovations, axes=(1, 0))


def _shares_from_log(log_rates: np.ndarray) -> np.ndarray:
    """Normalise log-rates [..., experts] into shares summing to 1 per (window, layer)."""
    rates = np.exp(log_rates - log_rates.max(axis=-1, keepdims=True))
    return rates / rates.sum(axis=-1, keepdims=True)


def _finish(shares: np.ndarray, rng: np.random.Generator, tokens: float) -> np.ndarray:
    """Turn shares [windows, layers, experts] into loads: Poisson counts of `tokens`
    assignments per layer per window, or exact loads averaging MEAN_EXPERT_LOAD."""
    shares = shares / shares.sum(axis=-1, keepdims=True)
    if tokens < 0:
        raise HarnessError(f"tokens must be >= 0; got {tokens}")
    if tokens > 0:
        return rng.poisson(shares * tokens).astype(np.float64)
    return shares * (MEAN_EXPERT_LOAD * shares.shape[-1])


def _moving_choice(rng: np.random.Generator, num_windows: int, num_layers: int, pool: int,
                   count: int, move_prob: float) -> np.ndarray:
    """Indices [windows, layers, count] into `pool` that start distinct and, each window,
    each independently jump to a random index with probability move_prob."""
    if not 0 <= move_prob <= 1:
        raise HarnessError(f"move_prob must be in [0, 1]; got {move_prob}")
    if not 0 <= count <= pool:
        raise HarnessError(f"cannot pick {count} hot items out of {pool}")
    start = np.argsort(rng.random((num_layers, pool)), axis=-1)[:, :count]
    candidates = rng.integers(pool, size=(num_windows, num_layers, count))
    candidates[0] = start
    moved = rng.random((num_windows, num_layers, count)) < move_prob
    moved[0] = True
    last_move = np.maximum.accumulate(np.where(moved, np.arange(num_windows)[:, None, None], 0), axis=0)
    return np.take_along_axis(candidates, last_move, axis=0)


def uniform(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int, *,
            num_groups: int = 1, jitter: float = 0.05, drift: float = 0.02, reversion: float = 0.5,
            tokens: float = 0.0) -> np.ndarray:
    """Near-uniform loads, the easy baseline: every expert's log-load is N(0, jitter) around
    the same level. With `tokens` the only imbalance left is sampling noise."""
    base = jitter * rng.standard_normal((num_layers, num_logical_experts))
    noise = _ar_noise(rng, num_windows, base.shape, drift, reversion)
    return _finish(_shares_from_log(base[None] + noise), rng, tokens)


def zipf(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int, *,
         num_groups: int = 1, exponent: float = 1.0, drift: float = 0.1, reversion: float = 0.0,
         tokens: float = 0.0) -> np.ndarray:
    """Zipf-skewed loads: in each layer a random permutation of experts gets load
    proportional to rank**-exponent (exponent 0 is uniform, 1 a classic long tail; the
    busiest expert takes E / H_E(exponent) times the mean)."""
    ranks = np.argsort(rng.random((num_layers, num_logical_experts)), axis=-1) + 1.0
    base = -exponent * np.log(ranks)
    noise = _ar_noise(rng, num_windows, base.shape, drift, reversion)
    return _finish(_shares_from_log(base[None] + noise), rng, tokens)


def lognormal(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int, *,
              num_groups: int = 1, sigma: float = 1.0, drift: float = 0.1, reversion: float = 0.0,
              tokens: float = 0.0) -> np.ndarray:
    """Lognormal loads: log-load of each (layer, expert) drawn from N(0, sigma), so sigma
    sets the skew (busiest of 256 experts about exp(2.8 sigma - sigma^2 / 2) times the mean:
    5x for sigma 0.65, 9x for 1.0)."""
    base = sigma * rng.standard_normal((num_layers, num_logical_experts))
    noise = _ar_noise(rng, num_windows, base.shape, drift, reversion)
    return _finish(_shares_from_log(base[None] + noise), rng, tokens)


def hot_experts(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int, *,
                num_groups: int = 1, num_hot: int = 4, hot_factor: float = 8.0, move_prob: float = 0.25,
                sigma: float = 0.3, drift: float = 0.05, reversion: float = 0.2,
                tokens: float = 0.0) -> np.ndarray:
    """A few hot experts that move: per layer `num_hot` experts carry `hot_factor` times
    their usual load; each window each hot spot independently jumps to a random expert
    with probability `move_prob` (topic shifts). The rest is lognormal(sigma) with drift.
    A planner that copies the last window's hot experts is wrong whenever they move."""
    base = sigma * rng.standard_normal((num_layers, num_logical_experts))
    noise = _ar_noise(rng, num_windows, base.shape, drift, reversion)
    hot = _moving_choice(rng, num_windows, num_layers, num_logical_experts, int(num_hot), move_prob)
    boost = np.zeros((num_windows, num_layers, num_logical_experts))
    np.put_along_axis(boost, hot, np.log(hot_factor), axis=2)
    return _finish(_shares_from_log(base[None] + noise + boost), rng, tokens)


def group_hot(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int, *,
              num_groups: int = 1, groups: int = 0, num_hot_groups: int = 2, group_factor: float = 3.0,
              group_sigma: float = 0.4, sigma: float = 0.6, move_prob: float = 0.25, drift: float = 0.1,
              reversion: float = 0.2, tokens: float = 0.0) -> np.ndarray:
    """Group-correlated hot spots, what DeepSeek's group-limited routing produces (each
    token first picks its top groups, then experts inside them), so whole expert groups
    run hot together. Group log-load: N(0, group_sigma) per (layer, group) plus
    log(group_factor) on `num_hot_groups` hot groups that move with probability
    `move_prob` per window, with its own drift; expert log-load inside a group:
    N(0, sigma) with drift. `groups` (0 = the topology's num_groups) must be > 1."""
    groups = int(groups or num_groups)
    if groups < 2 or num_logical_experts % groups:
        raise HarnessError(
            f"group_hot needs more than one expert group dividing {num_logical_experts} experts; got {groups} "
            "(set params.groups or use a preset with expert groups)"
        )
    size = num_logical_experts // groups
    group_base = group_sigma * rng.standard_normal((num_layers, groups))
    group_noise = _ar_noise(rng, num_windows, group_base.shape, drift, reversion)
    hot = _moving_choice(rng, num_windows, num_layers, groups, int(num_hot_groups), move_prob)
    group_boost = np.zeros((num_windows, num_layers, groups))
    np.put_along_axis(group_boost, hot, np.log(group_factor), axis=2)
    group_log = np.repeat(group_base[None] + group_noise + group_boost, size, axis=-1)
    base = sigma * rng.standard_normal((num_layers, num_logical_experts))
    noise = _ar_noise(rng, num_windows, base.shape, drift, reversion)
    return _finish(_shares_from_log(group_log + base[None] + noise), rng, tokens)


def _regime_schedule(rng: np.random.Generator, num_windows: int, switch_every: int, switch_prob: float) -> np.ndarray:
    """Regime index (0/1) per window: alternating every `switch_every` windows, or, with
    switch_every 0, switching with probability switch_prob per window."""
    if switch_every > 0:
        return (np.arange(num_windows) // int(switch_every)) % 2
    if not 0 <= switch_prob <= 1:
        raise HarnessError(f"switch_prob must be in [0, 1]; got {switch_prob}")
    switches = rng.random(num_windows) < switch_prob
    switches[0] = False
    return np.cumsum(switches) % 2


def regime(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int, *,
           num_groups: int = 1, sigma_a: float = 0.8, sigma_b: float = 0.6, correlation: float = 0.8,
           mix: float = 0.15, switch_every: int = 2, switch_prob: float = 0.3, drift: float = 0.05,
           reversion: float = 0.2, tokens: float = 0.0) -> np.ndarray:
    """Regime switches, e.g. a prefill-heavy and a decode-heavy traffic mix. Two lognormal
    load patterns A (log-load std sigma_a) and B (sigma_b) whose log-loads correlate
    `correlation` (prefill vs decode measure about 0.8 on the real traces); a window in
    regime A carries (1 - mix) of A's shares plus mix of B's, and the other way round in
    regime B. Regimes alternate every `switch_every` windows, or at random with
    probability switch_prob per window when switch_every is 0."""
    if not -1 <= correlation <= 1 or not 0 <= mix <= 1:
        raise HarnessError(f"correlation must be in [-1, 1] and mix in [0, 1]; got {correlation}, {mix}")
    shape = (num_layers, num_logical_experts)
    za, zo = rng.standard_normal(shape), rng.standard_normal(shape)
    zb = correlation * za + np.sqrt(1 - correlation**2) * zo
    pattern_a, pattern_b = _shares_from_log(sigma_a * za), _shares_from_log(sigma_b * zb)
    state = _regime_schedule(rng, num_windows, int(switch_every), switch_prob)
    weight_b = np.where(state == 1, 1 - mix, mix)[:, None, None]
    shares = (1 - weight_b) * pattern_a[None] + weight_b * pattern_b[None]
    noise = _ar_noise(rng, num_windows, shape, drift, reversion)
    return _finish(_shares_from_log(np.log(shares) + noise), rng, tokens)


def layered(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int, *,
            num_groups: int = 1, sigma_first: float = 0.9, sigma_last: float = 0.5, sigma_jitter: float = 0.15,
            outlier_layers: float = 0.05, outlier_share: float = 0.5, drift: float = 0.1,
            reversion: float = 0.2, tokens: float = 0.0) -> np.ndarray:
    """Per-layer differences: log-load std runs linearly from sigma_first (first MoE layer)
    to sigma_last (last), times a per-layer factor exp(N(0, sigma_jitter)); a fraction
    `outlier_layers` of the layers (at least one when > 0) are degenerate, one expert
    taking `outlier_share` of all the layer's tokens (Llama-4-Maverick's layer 45 sends
    almost every token to one expert)."""
    if not 0 <= outlier_layers <= 1 or not 0 <= outlier_share < 1:
        raise HarnessError(f"outlier_layers must be in [0, 1] and outlier_share in [0, 1); "
                           f"got {outlier_layers}, {outlier_share}")
    sigmas = np.linspace(sigma_first, sigma_last, num_layers) * np.exp(sigma_jitter * rng.standard_normal(num_layers))
    base = sigmas[:, None] * rng.standard_normal((num_layers, num_logical_experts))
    noise = _ar_noise(rng, num_windows, base.shape, drift, reversion)
    shares = _shares_from_log(base[None] + noise)
    count = int(np.ceil(outlier_layers * num_layers)) if outlier_layers > 0 else 0
    if count:
        layers = np.sort(rng.permutation(num_layers)[:count])
        experts = rng.integers(num_logical_experts, size=count)
        _force_share(shares, layers, experts, np.full(count, outlier_share))
    return _finish(shares, rng, tokens)


def _force_share(shares: np.ndarray, layers: np.ndarray, experts: np.ndarray, share: np.ndarray) -> None:
    """In place: in each given layer, give `experts` that `share` of the layer (all windows)."""
    picked = shares[:, layers, experts]  # [windows, count]
    others = shares[:, layers, :].sum(axis=-1) - picked
    shares[:, layers, experts] = share[None] / (1 - share[None]) * others


@functools.cache
def _fitted_figures(source: str) -> dict[str, Any]:
    path = FITTED_DIR / f"{source}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in FITTED_DIR.glob("*.json")))
        raise HarnessError(f"no fitted figures for {source!r} under {FITTED_DIR}; known: {known}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"fitted figures {path} cannot be read: {exc}") from exc


def fitted_figures(source: str) -> dict[str, Any]:
    """The committed trace-fitted figures `workloads/fitted/<source>.json` (written by
    scripts/fit_trace_family.py)."""
    return json.loads(json.dumps(_fitted_figures(source)))  # a copy the caller may change


def _shaped_normal(z: np.ndarray, skewness: float, excess_kurtosis: float) -> np.ndarray:
    """Cornish-Fisher transform of standard normals towards the given skewness and excess
    kurtosis, re-standardised per row (the real log-loads have a heavier right tail)."""
    g, k = skewness, excess_kurtosis
    x = z + g / 6 * (z**2 - 1) + k / 24 * (z**3 - 3 * z) - g**2 / 36 * (2 * z**3 - 5 * z)
    x = x - x.mean(axis=-1, keepdims=True)
    return x / x.std(axis=-1, keepdims=True)


def fitted(rng: np.random.Generator, num_windows: int, num_layers: int, num_logical_experts: int, *,
           num_groups: int = 1, source: str = "deepseek-v3", skew_scale: float = 1.0,
           drift: float | None = None, reversion: float | None = None, switch_every: int = 0,
           tokens: float = 0.0) -> np.ndarray:
    """Trace-fitted loads: figures fitted to a real trace (`workloads/fitted/<source>.json`)
    drive a lognormal-type model, so users without the trace files still get realistic
    workloads. Per layer, log-load std is the fitted per-layer sigma (interpolated over
    relative depth when the model has another layer count) times `skew_scale`; the
    log-load's shape has the fitted skewness and kurtosis; when the topology has expert
    groups, the fitted share of log-load variance is common to a group; layers where the
    trace had one dominant expert get one; windows drift with the fitted AR(1) figures
    (or `drift` / `reversion` when given), each window rescaled to its layer's spread so
    the hot experts move while the skew stays; `switch_every` > 0 alternates between two
    patterns correlated like the trace's prefill and decode loads."""
    fig = _fitted_figures(source)
    sigma_src = np.asarray(fig["per_layer"]["log_load_std"], dtype=float)
    depth = np.linspace(0.0, 1.0, num_layers)
    sigma = np.interp(depth, np.linspace(0.0, 1.0, sigma_src.size), sigma_src) * skew_scale
    shape_fig = fig["log_load_shape"]
    group_share = float(fig.get("groups", {}).get("log_load_variance_share", 0.0))
    use_groups = num_groups > 1 and group_share > 0 and num_logical_experts % num_groups == 0

    def pattern() -> np.ndarray:
        x = _shaped_normal(rng.standard_normal((num_layers, num_logical_experts)),
                           shape_fig["skewness"], shape_fig["excess_kurtosis"])
        if use_groups:
            g = rng.standard_normal((num_layers, num_groups))
            x = np.sqrt(group_share) * np.repeat(g, num_logical_experts // num_groups, axis=-1) \
                + np.sqrt(1 - group_share) * x
        return sigma[:, None] * x

    log_a = pattern()
    if switch_every > 0:
        rho = float(fig["regimes"]["prefill_decode_correlation"])
        log_b = rho * log_a + np.sqrt(1 - rho**2) * pattern()
        state = _regime_schedule(rng, num_windows, int(switch_every), 0.0)
        base = np.where(state[:, None, None] == 1, log_b[None], log_a[None])
    else:
        base = log_a[None]
    drift_fig = fig["drift"]
    noise = _ar_noise(rng, num_windows, (num_layers, num_logical_experts),
                      drift_fig["innovation_std"] if drift is None else drift,
                      drift_fig["reversion"] if reversion is None else reversion)
    # Drift moves which experts are hot, not how skewed a layer is: each window's log-loads
    # are rescaled to the layer's own spread, so a long random walk does not inflate skew.
    log_load = base + noise
    log_load -= log_load.mean(axis=-1, keepdims=True)
    log_load *= base.std(axis=-1, keepdims=True) / log_load.std(axis=-1, keepdims=True)
    shares = _shares_from_log(log_load)
    dominant = fig["per_layer"].get("dominant", [])
    if dominant:
        rel = np.array([d["depth"] for d in dominant])
        layers = np.unique(np.round(rel * (num_layers - 1)).astype(int))
        share = np.interp(layers / max(num_layers - 1, 1), rel, [d["share"] for d in dominant])
        experts = rng.integers(num_logical_experts, size=layers.size)
        _force_share(shares, layers, experts, np.minimum(share, 0.999))
    return _finish(shares, rng, tokens)


FAMILIES: dict[str, Callable[..., np.ndarray]] = {
    "uniform": uniform,
    "zipf": zipf,
    "lognormal": lognormal,
    "hot_experts": hot_experts,
    "group_hot": group_hot,
    "regime": regime,
    "layered": layered,
    "fitted": fitted,
}


def family_params(family: str) -> dict[str, Any]:
    """The parameters of a family and their defaults."""
    signature = inspect.signature(FAMILIES[family])
    return {name: p.default for name, p in list(signature.parameters.items())[4:] if name != "num_groups"}


def synthetic(family: str, preset: str, seed: int, num_windows: int, name: str | None = None,
              topology: Topology | None = None, **params: Any) -> Workload:
    """Draw a seeded series of `family` on the shape of `preset` and its topology (or
    `topology`). The same arguments give bit-identical windows on every call."""
    if family not in FAMILIES:
        raise HarnessError(f"unknown synthetic family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    shape = _preset(preset)
    topology = topology or shape.topology
    if not isinstance(num_windows, int) or num_windows < 1:
        raise HarnessError(f"num_windows must be a positive integer; got {num_windows!r}")
    allowed = family_params(family)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise HarnessError(f"family {family!r} has no parameter {', '.join(unknown)}; it takes: {', '.join(allowed)}")
    rng = np.random.default_rng(seed)
    weights = FAMILIES[family](rng, num_windows, shape.num_layers, shape.num_logical_experts,
                               num_groups=topology.num_groups, **params)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return Workload(
        name=name or f"{family}-{preset}-s{seed}",
        kind="synthetic",
        weights=weights,
        topology=topology,
        description=f"{family}({shown}) on {preset} ({shape.num_layers}x{shape.num_logical_experts}), "
                    f"seed {seed}, {num_windows} windows",
    )


# --------------------------------------------------------------------------- trace and file loaders


@dataclass(frozen=True)
class Loads:
    """What a file held, before a topology is attached."""

    weights: np.ndarray  # [windows, layers, experts]
    format: str
    notes: tuple[str, ...] = ()
    partial_last: bool = False  # the last window summed fewer steps than the others


def _check_window_steps(window_steps: int) -> int:
    if isinstance(window_steps, bool) or not isinstance(window_steps, (int, np.integer)) or window_steps < 1:
        raise HarnessError(f"window size must be a positive number of steps; got {window_steps!r}")
    return int(window_steps)


def _too_few_steps(path: Path, steps: int, window_steps: int) -> HarnessError:
    return HarnessError(
        f"window of {window_steps} steps is larger than the trace {path} ({steps} steps); "
        f"use --window-steps {steps} or less"
    )


def _steps_to_windows(steps: np.ndarray, window_steps: int, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Sum [steps, layers, experts] into windows of window_steps consecutive steps."""
    count = steps.shape[0]
    if window_steps > count:
        raise _too_few_steps(path, count, window_steps)
    starts = np.arange(0, count, window_steps)
    windows = np.add.reduceat(np.asarray(steps, dtype=np.float64), starts, axis=0)
    return windows, _partial_note(count, window_steps)


def _partial_note(count: int, window_steps: int) -> tuple[str, ...]:
    rest = count % window_steps
    note = f"{count} steps summed into windows of {window_steps}"
    if rest:
        note += f"; the last window has {rest} step{'s' if rest > 1 else ''}"
    return (note,)


def _as_2d(value: Any, path: Path, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: {what} is not a numeric [layers, experts] array ({exc})") from None
    if array.ndim != 2:
        raise HarnessError(f"{path}: {what} has shape {list(array.shape)}; expected [layers, experts]")
    return array


class _WindowSum:
    """Accumulates [layers, experts] steps into windows of `window_steps` steps."""

    def __init__(self, path: Path, window_steps: int) -> None:
        self.path, self.window_steps = path, window_steps
        self.windows: list[np.ndarray] = []
        self.current: np.ndarray | None = None
        self.in_current = 0
        self.steps = 0

    def add(self, step: np.ndarray) -> None:
        if self.current is None:
            if self.windows and step.shape != self.windows[0].shape:
                raise HarnessError(f"{self.path}: step {self.steps} has shape {list(step.shape)}, "
                                   f"the steps before it {list(self.windows[0].shape)}")
            self.current = step.copy()
        elif step.shape != self.current.shape:
            raise HarnessError(f"{self.path}: step {self.steps} has shape {list(step.shape)}, "
                               f"the steps before it {list(self.current.shape)}")
        else:
            self.current += step
        self.steps += 1
        self.in_current += 1
        if self.in_current == self.window_steps:
            self.windows.append(self.current)
            self.current, self.in_current = None, 0

    def result(self) -> tuple[np.ndarray, tuple[str, ...]]:
        if self.steps == 0:
            raise HarnessError(f"{self.path} holds no steps")
        if self.window_steps > self.steps:
            raise _too_few_steps(self.path, self.steps, self.window_steps)
        if self.current is not None:
            self.windows.append(self.current)
        return np.stack(self.windows), _partial_note(self.steps, self.window_steps)


def _json_error(path: Path, exc: Exception) -> HarnessError:
    """One line for what ijson (yajl) reports: its first line, without the pointer drawing."""
    message = exc.args[0] if exc.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    reason = str(message).strip().split("\n")[0] or type(exc).__name__
    if "premature EOF" in reason:
        reason = "the file ends inside a value (truncated?)"
    return HarnessError(f"{path} is not valid JSON: {reason}")


def _load_json(path: Path, window_steps: int) -> Loads:
    """The ADRS `expert-load.json` (`load_history[].logical_expert_load`, one [layers, experts]
    load per step) or SGLang's JSON (`logical_count`, [layers, experts] or [steps, layers,
    experts]), streamed with ijson so a 234 MB file never sits in memory as Python lists:
    one step at a time is decoded and added to its window."""
    import ijson  # only JSON traces need it

    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    key = None
    for candidate in ("load_history", "logical_count"):
        at = head.find(f'"{candidate}"'.encode())
        if at >= 0 and (key is None or at < head.find(f'"{key}"'.encode())):
            key = candidate
    if key is None:
        if not head.strip():
            raise HarnessError(f"{path} is empty")
        raise HarnessError(f"{path} has neither 'load_history' (ADRS expert-load.json) nor 'logical_count' "
                           "(SGLang expert distribution) near its start")
    sums = _WindowSum(path, window_steps)
    rows: list[Any] = []
    try:
        with open(path, "rb") as handle:
            for index, item in enumerate(ijson.items(handle, f"{key}.item", use_float=True)):
                if key == "load_history":
                    load = item.get("logical_expert_load") if isinstance(item, dict) else item
                    if load is None:
                        raise HarnessError(f"{path}: load_history step {index} has no 'logical_expert_load'")
                    sums.add(_as_2d(load, path, f"load_history step {index}"))
                elif isinstance(item, list) and item and isinstance(item[0], list):
                    sums.add(_as_2d(item, path, f"logical_count step {index}"))
                else:
                    rows.append(item)
    except ijson.JSONError as exc:
        raise _json_error(path, exc) from None
    if key == "load_history":
        weights, notes = sums.result()
        return Loads(weights, "adrs-json", notes, sums.steps % window_steps > 0)
    if rows and sums.steps:
        raise HarnessError(f"{path}: logical_count mixes [layers, experts] rows and steps")
    if rows:
        return Loads(_as_2d(rows, path, "logical_count")[None], "sglang-json")
    weights, notes = sums.result()
    return Loads(weights, "sglang-json", notes, sums.steps % window_steps > 0)


def routing_counts(expert_id: np.ndarray, step: np.ndarray | None = None, num_experts: int | None = None,
                   window_steps: int = DEFAULT_WINDOW_STEPS, path: Path | str = "routing trace"
                   ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Aggregate a per-token routing trace into loads [windows, layers, experts].

    expert_id: [tokens, layers] or [tokens, layers, top_k], the expert each token chose
      at each MoE layer (negative ids are padding and are skipped);
    step: [tokens], the engine step of each token (0 = prefill, k = k-th decode step);
      without it every token is its own step, so windows are `window_steps` tokens;
    window_steps: steps per window, counted from the first step.
    """
    path = Path(path)
    ids = np.asarray(expert_id)
    if ids.ndim == 2:
        ids = ids[:, :, None]
    if ids.ndim != 3 or ids.shape[0] == 0 or ids.dtype.kind not in "iu":
        raise HarnessError(f"{path}: expert_id must be integer [tokens, layers(, top_k)]; got "
                           f"{ids.dtype} {list(ids.shape)}")
    tokens, layers, _ = ids.shape
    if step is None:
        steps = np.arange(tokens)
        unit = "tokens"
    else:
        steps = np.asarray(step).astype(np.int64, copy=False)
        if steps.shape != (tokens,):
            raise HarnessError(f"{path}: step has shape {list(steps.shape)}; expected [{tokens}]")
        unit = "steps"
    first = int(steps.min())
    span = int(steps.max()) - first + 1
    if window_steps > span:
        raise HarnessError(f"window of {window_steps} {unit} is larger than the trace {path} ({span} {unit}); "
                           f"use --window-steps {span} or less")
    experts = int(num_experts) if num_experts is not None else int(ids.max()) + 1
    if ids.max() >= experts:
        raise HarnessError(f"{path}: expert ids reach {int(ids.max())} but the model has {experts} experts")
    num_windows = -(-span // window_steps)
    window = (steps - first) // window_steps
    valid = ids >= 0
    flat = ((window[:, None, None] * layers + np.arange(layers)[None, :, None]) * experts + ids.astype(np.int64))
    counts = np.bincount(flat[valid], minlength=num_windows * layers * experts).astype(np.float64)
    notes = (f"{tokens} tokens over {span} {unit} counted in windows of {window_steps} {unit}"
             + (f"; the last window has {span % window_steps} {unit if span % window_steps > 1 else unit[:-1]}"
                if span % window_steps else ""),)
    return counts.reshape(num_windows, layers, experts), notes


def _physical_records_to_logical(records: list[Any], phy2log: Any, path: Path, window_steps: int
                                 ) -> tuple[np.ndarray, tuple[str, ...], bool]:
    """SGLang `per_pass` dumps: records of global_physical_count [layers, physical] per
    forward pass, mapped to logical experts with last_physical_to_logical_map."""
    mapping = np.asarray(phy2log, dtype=np.int64)
    if mapping.ndim != 2 or not records:
        raise HarnessError(f"{path}: an SGLang per-pass dump needs records and a [layers, physical] map")
    try:
        passes = np.array([int(r["forward_pass_id"]) for r in records])
        counts = np.stack([np.asarray(r["global_physical_count"], dtype=np.float64) for r in records])
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: SGLang per-pass records are malformed ({exc})") from None
    layers, physical = mapping.shape
    if counts.shape[1:] != (layers, physical):
        raise HarnessError(f"{path}: records have shape {list(counts.shape[1:])} but the map is {[layers, physical]}")
    experts = int(mapping.max()) + 1
    order, step = np.unique(passes, return_inverse=True)
    flat = (step[:, None, None] * layers + np.arange(layers)[None, :, None]) * experts + mapping[None]
    logical = np.bincount(flat.ravel(), weights=counts.ravel(), minlength=order.size * layers * experts)
    weights, notes = _steps_to_windows(logical.reshape(order.size, layers, experts), window_steps, path)
    note = "physical counts mapped to logical experts with the dump's last physical-to-logical map"
    return weights, notes + (note,), order.size % window_steps > 0


def _from_mapping(data: Any, path: Path, window_steps: int, source: str) -> Loads:
    """Interpret a dict-like (npz archive, torch dump) by its keys."""
    keys = sorted(data.keys())
    if "expert_id" in keys:
        step = data["step"] if "step" in keys else None
        num_experts = int(np.asarray(data["num_experts"])) if "num_experts" in keys else None
        step = None if step is None else _numpy(step)
        weights, notes = routing_counts(_numpy(data["expert_id"]), step, num_experts, window_steps, path)
        span = len(data["expert_id"]) if step is None else int(step.max()) - int(step.min()) + 1
        if "moe_layer_ids" in keys:
            ids = _numpy(data["moe_layer_ids"]).tolist()
            notes += (f"MoE layers are model layers {_ranges(ids)}",)
        return Loads(weights, "routing-trace", notes, span % window_steps > 0)
    if "logical_count" in keys:
        array = _numpy(data["logical_count"]).astype(np.float64)
        if array.ndim == 2:
            return Loads(array[None], f"sglang-{source}")
        if array.ndim == 3:
            weights, notes = _steps_to_windows(array, window_steps, path)
            return Loads(weights, f"sglang-{source}", notes, array.shape[0] % window_steps > 0)
        raise HarnessError(f"{path}: logical_count has shape {list(array.shape)}; expected "
                           "[layers, experts] or [steps, layers, experts]")
    if "records" in keys and "last_physical_to_logical_map" in keys:
        weights, notes, partial = _physical_records_to_logical(
            data["records"], _numpy(data["last_physical_to_logical_map"]), path, window_steps)
        return Loads(weights, f"sglang-per-pass-{source}", notes, partial)
    arrays = [k for k in keys if hasattr(data[k], "shape") and getattr(data[k], "ndim", 0) >= 2]
    if len(arrays) == 1:
        return Loads(_windows_array(_numpy(data[arrays[0]]), path), source)
    raise HarnessError(f"{path} holds {', '.join(keys) or 'nothing'}; expected one load array, "
                       "'logical_count' (SGLang) or 'expert_id' (a routing trace)")


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if value.dtype.is_floating_point:
            value = value.double()
        return value.numpy()
    return np.asarray(value)


def _windows_array(array: np.ndarray, path: Path) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise HarnessError(f"{path} holds {array.dtype} data; expected numbers")
    array = array.astype(np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise HarnessError(
            f"{path} has shape {list(array.shape)}; expected [windows, layers, experts] or [layers, experts]"
        )
    return array


def _load_parquet(path: Path, window_steps: int) -> Loads:
    """A long table: integer columns `layer` and `expert` (or `expert_id`), a load column
    `load` / `count` / `logical_count` (absent: each row is one routing decision), and
    optionally `window` (used as given) or `step` (summed into windows of window_steps)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = set(table.column_names)
    expert_col = "expert" if "expert" in names else "expert_id" if "expert_id" in names else None
    if "layer" not in names or expert_col is None:
        raise HarnessError(f"{path} has columns {sorted(names)}; a load table needs 'layer' and 'expert' "
                           "(or 'expert_id'), with 'load' or 'count', and optionally 'window' or 'step'")
    column = lambda name: table.column(name).to_numpy(zero_copy_only=False)
    layer = column("layer").astype(np.int64)
    expert = column(expert_col).astype(np.int64)
    load_col = next((c for c in ("load", "count", "logical_count") if c in names), None)
    load = column(load_col).astype(np.float64) if load_col else np.ones(layer.size)
    if layer.size == 0:
        raise HarnessError(f"{path} has no rows")
    if layer.min() < 0 or expert.min() < 0:
        raise HarnessError(f"{path} has negative layer or expert ids")
    notes: tuple[str, ...] = ()
    partial = False
    if "window" in names:
        window = column("window").astype(np.int64)
        window = window - window.min()
    elif "step" in names:
        step = column("step").astype(np.int64)
        span = int(step.max() - step.min()) + 1
        if window_steps > span:
            raise _too_few_steps(path, span, window_steps)
        window = (step - step.min()) // window_steps
        notes = _partial_note(span, window_steps)
        partial = span % window_steps > 0
    else:
        window = np.zeros(layer.size, dtype=np.int64)
    shape = (int(window.max()) + 1, int(layer.max()) + 1, int(expert.max()) + 1)
    flat = (window * shape[1] + layer) * shape[2] + expert
    weights = np.bincount(flat, weights=load, minlength=int(np.prod(shape))).reshape(shape)
    return Loads(weights, "parquet", notes, partial)


def _load_torch(path: Path, window_steps: int) -> Loads:
    import torch  # only .pt files need torch in the parent

    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, torch.Tensor):
        return Loads(_windows_array(_numpy(data), path), "pt")
    if isinstance(data, dict):
        return _from_mapping(data, path, window_steps, "pt")
    raise HarnessError(f"{path} holds a {type(data).__name__}; expected a tensor or an SGLang dump dict")


def read_loads(path: Path | str, window_steps: int = DEFAULT_WINDOW_STEPS) -> Loads:
    """Read the loads in a workload file of any supported format, dense layers dropped.

    .npy / .npz (one array) / .pt (a tensor) / .parquet: [windows, layers, experts] or
    [layers, experts] (see _load_parquet for the table form); .json: ADRS expert-load.json
    or SGLang `logical_count`; .pt / .npz dicts: SGLang dumps (`logical_count`, or per-pass
    `records`) and routing traces (`expert_id` [tokens, layers(, top_k)] with `step`).
    """
    path = Path(path)
    window_steps = _check_window_steps(window_steps)
    if not path.is_file():
        raise HarnessError(f"workload file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            loads = _load_json(path, window_steps)
        elif suffix == ".npy":
            loads = Loads(_windows_array(np.load(path, allow_pickle=False), path), "npy")
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                loads = _from_mapping(archive, path, window_steps, "npz")
        elif suffix == ".pt":
            loads = _load_torch(path, window_steps)
        elif suffix in (".parquet", ".pq"):
            loads = _load_parquet(path, window_steps)
        else:
            raise HarnessError(f"workload file {path} has unknown suffix {path.suffix!r}; "
                               "use .npy, .npz, .pt, .parquet or .json")
    except HarnessError:
        raise
    except Exception as exc:  # a corrupt file reaches us as whatever numpy, torch or pyarrow raises
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HarnessError(f"workload file {path} cannot be read: {reason}") from exc
    return _clean(loads, path)


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def _clean(loads: Loads, path: Path) -> Loads:
    weights = loads.weights
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise HarnessError(f"workload file {path} has negative or non-finite loads")
    dense = ~weights.any(axis=(0, 2))
    if dense.all():
        raise HarnessError(f"workload file {path} has no load in any layer")
    notes = loads.notes
    if dense.any():
        rows = np.flatnonzero(dense).tolist()
        notes = (f"dropped {len(rows)} dense (all-zero) layer{'s' if len(rows) > 1 else ''}: "
                 f"rows {_ranges(rows)}",) + notes
        weights = weights[:, ~dense]
    return Loads(np.ascontiguousarray(weights, dtype=np.float64), loads.format, notes, loads.partial_last)


def _topology_for(path: Path | str, shape: tuple[int, int], overrides: dict[str, int | None] | None,
                  preset: str | None = None) -> Topology:
    """A file's topology: `preset`'s (its shape must match), else full overrides, else the
    preset whose shape matches; override fields replace the chosen topology's."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    layers, experts = shape
    if preset is not None:
        model = _preset(preset)
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


def load_trace(path: Path | str, overrides: dict[str, int | None] | None = None, *,
               window_steps: int = DEFAULT_WINDOW_STEPS, preset: str | None = None,
               name: str | None = None, kind: str = "file") -> Workload:
    """A workload from a file of any supported format (see read_loads). Its topology is
    `preset`'s (the file's layer and expert counts must agree with it), else the preset
    whose shape the file has, else all four topology fields of `overrides`; fields given
    in `overrides` replace the chosen topology's."""
    path = Path(path)
    loads = read_loads(path, window_steps)
    topology = _topology_for(path, loads.weights.shape[1:], overrides, preset)
    return Workload(name=name or path.stem, kind=kind, weights=loads.weights, topology=topology,
                    description=f"{loads.format} file {path}", notes=loads.notes)


def load_array_file(path: Path, topology: Topology, window_steps: int = DEFAULT_WINDOW_STEPS) -> Workload:
    """A workload from a file (any supported format) placed on `topology`."""
    loads = read_loads(path, window_steps)
    return Workload(name=Path(path).stem, kind="file", weights=loads.weights, topology=topology,
                    description=f"{loads.format} file {path}", notes=loads.notes)


def load_domain_counts(path: Path | str, model: str, counts: str = "expert_counts") -> Loads:
    """The OLMoE routing-output JSON of the shared traces: `data[model][counts][domain]` =
    [layers, experts] token counts per text domain; domains (sorted) become windows."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        table = data["data"][model][counts]
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path} cannot be read as JSON: {exc}") from exc
    except (KeyError, TypeError):
        raise HarnessError(f"{path} has no data[{model!r}][{counts!r}]") from None
    domains = sorted(table)
    weights = np.stack([_as_2d(table[d], path, f"domain {d}") for d in domains])
    note = f"windows are text domains {', '.join(domains)} (model layers {data.get('layers', '?')})"
    return _clean(Loads(weights, "domain-counts", (note,)), path)


# --------------------------------------------------------------------------- suites


def suite_names() -> list[str]:
    """The suites under workloads/suites/, in search order."""
    found = sorted(p.stem for p in SUITES_DIR.glob("*.json"))
    return [n for n in SUITE_ORDER if n in found] + [n for n in found if n not in SUITE_ORDER]


def _suite_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix.lower() == ".json" or path.is_file():
        if not path.is_file():
            raise HarnessError(f"suite file {path} does not exist")
        return path
    candidate = SUITES_DIR / f"{name_or_path}.json"
    if "/" in name_or_path or not candidate.is_file():
        raise HarnessError(f"unknown suite {name_or_path!r}; known suites: {', '.join(suite_names())}")
    return candidate


@functools.lru_cache(maxsize=64)
def _read_spec(path: Path, mtime: float) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"suite file {path} cannot be read: {' '.join(str(exc).split())}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("workloads"), list) or not spec["workloads"]:
        raise HarnessError(f"suite file {path} lists no workloads (expected {{\"workloads\": [...]}})")
    for index, entry in enumerate(spec["workloads"]):
        if not isinstance(entry, dict) or sum(k in entry for k in ("family", "trace", "file")) != 1:
            raise HarnessError(f"suite file {path}: workload {index} needs exactly one of 'family', 'trace', 'file'")
    return spec


def suite_spec(name_or_path: str) -> dict[str, Any]:
    """The parsed spec of a suite (a name under workloads/suites/ or a JSON file):
    `{"name", "version", "description", "workloads": [entry, ...]}` where an entry is
    - `{"family", "preset", "seed", "num_windows", "params"?, "name"?, "topology"?}`
    - `{"trace": path | [paths], "preset"? | "topology"?, "window_steps"?, "partial_window"?,
      "format"?, "name"?}`, paths relative to the shared traces folder ($EPLB_TRACES_DIR);
      several paths are read in order and their windows concatenated; `"partial_window":
      "drop"` leaves out a shorter last window (default "keep", as ADRS does);
      `"format": "domain-counts"` with `"model"` and `"counts"` reads the OLMoE
      routing-output JSON;
    - `{"file": path, "preset"? | "topology"?, "window_steps"?, "name"?}`, path relative
      to the spec file.
    """
    path = _suite_path(name_or_path)
    spec = dict(_read_spec(path.resolve(), path.stat().st_mtime))
    spec.setdefault("name", path.stem)
    spec["path"] = str(path)
    return spec


def entry_name(entry: dict[str, Any]) -> str:
    """The name a suite entry's workload gets."""
    if "name" in entry:
        return str(entry["name"])
    if "family" in entry:
        return f"{entry['family']}-{entry['preset']}-s{entry['seed']}"
    source = entry.get("trace", entry.get("file"))
    first = source[0] if isinstance(source, list) else source
    return Path(str(first)).stem


def _entry_topology(entry: dict[str, Any]) -> Topology | None:
    if "topology" not in entry:
        return None
    try:
        return Topology(**entry["topology"])
    except TypeError as exc:
        raise HarnessError(f"suite workload {entry_name(entry)!r} has a bad topology: {exc}") from None


def build_entry(entry: dict[str, Any], spec_path: Path | str, suite: str = "") -> Workload:
    """The workload a suite entry describes (see suite_spec)."""
    name = entry_name(entry)
    topology = _entry_topology(entry)
    if "family" in entry:
        missing = [k for k in ("preset", "seed", "num_windows") if k not in entry]
        if missing:
            raise HarnessError(f"suite workload {name!r} lacks {', '.join(missing)}")
        return synthetic(entry["family"], entry["preset"], entry["seed"], entry["num_windows"], name,
                         topology, **entry.get("params", {}))
    window_steps = entry.get("window_steps", DEFAULT_WINDOW_STEPS)
    if "file" in entry:
        path = (Path(spec_path).parent / entry["file"]).resolve()
        paths, kind = [path], "file"
    else:
        root = traces_dir()
        if not root.is_dir():
            raise HarnessError(
                f"suite {suite or spec_path!r} needs the shared traces folder {root}, which does not exist; "
                f"set {TRACES_ENV} to the folder holding the real traces"
            )
        sources = entry["trace"] if isinstance(entry["trace"], list) else [entry["trace"]]
        paths, kind = [root / s for s in sources], "trace"
    parts = []
    for path in paths:
        if entry.get("format") == "domain-counts":
            parts.append(load_domain_counts(path, entry["model"], entry.get("counts", "expert_counts")))
        else:
            parts.append(read_loads(path, window_steps))
        if entry.get("partial_window", "keep") == "drop" and parts[-1].partial_last and len(parts[-1].weights) > 1:
            last = parts[-1]
            parts[-1] = Loads(last.weights[:-1], last.format, last.notes + ("the shorter last window is left out",))
        elif entry.get("partial_window", "keep") not in ("keep", "drop"):
            raise HarnessError(f"suite workload {name!r}: partial_window must be 'keep' or 'drop'")
    shapes = {p.weights.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise HarnessError(f"suite workload {name!r}: its files have different shapes {sorted(shapes)}")
    weights = np.concatenate([p.weights for p in parts])
    notes = tuple(dict.fromkeys(n for p in parts for n in p.notes))
    if len(parts) > 1:
        notes += (f"windows are the files {', '.join(Path(p).stem for p in paths)}, in this order",)
    if topology is not None:
        if "preset" in entry:
            _topology_for(paths[0], weights.shape[1:], None, entry["preset"])
    else:
        topology = _topology_for(paths[0], weights.shape[1:], None, entry.get("preset"))
    described = ", ".join(str(Path(p).relative_to(traces_dir())) if kind == "trace" else str(p) for p in paths)
    return Workload(name=name, kind=kind, weights=weights, topology=topology,
                    description=entry.get("description", f"{parts[0].format}: {described}"), notes=notes)


def load_suite(name_or_path: str) -> list[Workload]:
    """The workloads of a suite: a name under workloads/suites/ or a JSON spec file."""
    spec = suite_spec(name_or_path)
    return [build_entry(entry, spec["path"], spec["name"]) for entry in spec["workloads"]]


def find_entry(name: str, suite: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, entry) of the workload called `name`: in `suite` first when given, then in
    the first suite (search order) that has it."""
    suites = ([suite] if suite else []) + [n for n in suite_names() if n != suite]
    for each in suites:
        spec = suite_spec(each)
        for entry in spec["workloads"]:
            if entry_name(entry) == name:
                return spec, entry
    raise HarnessError(f"unknown workload {name!r}: not a file path and not a workload of any suite "
                       "(eplb-harness workloads list shows them)")


def with_topology(workload: Workload, overrides: dict[str, int | None]) -> Workload:
    """The same loads on a topology with some fields overridden (None fields kept)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return workload
    return Workload(workload.name, workload.kind, workload.weights,
                    replace(workload.topology, **given), workload.description, workload.notes)


def _looks_like_file(arg: str) -> bool:
    return Path(arg).is_file() or bool(Path(arg).suffix) or "/" in arg or os.sep in arg


def get_workload(name_or_file: str, suite: str | None = None, overrides: dict[str, int | None] | None = None,
                 window_steps: int = DEFAULT_WINDOW_STEPS) -> Workload:
    """One workload: a file path (any supported format) or the name of a suite workload;
    topology fields in `overrides` replace its own."""
    overrides = overrides or {}
    if _looks_like_file(name_or_file):
        return load_trace(name_or_file, overrides, window_steps=window_steps)
    spec, entry = find_entry(name_or_file, suite)
    return with_topology(build_entry(entry, spec["path"], spec["name"]), overrides)


def resolve_workloads(suite: str | None, workload_args: list[str], overrides: dict[str, int | None],
                      window_steps: int = DEFAULT_WINDOW_STEPS) -> list[Workload]:
    """The workloads a command scores: each `--workload` (a suite workload's name or a
    file), else the suite's; topology fields in `overrides` replace a workload's own.

    A file carries no topology: it takes the preset whose shape it has, else every
    topology field must be given. `window_steps` sums trace steps into windows (files only;
    suite traces carry their own).
    """
    _check_window_steps(window_steps)
    if not workload_args:
        return [with_topology(w, overrides) for w in load_suite(suite or "default")]
    return [get_workload(arg, suite, overrides, window_steps) for arg in workload_args]


# --------------------------------------------------------------------------- inspection (the CLI's `workloads`)


def list_workloads(suite: str | None = None) -> list[dict[str, Any]]:
    """One row per suite entry (nothing is generated or read): suite, name, source,
    shape (model preset or trace), windows (declared; '?' for files) and topology."""
    rows = []
    for each in [suite] if suite else suite_names():
        spec = suite_spec(each)
        for entry in spec["workloads"]:
            if "family" in entry:
                params = entry.get("params", {})
                source = f"{entry['family']}(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"
                windows: Any = entry["num_windows"]
            else:
                paths = entry.get("trace", entry.get("file"))
                paths = paths if isinstance(paths, list) else [paths]
                source = ("trace " if "trace" in entry else "file ") + (
                    paths[0] if len(paths) == 1 else f"{paths[0]} +{len(paths) - 1} more")
                windows = "?"
            rows.append({"suite": spec["name"], "version": spec.get("version"), "name": entry_name(entry),
                         "source": source, "preset": entry.get("preset", "-"), "windows": windows})
    return rows


def format_workload_list(rows: list[dict[str, Any]], names_only: bool = False) -> str:
    """A table of list_workloads rows, or one unique name a line with names_only."""
    if names_only:
        return "\n".join(dict.fromkeys(r["name"] for r in rows))
    header = ("suite", "name", "preset", "windows", "source")
    table = [header] + [(f"{r['suite']}@v{r['version']}", r["name"], r["preset"], str(r["windows"]), r["source"])
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table)


def layer_skew(workload: Workload) -> np.ndarray:
    """max/mean expert load per (window, layer): 1.0 is perfectly even."""
    weights = workload.weights
    mean = weights.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, weights.max(axis=-1) / np.where(mean > 0, mean, 1), 1.0)


def summarize_workload(workload: Workload) -> dict[str, Any]:
    """What a workload is, as plain data: name, id (hash), kind, shape, topology, its skew
    (max/mean per layer, averaged over windows) and how much it changes between windows."""
    skew = layer_skew(workload).mean(axis=0)
    weights = workload.weights
    shares = weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-300)
    change = (0.5 * np.abs(np.diff(shares, axis=0)).sum(axis=-1).mean()) if workload.num_windows > 1 else 0.0
    return {
        "name": workload.name,
        "id": workload.id,
        "kind": workload.kind,
        "description": workload.description,
        "notes": list(workload.notes),
        "shape": {"windows": workload.num_windows, "layers": workload.num_layers,
                  "experts": workload.num_logical_experts},
        "topology": vars(workload.topology).copy(),
        "load_per_window": float(weights.sum(axis=(1, 2)).mean()),
        "skew_per_layer": [round(float(s), 3) for s in skew],
        "skew": {"min": float(skew.min()), "median": float(np.median(skew)), "max": float(skew.max())},
        "window_change": float(change),
    }


def format_workload_summary(workload: Workload) -> str:
    """`eplb-harness workloads show`: a human-readable summary_workload."""
    s = summarize_workload(workload)
    shape, skew = s["shape"], s["skew"]
    lines = [
        f"{s['name']}  ({s['id']})",
        f"  kind         {s['kind']}: {s['description']}",
        f"  shape        {shape['windows']} window{'s' if shape['windows'] > 1 else ''} x {shape['layers']} layers x "
        f"{shape['experts']} experts",
        f"  topology     {workload.topology.describe()}",
        f"  load         {s['load_per_window']:.4g} per window",
        f"  skew         max/mean per layer: min {skew['min']:.2f}, median {skew['median']:.2f}, "
        f"max {skew['max']:.2f}",
        f"  drift        {s['window_change']:.3f} of the load changes expert between consecutive windows "
        "(mean total-variation distance)" if shape["windows"] > 1 else "  drift        - (a single window, scored on itself)",
    ]
    lines += [f"  note         {note}" for note in s["notes"]]
    per_layer = " ".join(f"{v:.1f}" for v in s["skew_per_layer"])
    lines.append(f"  layer skew   {per_layer}")
    return "\n".join(lines)


def export_workload(workload: Workload, path: Path | str) -> Path:
    """Write the [windows, layers, experts] loads as .npy (atomically); the path written."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise HarnessError(f"export writes .npy files; {path} has suffix {path.suffix!r}")
    if not path.parent.is_dir():
        raise HarnessError(f"cannot write {path}: folder {path.parent} does not exist")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, np.asarray(workload.weights), allow_pickle=False)
    os.replace(temporary, path)
    return path

