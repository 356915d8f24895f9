"""Timing measures the candidate's call alone, and rows carry how it was measured."""

import math
from pathlib import Path

import numpy as np
import pytest

from harness import protocol, sandbox
from harness.candidates import REFERENCE_PATH, load_candidate
from harness.evaluate import evaluate, worker_settings
from harness.settings import TIMING_PRESETS, Settings, TimingConfig
from harness.stats import summarize
from harness.workloads import synthetic_workload

DATA = Path(__file__).parent / "data"


def test_summarize_fixed_fields():
    stats = summarize([4.0, 1.0, 3.0, 2.0, 100.0])
    assert (stats.median_s, stats.min_s, stats.samples) == (3.0, 1.0, 5)
    assert stats.iqr_s == pytest.approx(2.0)
    assert stats.relative_iqr == pytest.approx(2.0 / 3.0)
    with pytest.raises(ValueError):
        summarize([])


def test_only_the_call_is_timed():
    workload = synthetic_workload("zipf", "deepseek-v3", seed=0, num_windows=3, exponent=0.6)
    row = evaluate(load_candidate(DATA / "precomputed_candidate.py"), workload, Settings())
    assert row.status == "ok", row.error
    # Handing back a cached placement costs microseconds; checking and scoring three
    # 58 x 288 placements costs the harness milliseconds, which must not leak into it.
    assert row.runtime_s * 50 < row.scoring_s
    assert row.runtime_s * 1000 < row.eval_wall_s


def test_rows_carry_statistics_method_device_and_fingerprint():
    workload = synthetic_workload("lognormal", "deepseek-v2-lite", seed=1, num_windows=3)
    settings = Settings(timing=TimingConfig(warmup=1, min_samples=4, max_samples=6, min_time_s=0.0))
    reference = load_candidate(REFERENCE_PATH)
    row = evaluate(reference, workload, settings, partner=reference)
    assert row.status == "ok", row.error
    assert 4 <= row.runtime_samples <= 6
    assert row.runtime_min_s <= row.runtime_s and row.runtime_iqr_s >= 0
    assert row.runtime_calls_per_sample >= 1 and row.reference_calls_per_sample >= 1
    # The same program on both sides of the pairs: about as fast as itself.
    assert row.reference_runtime_s > 0
    assert row.speedup_ci95_low <= row.speedup_vs_reference <= row.speedup_ci95_high
    assert 0.5 < row.speedup_vs_reference < 2.0
    assert row.deadline_s == 120.0 and "cap" in row.deadline_rule
    assert "median of per-turn mean times" in row.timing_method
    assert row.threads == 1 and row.device == "cpu" and row.device_name == "cpu"
    assert row.cpu_model and row.cpu_count >= 1 and row.torch_version and row.numpy_version


def test_every_window_is_timed_at_least_once():
    workload = synthetic_workload("zipf", "deepseek-v2-lite", seed=2, num_windows=7)
    settings = Settings(timing=TimingConfig(warmup=0, min_samples=1, max_samples=50, min_time_s=0.0))
    row = evaluate(load_candidate(DATA / "precomputed_candidate.py"), workload, settings)
    assert row.runtime_samples == 7


def test_without_a_partner_there_is_no_speedup():
    workload = synthetic_workload("zipf", "deepseek-v2-lite", seed=2, num_windows=2)
    settings = Settings(timeout_s=30.0, timing=TimingConfig(warmup=0, min_samples=1, max_samples=3, min_time_s=0.0))
    row = evaluate(load_candidate(REFERENCE_PATH), workload, settings)
    assert row.status == "ok", row.error
    assert math.isnan(row.speedup_vs_reference) and math.isnan(row.score)
    assert (row.deadline_s, row.deadline_rule) == (30.0, "--timeout 30 s")


# The round robin candidate, each call taking about a millisecond and printing how many
# calls it has made so far.
COUNTING = (DATA / "round_robin.py").read_text().replace("def rebalance_experts(", "def _placement(", 1) + """
import time as _time
_calls = [0]


def rebalance_experts(*args):
    _calls[0] += 1
    print(f"calls {_calls[0]}", flush=True)
    _time.sleep(0.001)
    return _placement(*args)
"""


def _calls_made(outcome: sandbox.WorkerOutcome) -> int:
    return int(outcome.stdout_tail.strip().splitlines()[-1].split()[1])


