"""Validity and balance of a placement, recomputed from `phy2log` alone.

Nothing here trusts what a candidate says about itself: `logcnt` and `log2phy` are
checked against the per-layer bincount of `phy2log`, and every load figure is derived
from `phy2log`, so a candidate cannot score well by lying in the other two. All checks
and measures are vectorised over layers, experts and slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.workloads.model import Topology


@dataclass(frozen=True, eq=False)
class Placement:
    """What `rebalance_experts` returned for one window, as plain arrays.

    phy2log: [layers, num_replicas], logical expert of each physical slot
    log2phy: [layers, num_logical_experts, max_replicas], slots of each expert, -1 padded
    logcnt: [layers, num_logical_experts], replicas of each expert
    """

    phy2log: np.ndarray
    log2phy: np.ndarray
    logcnt: np.ndarray


class InvalidPlacement(Exception):
    """A placement broke a contract rule; the message names the rule."""


def check_placement(placement: Placement, num_layers: int, num_logical_experts: int, topology: Topology) -> None:
    """Raise InvalidPlacement naming the first contract rule `placement` breaks."""
    phy2log, log2phy, logcnt = placement.phy2log, placement.log2phy, placement.logcnt
    num_replicas = topology.num_replicas
    for name, array in (("phy2log", phy2log), ("log2phy", log2phy), ("logcnt", logcnt)):
        if array.dtype.kind not in "iu":
            raise InvalidPlacement(f"{name} has dtype {array.dtype}; integer ids are required")
    expected = {"phy2log": (num_layers, num_replicas), "logcnt": (num_layers, num_logical_experts)}
    for name, array in (("phy2log", phy2log), ("logcnt", logcnt)):
        if array.shape != expected[name]:
            raise InvalidPlacement(f"{name} has shape {list(array.shape)}; expected {list(expected[name])}")
    if log2phy.ndim != 3 or log2phy.shape[:2] != (num_layers, num_logical_experts) or log2phy.shape[2] < 1:
        raise InvalidPlacement(
            f"log2phy has shape {list(log2phy.shape)}; expected [{num_layers}, {num_logical_experts}, max_replicas]"
        )
    phy2log = phy2log.astype(np.int64, copy=False)
    logcnt = logcnt.astype(np.int64, copy=False)
    # log2phy, the largest array, keeps its own integer dtype: it is only compared and indexed.
    if phy2log.min() < 0 or phy2log.max() >= num_logical_experts:
        raise InvalidPlacement(f"phy2log holds ids outside [0, {num_logical_experts})")
    counted = _replica_counts(phy2log, num_logical_experts)
    if (counted == 0).any():
        layer, expert = np.argwhere(counted == 0)[0]
        raise InvalidPlacement(f"expert {expert} of layer {layer} has no replica in phy2log")
    if not np.array_equal(counted, logcnt):
        layer, expert = np.argwhere(counted != logcnt)[0]
        raise InvalidPlacement(
            f"logcnt disagrees with phy2log: layer {layer} expert {expert} has {counted[layer, expert]} "
            f"replicas but logcnt says {logcnt[layer, expert]}"
        )
    max_replicas = log2phy.shape[2]
    if logcnt.max() > max_replicas:
        raise InvalidPlacement(f"log2phy has room for {max_replicas} replicas but an expert has {logcnt.max()}")
    listed = np.arange(max_replicas) < logcnt[..., None]
    if ((log2phy != -1) & ~listed).any():
        raise InvalidPlacement("log2phy has entries past an expert's replica count that are not -1")
    # The listed entries in row-major order, from the counts (every count is at least 1 and
    # they sum to layers x num_replicas): far fewer than log2phy's cells.
    counts = logcnt.ravel()
    owner = np.repeat(np.arange(counts.size), counts)  # the flat (layer, expert) of each entry
    rank = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    slots = log2phy.reshape(-1, max_replicas)[owner, rank].astype(np.int64)
    if slots.min() < 0 or slots.max() >= num_replicas:
        raise InvalidPlacement(f"log2phy lists slots outside [0, {num_replicas})")
    layer_of_entry, expert_of_entry = np.divmod(owner, num_logical_experts)
    if (phy2log[layer_of_entry, slots] != expert_of_entry).any():
        raise InvalidPlacement("log2phy lists a slot whose phy2log is another expert")
    # logcnt sums to num_replicas per layer (checked above), so every slot listed exactly
    # once is the same as the listed slots being distinct.
    listings = np.bincount(layer_of_entry * num_replicas + slots, minlength=num_layers * num_replicas)
    if (listings != 1).any():
        raise InvalidPlacement("log2phy lists the same slot twice for an expert")


def _replica_counts(phy2log: np.ndarray, num_logical_experts: int) -> np.ndarray:
    """Per-layer bincount. phy2log: [layers, num_replicas] -> [layers, num_logical_experts]."""
    num_layers = phy2log.shape[0]
    offsets = np.arange(num_layers)[:, None] * num_logical_experts
    return np.bincount((phy2log + offsets).ravel(), minlength=num_layers * num_logical_experts).reshape(
        num_layers, num_logical_experts
    )


@dataclass(frozen=True, eq=False)
class Balance:
    """Load balance of one placement on one load window (1.0 is perfect).

    gpu_max_over_mean_per_layer: [layers], the busiest GPU's load over the mean GPU load
    (1.0 for an idle layer): which layers set the pace.
    """

    balancedness: float
    replica_balancedness: float
    node_balancedness: float
    group_spread: float
    gpu_max_over_mean_per_layer: np.ndarray


def gpu_loads(phy2log: np.ndarray, weight: np.ndarray, topology: Topology) -> np.ndarray:
    """Per-GPU load when each expert's load is split evenly over its replicas.

    phy2log: [layers, num_replicas] (valid); weight: [layers, num_logical_experts]
    Returns [layers, num_gpus].
    """
    return _slot_loads(phy2log, weight).reshape(phy2log.shape[0], topology.num_gpus, -1).sum(-1)


def _slot_loads(phy2log: np.ndarray, weight: np.ndarray) -> np.ndarray:
    logcnt = _replica_counts(phy2log, weight.shape[1])
    return np.take_along_axis(weight / logcnt, phy2log, axis=1)


def _ratio(loads: np.ndarray) -> float:
    """sum over layers of mean load / sum over layers of max load. loads: [layers, units]"""
    peak = loads.max(axis=1).sum()
    return float(loads.mean(axis=1).sum() / peak) if peak > 0 else 1.0


def balance(phy2log: np.ndarray, weight: np.ndarray, topology: Topology) -> Balance:
    """Balance of a valid placement `phy2log: [layers, num_replicas]` planned for some
    window, scored on the load `weight: [layers, num_logical_experts]`."""
    num_layers, num_replicas = phy2log.shape
    slot_loads = _slot_loads(phy2log, weight)
    gpu = slot_loads.reshape(num_layers, topology.num_gpus, -1).sum(-1)
    node = gpu.reshape(num_layers, topology.num_nodes, -1).sum(-1)
    return Balance(
        balancedness=_ratio(gpu),
        replica_balancedness=_ratio(slot_loads),
        node_balancedness=_ratio(node),
        group_spread=group_spread(phy2log, weight.shape[1], topology),
        gpu_max_over_mean_per_layer=_max_over_mean(gpu),
    )


def _max_over_mean(loads: np.ndarray) -> np.ndarray:
    """Per layer, max over mean of `loads: [layers, units]` (1.0 for an idle layer)."""
    mean = loads.mean(axis=1)
    return np.divide(loads.max(axis=1), mean, out=np.ones_like(mean), where=mean > 0)


def group_spread(phy2log: np.ndarray, num_logical_experts: int, topology: Topology) -> float:
    """Mean number of nodes holding replicas of one expert group (1.0: every group on one
    node). phy2log: [layers, num_replicas]."""
    num_layers, num_replicas = phy2log.shape
    group = phy2log // (num_logical_experts // topology.num_groups)
    node = np.arange(num_replicas) // (num_replicas // topology.num_nodes)
    cells = (np.arange(num_layers)[:, None] * topology.num_groups + group) * topology.num_nodes + node[None, :]
    present = np.bincount(cells.ravel(), minlength=num_layers * topology.num_groups * topology.num_nodes) > 0
    return float(present.reshape(num_layers * topology.num_groups, topology.num_nodes).sum(-1).mean())


def moved_replicas(previous: np.ndarray, current: np.ndarray, topology: Topology) -> int:
    """Replicas a GPU must load when plan `previous` is replaced by `current`: per layer
    and GPU, the experts `current` places there beyond the copies `previous` had.
    previous, current: [layers, num_replicas]."""
    kept_copies = np.sort(np.concatenate([_numbered_copies(previous, topology.num_gpus),
                                          _numbered_copies(current, topology.num_gpus)], axis=1), axis=1)
    # Each numbered copy occurs once per plan in its row: twice in the merged row if kept.
    kept = int((kept_copies[:, 1:] == kept_copies[:, :-1]).sum())
    return current.size - kept


def _numbered_copies(phy2log: np.ndarray, num_gpus: int) -> np.ndarray:
    """Per layer and GPU, one row of the experts placed there in order, each as a key
    `expert * slots_per_gpu + k` for its k-th copy on that GPU (so a key names one copy).
    phy2log: [layers, num_replicas]; returns [layers * num_gpus, slots_per_gpu], rows sorted.
    Sorting small rows, not one array of every replica's key: about 10x faster here."""
    num_layers, num_replicas = phy2log.shape
    slots_per_gpu = num_replicas // num_gpus
    experts = np.sort(phy2log.reshape(num_layers * num_gpus, slots_per_gpu), axis=1).astype(np.int64)
    position = np.broadcast_to(np.arange(slots_per_gpu), experts.shape)
    first = np.ones(experts.shape, dtype=bool)
    first[:, 1:] = experts[:, 1:] != experts[:, :-1]
    run_start = np.maximum.accumulate(np.where(first, position, 0), axis=1)
    return experts * slots_per_gpu + (position - run_start)


