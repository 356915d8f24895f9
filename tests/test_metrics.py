"""Validity rules and balance measures, pinned on the DeepSeek README example."""

import math
from collections import Counter

import numpy as np
import pytest
from helpers import README_PHY2LOG, README_TOPOLOGY, README_WEIGHT

from harness.metrics import (
    InvalidPlacement,
    Placement,
    adrs_combined_score,
    adrs_leaderboard_score,
    balance,
    check_placement,
    gpu_loads,
    group_spread,
    moved_replicas,
)
from harness.workloads import Topology

WEIGHT, PHY2LOG = README_WEIGHT, README_PHY2LOG
TOPOLOGY = Topology(**README_TOPOLOGY)


def placement_of(phy2log: np.ndarray, num_experts: int) -> Placement:
    """The honest logcnt and log2phy of `phy2log`, built plainly (loops are fine here)."""
    num_layers = phy2log.shape[0]
    logcnt = np.zeros((num_layers, num_experts), dtype=np.int64)
    slots = [[[] for _ in range(num_experts)] for _ in range(num_layers)]
    for layer in range(num_layers):
        for slot, expert in enumerate(phy2log[layer]):
            logcnt[layer, expert] += 1
            slots[layer][expert].append(slot)
    log2phy = -np.ones((num_layers, num_experts, int(logcnt.max())), dtype=np.int64)
    for layer in range(num_layers):
        for expert in range(num_experts):
            log2phy[layer, expert, :len(slots[layer][expert])] = slots[layer][expert]
    return Placement(phy2log.copy(), log2phy, logcnt)


def test_readme_example_gpu_loads_and_balancedness():
    loads = gpu_loads(PHY2LOG, WEIGHT, TOPOLOGY)
    np.testing.assert_allclose(loads[0], [121.5, 86.5, 125, 113, 147.5, 131.5, 156, 152])
    assert balance(PHY2LOG, WEIGHT, TOPOLOGY).balancedness == pytest.approx(0.8156, abs=5e-5)


def test_balance_matches_an_independent_recomputation():
    rng = np.random.default_rng(7)
    weight = rng.random((2, 12)) * 100
    logcnt = np.bincount(PHY2LOG[0], minlength=12), np.bincount(PHY2LOG[1], minlength=12)
    gpu = np.zeros((2, 8))
    node = np.zeros((2, 2))
    slot = np.zeros((2, 16))
    for layer in range(2):
        for p, expert in enumerate(PHY2LOG[layer]):
            load = weight[layer, expert] / logcnt[layer][expert]
            slot[layer, p] = load
            gpu[layer, p // 2] += load
            node[layer, p // 8] += load
    def ratio(x):
        return x.mean(1).sum() / x.max(1).sum()
    result = balance(PHY2LOG, weight, TOPOLOGY)
    assert result.balancedness == pytest.approx(ratio(gpu))
    assert result.node_balancedness == pytest.approx(ratio(node))
    assert result.replica_balancedness == pytest.approx(ratio(slot))


def test_group_spread_counts_nodes_per_group():
    # Layer 0: group 0 (experts 0-2) lies on slots 12, 13, 15 -> node 1 only; group 2
    # (experts 6-8) on slots 1, 3, 4 -> node 0 only; group 1 (3-5) on 0, 2, 5, 6, 7 -> node 0;
    # group 3 (9-11) on 8, 9, 10, 11, 14 -> node 1. Every group on one node.
    assert group_spread(PHY2LOG[:1], 12, TOPOLOGY) == 1.0
    spread = PHY2LOG[:1].copy()
    spread[0, [0, 15]] = spread[0, [15, 0]]  # expert 1 to node 0, expert 5 to node 1
    assert group_spread(spread, 12, TOPOLOGY) == 1.5


def test_moved_replicas_counts_new_copies_per_gpu():
    assert moved_replicas(PHY2LOG, PHY2LOG, TOPOLOGY) == 0
    swapped = PHY2LOG.copy()
    swapped[0, [0, 15]] = swapped[0, [15, 0]]
    assert moved_replicas(PHY2LOG, swapped, TOPOLOGY) == 2


def test_moved_replicas_agrees_with_counting_copies_gpu_by_gpu():
    rng = np.random.default_rng(7)
    topology = Topology(num_replicas=24, num_groups=1, num_nodes=2, num_gpus=4)
    for _ in range(50):
        previous = rng.integers(0, 6, (3, 24))
        current = np.where(rng.random((3, 24)) < 0.3, rng.integers(0, 6, (3, 24)), previous)
        expected = 0
        for layer in range(3):
            for gpu in range(4):
                slots = slice(gpu * 6, gpu * 6 + 6)
                expected += (Counter(current[layer, slots].tolist()) - Counter(previous[layer, slots].tolist())).total()
        assert moved_replicas(previous, current, topology) == expected


def test_honest_placement_is_valid():
    check_placement(placement_of(PHY2LOG, 12), 2, 12, TOPOLOGY)


def broken(change) -> Placement:
    placement = placement_of(PHY2LOG, 12)
    arrays = {"phy2log": placement.phy2log, "log2phy": placement.log2phy, "logcnt": placement.logcnt}
    change(arrays)
    return Placement(**arrays)


@pytest.mark.parametrize("change, rule", [
    (lambda a: a.update(phy2log=a["phy2log"].astype(float)), "phy2log has dtype float64"),
    (lambda a: a.update(phy2log=a["phy2log"][:, :15]), "phy2log has shape"),
    (lambda a: a.update(log2phy=a["log2phy"][:, :, 0]), "log2phy has shape"),
    (lambda a: a["phy2log"].__setitem__((0, 0), 12), "outside [0, 12)"),
    (lambda a: a["phy2log"].__setitem__((0, 12), 1), "expert 0 of layer 0 has no replica"),
    (lambda a: a["logcnt"].__setitem__((1, 0), 2), "logcnt disagrees with phy2log"),
    (lambda a: a["log2phy"].__setitem__((0, 0, 0), 1), "another expert"),
    (lambda a: a["log2phy"].__setitem__((0, 1, 1), 13), "same slot twice"),
    (lambda a: a["log2phy"].__setitem__((0, 0, 1), 3), "not -1"),
    (lambda a: a["log2phy"].__setitem__((0, 0, 0), 99), "outside [0, 16)"),
])
def test_each_broken_rule_is_named(change, rule):
    with pytest.raises(InvalidPlacement, match=rule.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        check_placement(broken(change), 2, 12, TOPOLOGY)


def test_compatibility_scores_take_floats_or_arrays():
    b = np.array([0.5, 0.9, 0.99, 0.7, 0.8])
    t = np.array([0.001, 0.005, 0.02, 2.0, 0.0])
    # The published formulas, written out per candidate.
    expected_adrs = [90 * x + 5 * min(0.002 / y, 2) - (min(20 * y, 20) if y > 0.01 else 0) if y > 0 else math.nan
                     for x, y in zip(b, t, strict=True)]
    expected_combined = [(x - 0.1 + 0.02 / y) / 2 if y > 0 else math.nan for x, y in zip(b, t, strict=True)]
    np.testing.assert_allclose(adrs_leaderboard_score(b, t), expected_adrs, equal_nan=True)
    np.testing.assert_allclose(adrs_combined_score(b - 0.1, t), expected_combined, equal_nan=True)
    # One candidate at a time gives the same figures, as plain floats.
    scalars = [adrs_leaderboard_score(x, y) for x, y in zip(b, t, strict=True)]
    assert all(isinstance(value, float) for value in scalars)
    np.testing.assert_allclose(scalars, expected_adrs, equal_nan=True)
