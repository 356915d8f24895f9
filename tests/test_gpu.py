"""Evaluation on CUDA: run where a GPU is present (scripts/gpu_check.sh), skipped elsewhere."""

import pytest

from harness.candidates import CANDIDATES_DIR, discover
from harness.evaluate import evaluate
from harness.settings import Settings
from harness.workloads import synthetic_workload

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


@pytest.mark.parametrize("candidate", discover([str(CANDIDATES_DIR)]), ids=lambda c: c.name)
def test_shipped_candidates_score_on_cuda(candidate):
    workload = synthetic_workload("zipf", "deepseek-v3", seed=0, num_windows=3, exponent=0.6)
    row = evaluate(candidate, workload, Settings(device="cuda"))
    assert row.status == "ok", row.error
    assert row.device == "cuda" and row.device_name and row.device_name != "cpu"
    assert row.cuda_version and row.gpu_driver_version
    assert row.peak_device_memory_bytes > 0
    cpu_row = evaluate(candidate, workload, Settings(device="cpu"))
    # The placement is the same computation wherever it runs.
    assert row.balancedness == pytest.approx(cpu_row.balancedness, rel=1e-6)