@pytest.mark.parametrize("turn_s", [0.0, 0.012])
def test_a_turn_is_a_burst_of_calls_and_its_sample_their_mean(turn_s):
    workload = synthetic_workload("zipf", "deepseek-v2-lite", seed=3, num_windows=2)
    settings = Settings(timing=TimingConfig(warmup=1, min_samples=3, max_samples=3, min_time_s=0.0, turn_s=turn_s))
    outcome = sandbox.run_worker(sandbox.WorkerRequest(COUNTING, workload.weights,
                                                       worker_settings(workload, settings), 60.0))
    assert outcome.answer["status"] == "ok", (outcome.status, outcome.error, outcome.answer)
    samples = outcome.answer["runtime_samples_s"]
    timed_calls = _calls_made(outcome) - workload.num_windows - 1  # after the placement pass and the warm-up
    assert len(samples) == 3 and outcome.answer["calls_per_turn"] * 3 == timed_calls
    if turn_s:
        assert timed_calls >= 3 * 4  # turns of about 12 ms of calls of about 1 ms
    else:
        assert timed_calls == 3
    # Each sample is the time of one call, whatever the turn's length.
    assert all(0.0009 < sample < 0.006 for sample in samples), samples


def test_a_worker_that_is_only_timed_keeps_no_placements():
    workload = synthetic_workload("zipf", "deepseek-v2-lite", seed=3, num_windows=3)
    settings = Settings(timing=TimingConfig(warmup=1, min_samples=2, max_samples=2, min_time_s=0.0, turn_s=0.0))
    outcome = sandbox.run_worker(sandbox.WorkerRequest(COUNTING, workload.weights,
                                                       worker_settings(workload, settings, placements=False), 60.0))
    assert outcome.answer["status"] == "ok", (outcome.status, outcome.error, outcome.answer)
    assert outcome.placements == {} and outcome.answer["input_changed"] == []
    assert _calls_made(outcome) == 3 + 1 + 2  # the untimed pass, the warm-up and the two timed turns


def test_screen_timing_takes_few_rounds_and_is_its_own_setting():
    workload = synthetic_workload("zipf", "deepseek-v2-lite", seed=4, num_windows=3)
    reference = load_candidate(REFERENCE_PATH)
    screen = Settings(timing=TIMING_PRESETS["screen"])
    row = evaluate(reference, workload, screen, partner=reference)
    assert row.status == "ok", row.error
    # Five rounds at least, unless 0.05 s runs out first.
    assert 1 <= row.runtime_samples <= 200 and row.eval_wall_s < 5.0
    assert row.settings_hash != Settings().hash and "<= 0.05 s" in row.timing_method
    assert TIMING_PRESETS["precise"] == Settings().timing


def test_placements_travel_in_the_narrowest_integer_type_that_holds_them():
    from harness.worker import _narrowed

    small = np.array([[-1, 0, 287]], dtype=np.int64)
    large = np.array([0, 70_000], dtype=np.int64)
    huge = np.array([0, 2**40], dtype=np.int64)
    assert _narrowed(small).dtype == np.int16 and (_narrowed(small) == small).all()
    assert _narrowed(large).dtype == np.int32 and (_narrowed(large) == large).all()
    assert _narrowed(huge).dtype == np.int64 and (_narrowed(huge) == huge).all()
    floats = np.array([0.5, 1.0])
    assert _narrowed(floats) is floats  # the parent refuses it, as it was returned
    workload = synthetic_workload("zipf", "deepseek-v2-lite", seed=3, num_windows=1)
    settings = Settings(timing=TimingConfig(warmup=0, min_samples=1, max_samples=1, min_time_s=0.0))
    outcome = sandbox.run_worker(sandbox.WorkerRequest(COUNTING, workload.weights, worker_settings(workload, settings),
                                                       60.0))
    assert outcome.placements[protocol.placement_key("phy2log", 0)].dtype == np.int16


def test_rounds_end_when_the_speedup_is_known_well_enough():
    from dataclasses import asdict

    from harness.sandbox import _timed_enough

    config, windows = TimingConfig(), 1
    timing, late = asdict(config), config.max_time_s + 0.1
    early, later = config.min_paired_time_s / 2, config.min_paired_time_s + 0.1  # paired, and unpaired by min_time_s
    assert not _timed_enough(9, 0.01, windows, timing, [20.0] * 9)  # fewer rounds than min_samples
    assert _timed_enough(10, 0.01, windows, timing, [20.0] * 10)  # past the score's 16x: min_time_s waived
    assert not _timed_enough(10, early, windows, timing, [1.0] * 10)  # within it: min_time_s first
    assert _timed_enough(10, later, windows, timing, [1.0] * 10)  # then a tight interval ends them
    assert not _timed_enough(10, later, windows, timing, [0.5, 2.0] * 5)  # a wide one does not
    assert _timed_enough(10, late, windows, timing, [0.5, 2.0] * 5)  # until max_time_s
    assert not _timed_enough(10, config.min_time_s / 2, windows, timing, None)
    assert _timed_enough(10, config.min_time_s + 0.01, windows, timing, None)  # unpaired: no paired minimum
    assert not _timed_enough(10, later, 12, timing, [1.0] * 10)  # every window at least once
