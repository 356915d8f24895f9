"""Upper bounds on GPU balancedness: how good any placement of a workload could be.

Both bounds are for the fit protocol (plan and score on the same window) and are built
like `harness.metrics.balance` builds balancedness: per window, the sum over layers of
the mean GPU load over the sum over layers of a lower bound on the busiest GPU's load;
the workload's figure is the mean over windows. A lower bound on every layer's max GPU
load gives an upper bound on the ratio, and on the mean of the ratios.

- `bound_balancedness` holds for every valid placement. Per layer the busiest GPU
  carries at least the mean GPU load, and at least the busiest replica, whose load is at
  least `min_max_replica_load` (the optimum of splitting experts into the slots).
- `local_bound_balancedness` holds for placements that keep every expert group on one
  node (`group_spread` 1.0). Per layer the busiest node carries at least the best
  partition of group loads over nodes, and the busiest GPU at least its share of it.

The proofs are in docs/bounds.md. Everything is vectorised over windows and layers; only
the partitions of groups over nodes are enumerated, once per (groups, nodes, capacity).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError
from harness.workloads.model import Topology

# Beyond this many partitions of groups over nodes the node term is a proven lower bound
# instead of the enumerated optimum (12 groups on 4 nodes, 3 each, is 15,400).
MAX_PARTITIONS = 20_000
# Elements of the largest temporary (quotients, or node loads of a block of partitions):
# windows x layers is processed in blocks of rows that keep it near this size.
BLOCK_ELEMENTS = 1 << 22

EXACT = "exact"
LOWER_BOUND = "lower_bound"
INFEASIBLE = "infeasible"


@dataclass(frozen=True)
class Bounds:
    """Upper bounds on a workload's fit balancedness (GPU level).

    local_bound_method: how the node term of the local bound was found: `exact` (the best
    partition of groups over nodes, enumerated or trivial), `lower_bound` (too many
    partitions to enumerate: the largest of the mean node load, the largest group and
    pigeonhole sums), or `infeasible` (no placement keeps every group on one node: fewer
    groups than nodes, so some node's slots must hold another node's group, or more than
    the nodes' slots can hold whole; `local_bound_balancedness` is then NaN).
    """

    bound_balancedness: float
    local_bound_balancedness: float
    local_bound_method: str


def min_max_replica_load(weight: np.ndarray, num_replicas: int) -> np.ndarray:
    """The smallest possible largest per-replica load when `num_replicas` slots are shared
    out so that every expert has at least one, an expert's load split evenly over its
    replicas: what D'Hondt's allocation reaches.

    An expert needs max(1, ceil(w / t)) replicas to keep its replicas at or below t, i.e.
    one plus the number of quotients w / k (k = 1, 2, ...) above t; so t is reachable with
    X = num_replicas - experts extra replicas iff at most X quotients exceed it, and the
    optimum is the (X + 1)-th largest quotient. Only the X + 1 heaviest experts and their
    first X + 1 quotients can be among the X + 1 largest.

    weight: [..., experts], non-negative. Returns [...].
    """
    num_experts = weight.shape[-1]
    extra = num_replicas - num_experts
    if extra < 0:
        raise HarnessError(f"{num_replicas} replicas cannot hold {num_experts} experts")
    rows = weight.reshape(-1, num_experts)
    kept = min(extra + 1, num_experts)
    divisors = np.arange(1, extra + 2)
    result = np.empty(len(rows))
    for block in _row_blocks(len(rows), kept * len(divisors)):
        heaviest = -np.partition(-rows[block], kept - 1, axis=-1)[:, :kept]
        quotients = (heaviest[:, :, None] / divisors).reshape(len(heaviest), -1)
        result[block] = -np.partition(-quotients, extra, axis=-1)[:, extra]
    return result.reshape(weight.shape[:-1])


def _row_blocks(num_rows: int, elements_per_row: int) -> list[slice]:
    """Slices of rows whose temporaries stay near BLOCK_ELEMENTS elements."""
    size = max(1, BLOCK_ELEMENTS // max(1, elements_per_row))
    return [slice(start, start + size) for start in range(0, num_rows, size)]


def group_capacity(num_logical_experts: int, topology: Topology) -> int:
    """How many whole groups one node can hold: each needs a slot per expert."""
    experts_per_group = num_logical_experts // topology.num_groups
    return (topology.num_replicas // topology.num_nodes) // experts_per_group


@functools.cache
def node_partitions(num_groups: int, num_nodes: int, capacity: int, limit: int = MAX_PARTITIONS) -> np.ndarray | None:
    """Every way to put `num_groups` labelled groups on at most `num_nodes` identical nodes,
    at most `capacity` groups a node, as a membership array [partitions, num_nodes,
    num_groups] of 0/1 (unused nodes all zero); None when there are more than `limit`.
    Nodes are interchangeable, so each partition is listed once: group i joins a node
    already used or opens the next one (restricted growth strings).
    """
    found: list[list[int]] = []
    labels = [0] * num_groups
    sizes = [0] * num_nodes

    def extend(group: int, used: int) -> bool:
        if group == num_groups:
            found.append(labels.copy())
            return len(found) <= limit
        for node in range(min(used + 1, num_nodes)):
            if sizes[node] < capacity:
                labels[group] = node
                sizes[node] += 1
                going_on = extend(group + 1, max(used, node + 1))
                sizes[node] -= 1
                if not going_on:
                    return False
        return True

    if not extend(0, 0):
        return None
    assigned = np.array(found, dtype=np.int64)  # [partitions, num_groups]
    return (assigned[:, None, :] == np.arange(num_nodes)[None, :, None]).astype(np.float64)


def best_node_load(group_load: np.ndarray, num_nodes: int, capacity: int,
                   max_partitions: int = MAX_PARTITIONS) -> tuple[np.ndarray, str]:
    """A lower bound on the busiest node's load over every assignment of whole groups to
    nodes (at most `capacity` a node, num_groups >= num_nodes), and whether it is the
    optimum (`exact`) or a relaxation (`lower_bound`). Partitions that leave a node empty
    are enumerated too; they change nothing: moving a group from a node holding two to
    the empty one never raises the busiest node.

    group_load: [rows, num_groups], non-negative. Returns ([rows], method).
    """
    num_rows, num_groups = group_load.shape
    if num_nodes == 1:
        return group_load.sum(-1), EXACT
    if num_groups == num_nodes:
        # One group a node: the busiest node carries the largest group.
        return group_load.max(-1), EXACT
    partitions = node_partitions(num_groups, num_nodes, capacity, max_partitions)
    if partitions is None:
        return _pigeonhole_node_bound(group_load, num_nodes), LOWER_BOUND
    best = np.empty(num_rows)
    for block in _row_blocks(num_rows, partitions.shape[0] * num_nodes):
        node_load = np.einsum("rg,png->rpn", group_load[block], partitions)  # [rows, partitions, nodes]
        best[block] = node_load.max(-1).min(-1)
    return best, EXACT


def _pigeonhole_node_bound(group_load: np.ndarray, num_nodes: int) -> np.ndarray:
    """max(mean node load, largest group, pigeonhole sums): among the j * nodes + 1 largest
    groups some node holds j + 1, so it carries at least the j + 1 smallest of them.

    group_load: [rows, num_groups]. Returns [rows].
    """
    num_groups = group_load.shape[1]
    ranked = -np.sort(-group_load, axis=-1)
    prefix = np.concatenate([np.zeros((len(ranked), 1)), ranked.cumsum(-1)], axis=-1)
    j = np.arange(0, (num_groups - 1) // num_nodes + 1)
    last = j * num_nodes  # 0-based index of the (j * nodes + 1)-th largest group
    pigeonhole = (prefix[:, last + 1] - prefix[:, last - j]).max(-1)
    return np.maximum(pigeonhole, group_load.sum(-1) / num_nodes)


def _balancedness(mean_gpu: np.ndarray, max_gpu_bound: np.ndarray) -> float:
    """Mean over windows of sum over layers of mean / sum of the max bound (1.0 for an idle
    window, as `harness.metrics` counts it). Both [windows, layers]."""
    peak = max_gpu_bound.sum(-1)
    ratio = np.divide(mean_gpu.sum(-1), peak, out=np.ones_like(peak), where=peak > 0)
    return float(ratio.mean())


def workload_bounds(weights: np.ndarray, topology: Topology, max_partitions: int = MAX_PARTITIONS) -> Bounds:
    """Both upper bounds on the fit balancedness of `weights: [windows, layers, experts]`
    (non-negative loads) placed on `topology`. The local bound enumerates the partitions
    of groups over nodes when there are at most `max_partitions` of them."""
    if weights.ndim != 3:
        raise HarnessError(f"weights must be [windows, layers, experts], got shape {weights.shape}")
    num_windows, num_layers, num_experts = weights.shape
    topology.check(num_experts)
    weights = np.asarray(weights, dtype=np.float64)
    mean_gpu = weights.sum(-1) / topology.num_gpus
    global_peak = np.maximum(mean_gpu, min_max_replica_load(weights, topology.num_replicas))
    bound = _balancedness(mean_gpu, global_peak)

    capacity = group_capacity(num_experts, topology)
    # Every node's slots need experts of its own groups, and no node holds more groups
    # than its slots fit.
    if not topology.num_nodes <= topology.num_groups <= topology.num_nodes * capacity:
        return Bounds(bound, float("nan"), INFEASIBLE)
    group_load = weights.reshape(num_windows * num_layers, topology.num_groups, -1).sum(-1)
    node_peak, method = best_node_load(group_load, topology.num_nodes, capacity, max_partitions)
    gpus_per_node = topology.num_gpus // topology.num_nodes
    local_peak = np.maximum(global_peak, node_peak.reshape(num_windows, num_layers) / gpus_per_node)
    return Bounds(bound, _balancedness(mean_gpu, local_peak), method)
