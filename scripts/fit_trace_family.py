#!/usr/bin/env python3
"""Fit the `fitted` synthetic family to the shared real traces and write its figures.

Reads ../shared/traces (or $EPLB_TRACES_DIR, or --traces) and writes small JSON files
under workloads/fitted/ (one per source), each naming the trace it came from. Only
derived statistics are written, never the traces themselves. Run it again after the
traces change; `harness.workloads.synthetic.fitted` reads the figures.

Figures (all on log-loads, log of each expert's load over its layer's mean):
- per_layer.log_load_std: the skew of each MoE layer (std of log-load), the main input;
  per_layer.max_over_mean: the busiest expert over the mean, for reference;
  per_layer.dominant: layers where one expert takes most of the tokens (relative depth, share);
- log_load_shape: pooled skewness and excess kurtosis of standardised log-loads;
- groups (DeepSeek-V3): share of log-load variance common to an expert group, corrected
  for the share independent experts would show by chance;
- regimes: correlation of log-loads between prefill and decode recordings;
- drift (Llama-4-Maverick, the one real time series): an AR(1) fitted to how log-loads
  move between windows of decode steps, with Poisson sampling noise subtracted;
  DeepSeek-V3 has no time series and borrows it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from harness.workloads import read_loads, routing_counts, traces_dir
from harness.workloads.synthetic import FITTED_DIR

DEEPSEEK_ORIGIN = (
    "SGLang team expert statistics (attachment_ep_statistics.zip, sgl-project/sglang issue #6017) as committed "
    "in GeneratedRandomly/SGLang-reproduce attachment_ep_statistics/, commit 1d8dbc1411a76e2688285cdeb218fa9d5e455c61"
)
LLAMA_ORIGIN = (
    "per-request routing traces of Yu et al., arXiv:2510.05497 (Hugging Face core12345/MoE_expert_selection_trace), "
    "as committed in andronius-yang/cse223b-proj traffic-gen/llama4-mmlu-*, commit "
    "7f4e46fd6e3c2ef5b161adc3ecbcee64ac7c3758"
)
DRIFT_WINDOW_STEPS = 16
DOMINANT_SHARE = 0.5


def log_shares(counts: np.ndarray, floor: float = 0.5) -> np.ndarray:
    """log of each expert's load over its layer's mean; zero counts floored at `floor`."""
    counts = np.maximum(counts, floor)
    return np.log(counts / counts.mean(axis=-1, keepdims=True))


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation over the last axis."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def shape_moments(logs: np.ndarray) -> dict[str, float]:
    z = (logs - logs.mean(-1, keepdims=True)) / logs.std(-1, keepdims=True)
    return {"skewness": round(float((z**3).mean()), 3), "excess_kurtosis": round(float((z**4).mean() - 3), 3)}


def fit_ar1(windows: np.ndarray, max_lag: int, min_count: float = 10.0) -> dict[str, float]:
    """AR(1) of log-shares across windows [windows, layers, experts] of counts.

    For lag k, D_k = mean (log p_{t+k} - log p_t)^2 - (1/c_t + 1/c_{t+k}) over cells with
    at least `min_count` tokens in both windows (the subtracted part is Poisson noise).
    An AR(1) with stationary variance s^2 and coefficient phi has D_k = 2 s^2 (1 - phi^k);
    phi is found on a grid, s^2 in closed form."""
    shares = windows / windows.sum(-1, keepdims=True)
    lags, excess = [], []
    for k in range(1, min(max_lag, windows.shape[0] - 1) + 1):
        a, b = windows[:-k], windows[k:]
        ok = (a >= min_count) & (b >= min_count)
        diff = np.log(shares[k:][ok]) - np.log(shares[:-k][ok])
        noise = (1 / a[ok] + 1 / b[ok]).mean()
        lags.append(k)
        excess.append(max(float((diff**2).mean() - noise), 0.0))
    lags_a, d = np.array(lags, float), np.array(excess)
    best = None
    for phi in np.linspace(0.0, 0.995, 200):
        f = 2 * (1 - phi**lags_a)
        s2 = float((d * f).sum() / (f * f).sum())
        err = float(((d - s2 * f) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, phi, s2)
    _, phi, s2 = best
    consecutive = correlation(log_shares(windows[:-1]), log_shares(windows[1:])).mean()
    return {
        "innovation_std": round(float(np.sqrt(s2 * (1 - phi**2))), 4),
        "reversion": round(float(1 - phi), 4),
        "stationary_std": round(float(np.sqrt(s2)), 4),
        "excess_squared_change_by_lag": [round(x, 4) for x in excess],
        "consecutive_window_correlation": round(float(consecutive), 4),
    }


def fit_deepseek(root: Path) -> dict:
    folder = root / "deepseek-v3-sglang"
    files = sorted(folder.glob("*.json"))
    if not files:
        raise SystemExit(f"no DeepSeek-V3 traces under {folder}")
    counts = np.concatenate([read_loads(f).weights for f in files])  # [files, 58, 256], dense rows dropped
    names = [f.stem for f in files]
    logs = log_shares(counts)
    groups = 8
    group_means = logs.reshape(*logs.shape[:2], groups, -1).mean(-1)
    observed = float((group_means.var(-1) / logs.var(-1)).mean())
    chance = 1 / (logs.shape[-1] // groups)
    share = max((observed - chance) / (1 - chance), 0.0)
    prefill = [i for i, n in enumerate(names) if n.startswith("prefill")]
    decode = [i for i, n in enumerate(names) if n.startswith("decode")]

    def mean_corr(xs: list[int], ys: list[int]) -> float:
        values = [correlation(logs[x], logs[y]).mean() for x in xs for y in ys if x != y]
        return round(float(np.mean(values)), 4)

    ratio = counts.max(-1) / counts.mean(-1)
    return {
        "source": {
            "name": "deepseek-v3",
            "traces": f"deepseek-v3-sglang/ ({len(files)} files: {', '.join(names)})",
            "origin": DEEPSEEK_ORIGIN,
            "model": "DeepSeek-V3 family, 58 MoE layers x 256 routed experts, 8 groups, top-8",
            "fitted_by": "scripts/fit_trace_family.py",
        },
        "per_layer": {
            "log_load_std": [round(float(x), 4) for x in logs.std(-1).mean(0)],
            "max_over_mean": [round(float(x), 3) for x in ratio.mean(0)],
            "dominant": [],
        },
        "log_load_shape": shape_moments(logs),
        "groups": {"num_groups": groups, "log_load_variance_share": round(share, 4),
                   "observed_share": round(observed, 4), "chance_share": round(chance, 4)},
        "regimes": {
            "prefill_decode_correlation": mean_corr(prefill, decode),
            "within_prefill_correlation": mean_corr(prefill, prefill),
            "within_decode_correlation": mean_corr(decode, decode),
        },
        "summary": {"max_over_mean": {"min": round(float(ratio.min()), 2),
                                      "median": round(float(np.median(ratio)), 2),
                                      "max": round(float(ratio.max()), 2)}},
    }


def fit_llama(root: Path) -> dict:
    path = root / "llama4-maverick-mmlu" / "abstract_algebra_anatomy.npz"
    if not path.is_file():
        raise SystemExit(f"no Llama-4-Maverick trace at {path}")
    with np.load(path) as z:
        expert_id, step, num_experts = z["expert_id"], z["step"], int(z["num_experts"])
    per_step, _ = routing_counts(expert_id, step, num_experts, window_steps=1, path=path)  # [129, 24, 128]
    total = per_step.sum(0)
    layers = total.shape[0]
    top_share = total.max(-1) / total.sum(-1)
    dominant = np.flatnonzero(top_share >= DOMINANT_SHARE)
    regular = np.setdiff1d(np.arange(layers), dominant)
    logs = log_shares(total)
    sigma = logs.std(-1)
    sigma[dominant] = np.median(sigma[regular])  # the rest of a dominant layer spreads like a typical one
    decode = per_step[1:]
    usable = (decode.shape[0] // DRIFT_WINDOW_STEPS) * DRIFT_WINDOW_STEPS
    windows = decode[:usable].reshape(-1, DRIFT_WINDOW_STEPS, layers, total.shape[1]).sum(1)[:, regular]
    drift = fit_ar1(windows, max_lag=4)
    drift.update({"window_steps": DRIFT_WINDOW_STEPS, "measured_on": "decode steps 1-128 of the Llama-4 trace, "
                  f"windows of {DRIFT_WINDOW_STEPS} steps (about {int(windows.sum(-1).mean())} tokens per layer)"})
    ratio = total.max(-1) / total.mean(-1)
    return {
        "source": {
            "name": "llama-4-maverick",
            "traces": "llama4-maverick-mmlu/abstract_algebra_anatomy.npz",
            "origin": LLAMA_ORIGIN,
            "model": "Llama-4-Maverick-17B-128E-Instruct, 24 MoE layers x 128 experts, top-1",
            "fitted_by": "scripts/fit_trace_family.py",
        },
        "per_layer": {
            "log_load_std": [round(float(x), 4) for x in sigma],
            "max_over_mean": [round(float(x), 3) for x in ratio],
            "dominant": [{"depth": round(float(i / (layers - 1)), 4), "share": round(float(top_share[i]), 4)}
                         for i in dominant],
        },
        "log_load_shape": shape_moments(logs[regular]),
        "groups": {"num_groups": 1, "log_load_variance_share": 0.0},
        "regimes": {"prefill_decode_correlation": round(float(
            correlation(log_shares(per_step[0]), log_shares(decode.sum(0)))[regular].mean()), 4)},
        "drift": drift,
        "summary": {"max_over_mean": {"min": round(float(ratio.min()), 2),
                                      "median": round(float(np.median(ratio)), 2),
                                      "max": round(float(ratio.max()), 2)}},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=None,
                        help="traces folder (default: $EPLB_TRACES_DIR or ../shared/traces)")
    parser.add_argument("--out", type=Path, default=FITTED_DIR, help="where the figures go (default: workloads/fitted)")
    args = parser.parse_args(argv)
    root = args.traces or traces_dir()
    if not root.is_dir():
        print(f"traces folder {root} does not exist; set EPLB_TRACES_DIR or pass --traces", file=sys.stderr)
        return 2
    llama = fit_llama(root)
    deepseek = fit_deepseek(root)
    deepseek["drift"] = {key: llama["drift"][key] for key in ("innovation_std", "reversion", "stationary_std")}
    deepseek["drift"]["borrowed_from"] = ("llama-4-maverick: the DeepSeek-V3 traces are one window per recording, "
                                          "not a time series")
    args.out.mkdir(parents=True, exist_ok=True)
    for figures in (deepseek, llama):
        path = args.out / f"{figures['source']['name']}.json"
        path.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"wrote {path}")
        print(json.dumps({k: figures[k] for k in ("log_load_shape", "groups", "regimes", "drift", "summary")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
