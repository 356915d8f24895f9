"""Workload files: every reader on a small file written here in the format its producer
writes, the real traces in ../shared/traces where present, and bad files.

The helpers here (steps_array, write_adrs, one_line_error, NO_OVERRIDES) are shared with
test_suites.py and test_workloads_summary.py.
"""

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.workloads import PRESETS, file_workload, get_workload, read_loads, resolve_workloads, traces_dir
from harness.workloads.summary import layer_skew
from harness.workloads.windows import routing_counts

TRACES = traces_dir()
needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason=f"shared traces folder {TRACES} is absent")
NO_OVERRIDES = {"num_replicas": None, "num_groups": None, "num_nodes": None, "num_gpus": None}
SMALL = {"num_replicas": 16, "num_groups": 2, "num_nodes": 1, "num_gpus": 4}


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def steps_array(steps=7, layers=4, experts=8, dense=(0,), seed=0):
    """Integer step loads [steps, layers, experts] with all-zero (dense) rows."""
    counts = np.random.default_rng(seed).integers(1, 50, size=(steps, layers, experts)).astype(np.float64)
    counts[:, list(dense)] = 0
    return counts


def write_adrs(path: Path, steps: np.ndarray) -> Path:
    """The ADRS / vLLM expert-load.json layout: load_history[].logical_expert_load [layers, experts]."""
    history = [{"timestamp": 1000.0 + i, "logical_expert_load": s.astype(int).tolist()} for i, s in enumerate(steps)]
    path.write_text(json.dumps({"model": "test", "load_history": history}))
    return path


# --------------------------------------------------------------------------- loaders


def test_adrs_json_sums_steps_into_windows(tmp_path):
    steps = steps_array(steps=7)
    path = write_adrs(tmp_path / "expert-load.json", steps)
    loads = read_loads(path, window_steps=3)
    expected = np.stack([steps[0:3].sum(0), steps[3:6].sum(0), steps[6:7].sum(0)])[:, 1:]
    assert loads.format == "adrs-json"
    np.testing.assert_array_equal(loads.weights, expected)
    assert loads.partial_last
    assert any("dense" in n and "rows 0" in n for n in loads.notes)
    assert any("last window has 1 step" in n for n in loads.notes)


def test_adrs_json_streams_with_bounded_memory(tmp_path):
    steps = steps_array(steps=240, layers=12, experts=256, dense=())
    path = write_adrs(tmp_path / "expert-load.json", steps)
    size = path.stat().st_size
    tracemalloc.start()
    loads = read_loads(path, window_steps=80)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(loads.weights, steps.reshape(3, 80, 12, 256).sum(1))
    # json.load would hold every number as a Python float (about 10x the file's size); the
    # stream holds one read buffer and a step or two, whatever the number of steps
    assert peak < size / 4, (peak, size)


def test_sglang_json_two_and_three_dimensional(tmp_path):
    counts = steps_array(steps=6, layers=5, experts=16, dense=(0, 1, 2))
    two_d = tmp_path / "prefill.json"
    two_d.write_text(json.dumps({"logical_count": counts.sum(0).tolist()}))
    loads = read_loads(two_d)
    assert loads.weights.shape == (1, 2, 16) and loads.format == "sglang-json"
    np.testing.assert_array_equal(loads.weights[0], counts.sum(0)[3:])
    assert "rows 0-2" in loads.notes[0]
    three_d = tmp_path / "series.json"
    three_d.write_text(json.dumps({"logical_count": counts.tolist()}))
    loads = read_loads(three_d, window_steps=2)
    np.testing.assert_array_equal(loads.weights, counts.reshape(3, 2, 5, 16).sum(1)[:, 3:])


def test_sglang_stat_dump_pt(tmp_path):
    torch = pytest.importorskip("torch")
    counts = steps_array(steps=10, layers=4, experts=8, dense=(0,))
    path = tmp_path / "expert_distribution_recorder_1746000000.0.pt"
    # what SGLang's _StatAccumulator.dump writes: logical_count [buffered steps, layers, experts]
    torch.save({"rank": 0, "logical_count": torch.tensor(counts, dtype=torch.int32),
                "average_utilization_rate_over_window": None}, path)
    loads = read_loads(path, window_steps=5)
    np.testing.assert_array_equal(loads.weights, counts.reshape(2, 5, 4, 8).sum(1)[:, 1:])
    assert loads.format == "sglang-pt"


