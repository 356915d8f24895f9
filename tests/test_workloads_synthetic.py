"""Synthetic workload families and the model presets they are drawn on."""

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.workloads import FAMILIES, PRESETS, Topology, synthetic_workload
from harness.workloads.synthetic import fitted_figures


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_families_are_seeded_and_deterministic(family):
    first = synthetic_workload(family, "deepseek-v3", 7, 3)
    again = synthetic_workload(family, "deepseek-v3", 7, 3)
    other = synthetic_workload(family, "deepseek-v3", 8, 3)
    assert first.id == again.id and first.id != other.id
    assert np.array_equal(first.weights, again.weights)
    assert first.weights.shape == (3, 58, 256) and (first.weights >= 0).all()
    assert not np.array_equal(first.weights[0], first.weights[1])  # windows drift


def test_fitted_family_reproduces_the_fitted_skew():
    figures = fitted_figures("deepseek-v3")
    workload = synthetic_workload("fitted", "deepseek-v3", 0, 2, source="deepseek-v3", drift=0.0)
    logs = np.log(workload.weights / workload.weights.mean(-1, keepdims=True))
    fitted_std = np.asarray(figures["per_layer"]["log_load_std"])
    assert abs(logs.std(-1).mean() - fitted_std.mean()) < 0.05
    share = (logs.reshape(2, 58, 8, 32).mean(-1).var(-1) / logs.var(-1)).mean()
    assert share > 0.15  # groups run hot together, as in the trace (chance would be 0.03)
    assert "source" in figures and "commit" in figures["source"]["origin"]
    interpolated = synthetic_workload("fitted", "qwen3-235b-a22b", 0, 2, source="deepseek-v3")
    assert interpolated.weights.shape == (2, 94, 128)


def test_presets_hold_their_experts():
    for name, preset in PRESETS.items():
        preset.topology.check(preset.num_logical_experts)
        assert preset.source and preset.top_k >= 1, name
    assert (PRESETS["deepseek-v3"].num_layers, PRESETS["deepseek-v3"].topology) == (58, Topology(288, 8, 4, 32))


def test_bad_family_parameters():
    with pytest.raises(HarnessError):
        synthetic_workload("zipf", "deepseek-v3", 0, 2, sigma=1.0)  # not a zipf parameter
    with pytest.raises(HarnessError):
        synthetic_workload("group_hot", "mixtral-8x7b", 0, 2)  # no expert groups
