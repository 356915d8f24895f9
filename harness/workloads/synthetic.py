"""Seeded synthetic workload families, drawn on a model preset's shape.

`synthetic_workload(family, preset, seed, num_windows, **params)` is the one entry point;
`FAMILIES` maps each family's name to the function that draws its loads.

A family is `f(rng, num_windows, num_layers, num_logical_experts, *, num_groups=1, **params)`
returning [windows, layers, experts] float64. Parameters shared by most families:
  drift      std of the per-window innovation of every expert's log-load (0 = static);
  reversion  how much of its deviation an expert's log-load gives back per window
             (0 = random walk, 1 = independent noise around the base pattern);
  tokens     > 0: loads are Poisson token counts with this many expert assignments per
             layer per window (small windows are noisy, as measured ones are);
             0: exact expected loads, MEAN_EXPERT_LOAD per expert on average.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.workloads.model import WORKLOADS_DIR, Topology, Workload, get_preset

__all__ = ["FAMILIES", "FITTED_DIR", "fitted_figures", "synthetic_workload"]

FITTED_DIR = WORKLOADS_DIR / "fitted"
MEAN_EXPERT_LOAD = 1e4  # synthetic loads without sampling noise average this per expert


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


def _family_params(family: str) -> dict[str, Any]:
    """The parameters of a family and their defaults."""
    signature = inspect.signature(FAMILIES[family])
    return {name: p.default for name, p in list(signature.parameters.items())[4:] if name != "num_groups"}


def synthetic_workload(family: str, preset: str, seed: int, num_windows: int, name: str | None = None,
                       topology: Topology | None = None, **params: Any) -> Workload:
    """Draw a seeded series of `family` on the shape of `preset` and its topology (or
    `topology`). The same arguments give bit-identical windows on every call."""
    if family not in FAMILIES:
        raise HarnessError(f"unknown synthetic family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    shape = get_preset(preset)
    topology = topology or shape.topology
    if not isinstance(num_windows, int) or num_windows < 1:
        raise HarnessError(f"num_windows must be a positive integer; got {num_windows!r}")
    allowed = _family_params(family)
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