def test_sglang_per_pass_dump_maps_physical_to_logical(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    layers, experts, physical = 2, 4, 6
    mapping = np.stack([np.r_[np.arange(experts), rng.integers(experts, size=physical - experts)]
                        for _ in range(layers)])
    passes = rng.integers(0, 9, size=(4, layers, physical))
    records = [{"forward_pass_id": i, "rank": 0, "gatherer_key": "primary",
                "global_physical_count": torch.tensor(passes[i], dtype=torch.int32)} for i in range(4)]
    path = tmp_path / "expert_distribution_recorder_1.0_0.pt"
    torch.save({"records": records, "last_physical_to_logical_map": torch.tensor(mapping)}, path)
    loads = read_loads(path, window_steps=2)
    expected = np.zeros((4, layers, experts))
    for step in range(4):
        for layer in range(layers):
            for slot in range(physical):
                expected[step, layer, mapping[layer, slot]] += passes[step, layer, slot]
    np.testing.assert_array_equal(loads.weights, expected.reshape(2, 2, layers, experts).sum(1))


def test_routing_trace_npz_counts_tokens_per_window(tmp_path):
    rng = np.random.default_rng(5)
    tokens, layers, top_k, experts = 300, 3, 2, 8
    expert_id = rng.integers(experts, size=(tokens, layers, top_k)).astype(np.uint8)
    step = np.sort(rng.integers(0, 10, size=tokens)).astype(np.int32)
    path = tmp_path / "trace.npz"
    np.savez(path, expert_id=expert_id, step=step, num_experts=np.int32(experts), top_k=np.int32(top_k))
    loads = read_loads(path, window_steps=4)
    expected = np.zeros((3, layers, experts))
    for t in range(tokens):
        for layer in range(layers):
            for e in expert_id[t, layer]:
                expected[step[t] // 4, layer, e] += 1
    np.testing.assert_array_equal(loads.weights, expected)
    assert loads.format == "routing-trace" and loads.partial_last
    # without steps, every token is a step
    counts, _ = routing_counts(expert_id[:, :, 0], None, experts, window_steps=100)
    assert counts.shape == (3, layers, experts) and counts.sum() == tokens * layers


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt"])
def test_array_files(tmp_path, suffix):
    weights = steps_array(steps=3, layers=4, experts=8, dense=())
    path = tmp_path / f"loads{suffix}"
    if suffix == ".npy":
        np.save(path, weights)
    elif suffix == ".npz":
        np.savez(path, weights=weights)
    else:
        torch = pytest.importorskip("torch")
        torch.save(torch.tensor(weights), path)
    workload = file_workload(path, SMALL)
    np.testing.assert_array_equal(workload.weights, weights)
    two_d = tmp_path / "two.npy"
    np.save(two_d, weights[0])
    assert file_workload(two_d, SMALL).weights.shape == (1, 4, 8)


def test_parquet_long_table(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    counts = steps_array(steps=4, layers=3, experts=8, dense=(1,))
    s, layer, e = np.meshgrid(np.arange(4), np.arange(3), np.arange(8), indexing="ij")
    table = pa.table({"step": s.ravel(), "layer": layer.ravel(), "expert": e.ravel(), "count": counts.ravel()})
    path = tmp_path / "loads.parquet"
    pq.write_table(table, path)
    loads = read_loads(path, window_steps=2)
    np.testing.assert_array_equal(loads.weights, counts.reshape(2, 2, 3, 8).sum(1)[:, [0, 2]])
    assert "rows 1" in loads.notes[0]
    # per-token rows (no load column) with explicit windows
    tokens = pa.table({"window": [0, 0, 1], "layer": [0, 0, 0], "expert_id": [2, 2, 5]})
    pq.write_table(tokens, tmp_path / "tokens.parquet")
    loads = read_loads(tmp_path / "tokens.parquet")
    assert loads.weights.shape == (2, 1, 6) and loads.weights[0, 0, 2] == 2 and loads.weights[1, 0, 5] == 1


# --------------------------------------------------------------------------- real traces


@needs_traces
def test_deepseek_v3_trace_loads():
    path = TRACES / "deepseek-v3-sglang" / "prefill_in4096.json"
    workload = file_workload(path, NO_OVERRIDES)
    assert workload.weights.shape == (1, 58, 256)
    assert workload.topology == PRESETS["deepseek-v3"].topology
    assert any("rows 0-2" in n for n in workload.notes)
    skew = layer_skew(workload)
    assert 3 < np.median(skew) < 15 and (workload.weights > 0).all()


@needs_traces
def test_llama4_trace_loads_as_time_series():
    path = TRACES / "llama4-maverick-mmlu" / "abstract_algebra_anatomy.npz"
    workload = file_workload(path, NO_OVERRIDES, window_steps=16)
    assert workload.weights.shape == (9, 24, 128)
    assert workload.topology == PRESETS["llama-4-maverick"].topology
    with np.load(path) as z:
        tokens, step_counts = z["expert_id"].shape[0], z["step_counts"]
    assert workload.weights.sum() == tokens * 24
    np.testing.assert_array_equal(workload.weights[:8], step_counts[:128].reshape(8, 16, 24, 128).sum(1))
    real = get_workload("llama4-maverick-mmlu", "real")
    assert real.num_windows == 8 and real.kind == "trace"


# --------------------------------------------------------------------------- bad input


def test_truncated_json_is_a_clear_error(tmp_path):
    steps = steps_array(steps=5)
    for name, text in (("expert-load.json", json.dumps({"load_history": [{"logical_expert_load": s.tolist()}
                                                                          for s in steps]})),
                       ("sglang.json", json.dumps({"logical_count": steps[0].tolist()}))):
        for cut in (len(text) // 2, len(text) - 3):
            path = tmp_path / name
            path.write_text(text[:cut])
            with pytest.raises(HarnessError) as excinfo:
                read_loads(path, window_steps=1)
            message = one_line_error(excinfo)
            assert str(path) in message and "truncated" in message
    path = tmp_path / "broken.json"
    path.write_text('{"load_history": [{"logical_expert_load": [[1, 2]]} {"logical_expert_load": [[3, 4]]}]}')
    with pytest.raises(HarnessError) as excinfo:
        read_loads(path, window_steps=1)
    message = one_line_error(excinfo)
    assert str(path) in message and "not valid JSON" in message


def test_layer_count_disagreeing_with_topology(tmp_path):
    counts = np.ones((62, 256))
    counts[:2] = 0  # 2 dense rows, so 60 MoE layers where DeepSeek-V3 has 58
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps({"logical_count": counts.tolist()}))
    with pytest.raises(HarnessError) as excinfo:
        file_workload(path, NO_OVERRIDES, preset="deepseek-v3")
    assert "60" in one_line_error(excinfo) and "58" in str(excinfo.value)
    with pytest.raises(HarnessError) as excinfo:
        resolve_workloads(None, [str(path)], NO_OVERRIDES)
    assert "60 MoE layers" in one_line_error(excinfo) and "--num-replicas" in str(excinfo.value)


def test_window_larger_than_trace(tmp_path):
    path = write_adrs(tmp_path / "expert-load.json", steps_array(steps=5))
    with pytest.raises(HarnessError) as excinfo:
        read_loads(path, window_steps=100)
    assert "5 steps" in one_line_error(excinfo) and "--window-steps" in str(excinfo.value)
    npz = tmp_path / "trace.npz"
    np.savez(npz, expert_id=np.zeros((4, 2, 1), np.uint8), step=np.arange(4))
    with pytest.raises(HarnessError):
        read_loads(npz, window_steps=5)
    with pytest.raises(HarnessError):
        read_loads(path, window_steps=0)


def test_other_bad_input(tmp_path):
    with pytest.raises(HarnessError):
        read_loads(tmp_path / "missing.npy")
    bad = tmp_path / "neg.npy"
    np.save(bad, -np.ones((2, 3)))
    with pytest.raises(HarnessError):
        read_loads(bad)
    zero = tmp_path / "zero.npy"
    np.save(zero, np.zeros((2, 3)))
    with pytest.raises(HarnessError):
        read_loads(zero)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"something": 1}))
    with pytest.raises(HarnessError):
        read_loads(other)
