"""The HTML report, from `EvalResult` rows directly, except one test that runs a real tiny
evaluation end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, row, store_of, suite_rows

from harness.cli import main
from harness.report import LAYER_COLUMN, leaderboard, to_standings
from harness.report.html import render_html
from harness.results import EvalResult
from harness.store import ResultStore, to_table

CHROMIUM = Path("/usr/bin/chromium")


# ---------------------------------------------------------------------------- HTML report

def _report(tmp_path: Path, rows: list[EvalResult]) -> Path:
    store = store_of(tmp_path, rows)
    out = tmp_path / "report.html"
    assert main(["leaderboard", "--results", str(store.root), "--format", "html", "--out", str(out)]) == 0
    return out


def test_html_report_is_self_contained(tmp_path):
    page = _report(tmp_path, suite_rows()).read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]+">', page)) == 3
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from anywhere
    for heading in ("Key findings", "Leaderboard", "Balancedness vs runtime", "Candidates × workloads",
                    "Per-layer GPU load", "Lineage of diffs"):
        assert f"<h2>{heading}" in page
    assert "error: ValueError: boom" in page and 'class="failed"' in page
    assert "<p class='note'>Compared like for like on 3 workloads (4 candidates).</p>" in page
    assert re.search(r"<b>kid</b> #1 · balancedness 0.9200 · <span class=\"up\">Δ \+0.0600</span> vs parent", page)


def test_html_report_without_per_layer_rows_or_reference_says_so():
    rows = to_table([row("a", "w0", 0.8), row("b", "w0", 0.7)]).drop_columns([LAYER_COLUMN])
    page = render_html(rows, to_standings(leaderboard(rows)))
    assert "written before schema version 2" in page and page.count("<img") == 2
    page = render_html(to_table([row("a", "w0", 0.8)]), to_standings(leaderboard(to_table([row("a", "w0", 0.8)]))))
    assert "the reference is missing" in page and "not among these rows" in page


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_html_report_renders_in_chromium(tmp_path):
    page = _report(tmp_path, suite_rows())
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-images="3"' in body and 'data-images-decoded="3"' in body, body
    shot = tmp_path / "report.png"
    done = chromium("--window-size=1300,3000", f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "profile-png")
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_a_real_tiny_run_gives_per_layer_loads_and_a_report(tmp_path):
    weights = np.random.default_rng(3).gamma(0.7, size=(3, 4, 32)) * 100
    np.save(tmp_path / "tiny.npy", weights)
    store = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "candidates/deepseek_eplb.py", "candidates/seed_parent.py",
         "--workload", str(tmp_path / "tiny.npy"), "--num-replicas", "48", "--num-groups", "4", "--num-nodes", "2",
         "--num-gpus", "8", "--results", str(store), "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = ResultStore(store).read()
    layers = table[LAYER_COLUMN].to_pylist()
    assert set(table["status"].to_pylist()) == {"ok"} and all(len(x) == 4 and min(x) >= 1.0 for x in layers)
    # balancedness is sum of mean / sum of max: each layer's mean is the same for both candidates
    for r in table.to_pylist():
        assert r["balancedness"] <= 1.0
    out = tmp_path / "report.html"
    assert main(["leaderboard", "--results", str(store), "--format", "html", "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<img") == 3 and "peaks higher than the reference on" in page
    if CHROMIUM.exists():
        dom = chromium("--dump-dom", out.as_uri(), profile=tmp_path / "profile")
        assert 'data-images-decoded="3"' in dom.stdout


