"""Suites under workloads/suites/ and the entry points that resolve workload names and files."""

import pytest
from test_workloads_readers import NO_OVERRIDES, needs_traces, one_line_error, steps_array, write_adrs

from harness.errors import HarnessError
from harness.workloads import PRESETS, TRACES_ENV, Topology, resolve_workloads, suite_names, suite_workloads
from harness.workloads.suites import entry_name, suite_spec


def test_suite_generation_is_bit_identical():
    first, again = suite_workloads("default"), suite_workloads("default")
    assert [w.id for w in first] == [w.id for w in again]
    for a, b in zip(first, again, strict=True):
        assert a.weights.tobytes() == b.weights.tobytes()


def test_default_suite_shape_and_cost():
    workloads = suite_workloads("default")
    assert 3 <= len(workloads) <= 5
    assert all(3 <= w.num_windows <= 5 for w in workloads)
    adrs = [w for w in workloads if w.weights.shape[1:] == (58, 256) and w.topology == Topology(288, 8, 4, 32)]
    assert len(adrs) >= 2
    assert sum(w.num_windows * w.num_layers * w.num_logical_experts for w in workloads) <= 140_000


def test_every_suite_builds_and_names_agree():
    specs = {}
    for suite in suite_names():
        spec = suite_spec(suite)
        assert isinstance(spec.get("version"), int) and spec.get("description")
        for entry in spec["workloads"]:
            name = entry_name(entry)
            assert specs.setdefault(name, entry) == entry, f"{name} means two things"
        if suite != "real":
            workloads = suite_workloads(suite)
            assert len({w.name for w in workloads}) == len(workloads)
    quick = suite_workloads("quick")
    assert sum(w.weights.size for w in quick) < 10_000


def test_unknown_suite_names_the_known_ones():
    with pytest.raises(HarnessError) as excinfo:
        suite_workloads("no-such-suite")
    message = one_line_error(excinfo)
    assert "no-such-suite" in message and all(s in message for s in ("default", "quick", "full", "real", "adrs"))


# --------------------------------------------------------------------------- real traces


@needs_traces
def test_real_suite_loads():
    workloads = suite_workloads("real")
    names = {w.name for w in workloads}
    assert {"dsv3-sglang-prefill", "llama4-maverick-mmlu", "olmoe-domains"} <= names
    assert all(w.kind == "trace" for w in workloads)


def test_real_suite_without_traces_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(TRACES_ENV, str(tmp_path / "absent"))
    with pytest.raises(HarnessError) as excinfo:
        suite_workloads("real")
    message = one_line_error(excinfo)
    assert "traces folder" in message and TRACES_ENV in message


# --------------------------------------------------------------------------- resolving names and files


def test_resolve_workloads_names_files_and_overrides(tmp_path):
    default = resolve_workloads(None, [], NO_OVERRIDES)
    assert [w.name for w in default] == [entry_name(e) for e in suite_spec("default")["workloads"]]
    (named,) = resolve_workloads(None, ["v2lite-zipf-quick"], {**NO_OVERRIDES, "num_replicas": 96})
    assert named.topology.num_replicas == 96 and named.name == "v2lite-zipf-quick"
    steps = steps_array(steps=30, layers=26, experts=64, dense=())
    path = write_adrs(tmp_path / "expert-load.json", steps)
    (trace,) = resolve_workloads("default", [str(path)], NO_OVERRIDES, window_steps=10)
    assert trace.weights.shape == (3, 26, 64) and trace.topology == PRESETS["deepseek-v2-lite"].topology


def test_resolve_unknown_workload():
    with pytest.raises(HarnessError):
        resolve_workloads(None, ["no-such-workload"], NO_OVERRIDES)
