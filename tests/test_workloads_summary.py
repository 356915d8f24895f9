"""What the `workloads` command prints and writes: summaries, exports and the command itself."""

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.workloads import export_workload, format_workload_summary, get_workload, summarize_workload
from harness.workloads.suites import entry_name, suite_spec


def test_summary_and_export(tmp_path):
    workload = get_workload("dsv3-fitted")
    summary = summarize_workload(workload)
    assert summary["id"] == workload.id and summary["shape"] == {"windows": 4, "layers": 58, "experts": 256}
    assert len(summary["skew_per_layer"]) == 58 and summary["skew"]["min"] > 1
    text = format_workload_summary(workload)
    assert workload.id in text and "max/mean" in text
    out = export_workload(workload, tmp_path / "dsv3.npy")
    np.testing.assert_array_equal(np.load(out), workload.weights)
    with pytest.raises(HarnessError):
        export_workload(workload, tmp_path / "dsv3.csv")


def test_workloads_command(tmp_path, capsys):
    cli = pytest.importorskip("harness.cli")
    assert cli.main(["workloads", "list", "--names"]) == 0
    names = capsys.readouterr().out.split()
    assert names[:4] == [entry_name(e) for e in suite_spec("default")["workloads"]]
    assert cli.main(["workloads", "show", "v2lite-zipf-quick"]) == 0
    assert "v2lite-zipf-quick@" in capsys.readouterr().out
    assert cli.main(["workloads", "export", "v2lite-zipf-quick", "-o", str(tmp_path / "q.npy")]) == 0
    assert np.load(tmp_path / "q.npy").shape == (2, 26, 64)
    assert cli.main(["workloads", "list", "--suite", "nope"]) == 2
    assert "known suites" in capsys.readouterr().err