def adrs_combined_score(replica_balancedness, runtime_s):
    """OpenEvolve/ADRS `combined_score = (replica_balancedness + 0.02 / runtime_s) / 2`.
    Floats or arrays (the leaderboard scores every candidate at once); NaN where
    runtime_s is not positive."""
    runtime_s = np.asarray(runtime_s, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(runtime_s > 0, (np.asarray(replica_balancedness) + 0.02 / runtime_s) / 2, np.nan)
    return score if score.ndim else float(score)


def adrs_leaderboard_score(balancedness, runtime_s):
    """ADRS leaderboard `90 b + 5 min(0.002 / t, 2) - (min(20 t, 20) if t > 0.01 else 0)`.
    Floats or arrays; NaN where runtime_s is not positive."""
    runtime_s = np.asarray(runtime_s, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        penalty = np.where(runtime_s > 0.01, np.minimum(20 * runtime_s, 20), 0.0)
        score = 90 * np.asarray(balancedness) + 5 * np.minimum(0.002 / runtime_s, 2) - penalty
        score = np.where(runtime_s > 0, score, np.nan)
    return score if score.ndim else float(score)


# The harness's own score (see README, "The score"): GPU balancedness, plus SPEED_WEIGHT
# per doubling of speed against the reference, timed in pairs, counted up to
# SPEED_DOUBLINGS doublings either way.
SPEED_WEIGHT = 0.01
SPEED_DOUBLINGS = 4.0


def harness_score(balancedness, speedup_vs_reference):
    """`balancedness + SPEED_WEIGHT * clip(log2(speedup_vs_reference), -SPEED_DOUBLINGS,
    SPEED_DOUBLINGS)`. Floats or arrays; NaN where the speedup is unknown."""
    speedup = np.asarray(speedup_vs_reference, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        doublings = np.clip(np.log2(np.where(speedup > 0, speedup, np.nan)), -SPEED_DOUBLINGS, SPEED_DOUBLINGS)
    score = np.asarray(balancedness, dtype=np.float64) + SPEED_WEIGHT * doublings
    return score if score.ndim else float(score)
