"""Leaderboards, reports and queries over the store, built from `EvalResult` rows directly
(no candidate runs), except one test that runs a real tiny evaluation end to end."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import queries
from harness.cli import main
from harness.html_report import render_html
from harness.report import (COLUMNS, LAYER_COLUMN, format_csv, format_json, format_markdown, format_table, latest,
                            leaderboard, pareto_mask, select, t975)
from harness.results import EvalResult
from harness.store import SCHEMA, SCHEMA_VERSION, ResultStore, to_table

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
_BLANK = {"str": "", "int": 0, "float": float("nan"), "bool": False}


def row(candidate: str = "a", workload: str = "w0", bal: float = 0.9, runtime: float = 0.01, *, status: str = "ok",
        minutes: int = 0, parent: str = "", diff: str = "", **overrides) -> EvalResult:
    """A stored row with every field filled (whatever fields the schema grows)."""
    values = {f.name: _BLANK.get(f.type, T0) for f in dataclasses.fields(EvalResult)
              if f.default is dataclasses.MISSING}
    ok = status == "ok"
    values.update(
        run_id="r1", suite="s1", candidate_name=candidate, candidate_hash=f"h{candidate}", parent_hash=parent,
        diff_name=diff, workload_id=f"{workload}@0123", workload_name=workload, workload_kind="synthetic",
        num_layers=3, num_logical_experts=8, num_replicas=8, num_groups=2, num_nodes=1, num_gpus=4,
        device="cpu", settings_hash="s", created_at=T0 + timedelta(minutes=minutes), status=status,
        error="" if ok else "ValueError: boom",
        balancedness=bal if ok else math.nan, replica_balancedness=bal - 0.1 if ok else math.nan,
        node_balancedness=1.0 if ok else math.nan, group_spread=1.0 if ok else math.nan,
        runtime_s=runtime if ok else math.nan,
    )
    values.update(overrides)
    values = {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(EvalResult)}}
    if ok and "gpu_max_over_mean_per_layer" not in overrides:
        values["gpu_max_over_mean_per_layer"] = (1 / bal, 1 / bal + 0.05, 1 / bal - 0.02)
    return EvalResult(**values)


def store_of(tmp_path: Path, rows: list[EvalResult], name: str = "store") -> ResultStore:
    store = ResultStore(tmp_path / name)
    store.append(rows)
    return store


def suite_rows() -> list[EvalResult]:
    """A reference, a faster and better parent, its child by a diff, and a broken child."""
    rows = []
    for i, w in enumerate(("w0", "w1", "w2")):
        rows.append(row("deepseek_eplb", w, 0.80 + 0.01 * i, 0.020))
        rows.append(row("par", w, 0.85 + 0.01 * i, 0.010))
        rows.append(row("kid", w, 0.90 + 0.02 * i, 0.040, parent="hpar", diff="kid.diff"))
        rows.append(row("bad", w, status="error" if i == 0 else "ok", parent="hpar", diff="bad.diff"))
    return rows


def by_name(standings):
    return {s.candidate_name: s for s in standings}


# ---------------------------------------------------------------------------- figures

def test_leaderboard_figures():
    board = leaderboard(to_table(suite_rows()))
    s = by_name(board)
    kid, ref, par = s["kid"], s["deepseek_eplb"], s["par"]
    assert [b.candidate_name for b in board] == ["kid", "par", "deepseek_eplb", "bad"]
    assert kid.balancedness == pytest.approx(0.92)
    assert kid.balancedness_ci95 == pytest.approx(4.303 * 0.02 / math.sqrt(3), rel=1e-3)
    assert kid.median_runtime_s == pytest.approx(0.04) and kid.runtime_s == pytest.approx(0.04)
    assert kid.speedup_vs_reference == pytest.approx(0.5) and par.speedup_vs_reference == pytest.approx(2.0)
    assert ref.speedup_vs_reference == pytest.approx(1.0)
    assert kid.combined_score == pytest.approx((0.82 + 0.02 / 0.04) / 2)
    assert kid.adrs_score == pytest.approx(90 * 0.92 + 5 * 0.05 - 20 * 0.04)
    assert (kid.parent_name, kid.diff_name) == ("par", "kid.diff")
    assert kid.delta_vs_parent == pytest.approx(0.92 - 0.86)
    assert math.isnan(par.delta_vs_parent) and par.parent_hash == ""
    assert (kid.statuses, kid.workloads, kid.ok) == ("ok:3", 3, 3)


def test_failed_candidates_rank_last_with_their_status():
    rows = suite_rows() + [row("dead", w, status="timeout") for w in ("w0", "w1")]
    board = leaderboard(to_table(rows))
    assert [b.candidate_name for b in board][-2:] in (["bad", "dead"], ["dead", "bad"])
    bad, dead = by_name(board)["bad"], by_name(board)["dead"]
    assert bad.statuses == "error:1 ok:2" and bad.first_error == "error: ValueError: boom"
    assert bad.balancedness == pytest.approx(0.9)  # mean over its ok workloads, still shown
    assert dead.statuses == "timeout:2" and math.isnan(dead.balancedness) and dead.ok == 0
    text = format_table(board)
    assert "failures (first per candidate):" in text and "dead: timeout: ValueError: boom" in text
    assert any(line.split()[1:3] == ["dead", "timeout:2"] for line in text.splitlines())


def test_newest_row_per_candidate_and_workload_counts():
    rows = [row("a", "w0", 0.5, minutes=0), row("a", "w0", 0.7, minutes=5), row("a", "w0", 0.6, minutes=2),
            row("a", "w1", 0.9, minutes=1), row("b", "w0", status="error", minutes=0), row("b", "w0", 0.8, minutes=3)]
    table = to_table(rows)
    newest = latest(table, ("candidate_hash", "workload_id"))
    assert sorted(zip(newest["candidate_name"].to_pylist(), newest["balancedness"].to_pylist())) == [
        ("a", 0.7), ("a", 0.9), ("b", 0.8)]
    board = by_name(leaderboard(table))
    assert board["a"].balancedness == pytest.approx(0.8) and board["b"].statuses == "ok:1"
    # the default key is the evaluation: another settings hash is another evaluation
    other = to_table([row("a", "w0", 0.1, settings_hash="t", minutes=9)])
    assert len(latest(pa.concat_tables([table, other]))) == 4


def test_filters_select_runs_suites_workloads_devices_candidates():
    rows = [row("a", "w0", run_id="r1"), row("a", "w1", run_id="r2", suite="s2"), row("b", "w0", device="cuda"),
            row("c", "w1", 0.5)]
    table = to_table(rows)

    def names(**filters):
        return sorted(set(select(table, **filters)["candidate_name"].to_pylist()))

    assert names(runs=["r2"]) == ["a"] and names(suites=["s2"]) == ["a"]
    assert names(workloads=["w1"]) == ["a", "c"] and names(workloads=["w0@0123"]) == ["a", "b"]
    assert names(devices=["cuda"]) == ["b"] and names(candidates=["c", "hb"]) == ["b", "c"]
    assert names(devices=["cpu"], workloads=["w0"]) == ["a"]
    assert [s.candidate_name for s in leaderboard(table, devices=["cpu"], workloads=["w1"])] == ["a", "c"]


def test_sort_keys_have_their_own_direction():
    table = to_table(suite_rows())
    assert [s.candidate_name for s in leaderboard(table, sort_by="median_runtime_s")][:3] == \
        ["par", "deepseek_eplb", "kid"]
    assert [s.candidate_name for s in leaderboard(table, sort_by="median_runtime_s", descending=True)][:3] == \
        ["kid", "deepseek_eplb", "par"]
    assert leaderboard(table, sort_by="speedup_vs_reference")[0].candidate_name == "par"
    assert [s.rank for s in leaderboard(table, sort_by="candidate_name")] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="unknown sort key"):
        leaderboard(table, sort_by="nope")


def test_t_quantiles_and_pareto_front():
    assert t975(np.array([1, 2, 10, 30]))[:4] == pytest.approx([12.706, 4.303, 2.228, 2.042])
    assert t975(np.array([60, 1000])) == pytest.approx([2.000, 1.962], abs=2e-3)
    assert np.isnan(t975(np.array([0]))[0])
    rng = np.random.default_rng(1)
    for k, n in ((2, 200), (3, 120)):
        values = np.round(rng.random((n, k)), 1)
        values[3] = np.nan
        better = [True, False, True][:k]
        signed = np.where(better, values, -values)
        brute = np.array([np.isfinite(signed[i]).all() and not any(
            np.isfinite(signed[j]).all() and (signed[j] >= signed[i]).all() and (signed[j] > signed[i]).any()
            for j in range(n)) for i in range(n)])
        assert (pareto_mask(values, better) == brute).all()


# ---------------------------------------------------------------------------- formats and CLI

def test_text_formats_parse():
    board = leaderboard(to_table(suite_rows()))
    md = format_markdown(board).splitlines()
    assert md[0].startswith("| rank | candidate |") and md[1].startswith("|---:|---|")
    assert len([line for line in md if line.startswith("| ")]) == 5
    parsed = list(csv.DictReader(io.StringIO(format_csv(board))))
    assert parsed[0]["candidate_name"] == "kid" and float(parsed[0]["balancedness"]) == pytest.approx(0.92)
    assert parsed[1]["delta_vs_parent"] == ""  # NaN as an empty cell
    data = json.loads(format_json(board))
    assert data[0]["speedup_vs_reference"] == pytest.approx(0.5) and data[1]["delta_vs_parent"] is None
    assert data[-1]["first_error"].startswith("error:")


def test_cli_leaderboard_filters_formats_and_out(tmp_path, capsys):
    store = store_of(tmp_path, suite_rows())
    assert main(["leaderboard", "--results", str(store.root), "--format", "json", "--candidate", "kid",
                 "--candidate", "par"]) == 0
    assert [r["candidate_name"] for r in json.loads(capsys.readouterr().out)] == ["kid", "par"]
    out = tmp_path / "board.md"
    assert main(["leaderboard", "--results", str(store.root), "--format", "markdown", "--out", str(out),
                 "--sort", "median_runtime_s", "--limit", "2"]) == 0
    assert out.read_text().count("\n| ") == 2 and "| par |" in out.read_text().splitlines()[2]
    assert main(["leaderboard", "--results", str(store.root), "--device", "cuda"]) == 2
    assert "matches --device cuda" in capsys.readouterr().err
    assert main(["leaderboard", "--results", str(tmp_path / "none")]) == 2


# ---------------------------------------------------------------------------- store tolerance and interop

def _mixed_version_store(tmp_path: Path) -> Path:
    """A store with a schema-1 file (no per-layer column, one unknown column) and a current one."""
    root = tmp_path / "mixed"
    old = to_table([row("old", "w0", 0.7)]).drop_columns([LAYER_COLUMN])
    old = old.append_column("from_the_future", pa.array(["x"])).replace_schema_metadata(
        {"eplb_harness_schema_version": "1"})
    root.mkdir()
    pq.write_table(old, root / "20250101T000000-old-0000.parquet")
    ResultStore(root).append([row("new", "w0", 0.8), row("new", "w1", 0.9)])
    return root


def test_store_reads_older_versions_and_unknown_columns(tmp_path):
    root = _mixed_version_store(tmp_path)
    table = ResultStore(root).read()
    assert len(table) == 3 and "from_the_future" in table.column_names
    assert set(SCHEMA.names) <= set(table.column_names)
    by = {r["candidate_name"]: r for r in table.to_pylist()}
    assert by["old"][LAYER_COLUMN] is None and len(by["new"][LAYER_COLUMN]) == 3
    some = ResultStore(root).read([*COLUMNS, LAYER_COLUMN])
    assert some.column_names == [*COLUMNS, LAYER_COLUMN]
    assert [s.candidate_name for s in leaderboard(some)] == ["new", "old"]
    assert SCHEMA_VERSION >= 2 and pq.read_schema(next(root.glob("2*-r1-*.parquet"))).metadata[
        b"eplb_harness_schema_version"] == str(SCHEMA_VERSION).encode()


def test_pandas_reads_the_store(tmp_path):
    pd = pytest.importorskip("pandas")
    store = store_of(tmp_path, suite_rows())
    frame = pd.read_parquet(store.root)
    assert len(frame) == 12 and frame.groupby("candidate_name")["balancedness"].mean()["kid"] == pytest.approx(0.92)
    assert queries.to_pandas(_mixed_version_store(tmp_path)).shape[0] == 3


def test_polars_reads_the_store(tmp_path):
    pl = pytest.importorskip("polars")
    store = store_of(tmp_path, suite_rows())
    frame = pl.read_parquet(store.root / "*.parquet")
    assert frame.height == 12 and frame.filter(pl.col("candidate_name") == "kid")["balancedness"].mean() == \
        pytest.approx(0.92)
    assert frame[LAYER_COLUMN].dtype == pl.List(pl.Float64)
    files = sorted(_mixed_version_store(tmp_path).glob("*.parquet"))
    mixed = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    assert mixed.height == 3 and {"from_the_future", LAYER_COLUMN} <= set(mixed.columns)


def test_duckdb_reads_the_store(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    store = store_of(tmp_path, suite_rows())
    (count, mean), = duckdb.sql(
        f"select count(*), avg(balancedness) filter (where candidate_name = 'kid') "
        f"from read_parquet('{store.root}/*.parquet')").fetchall()
    assert count == 12 and mean == pytest.approx(0.92)
    mixed = _mixed_version_store(tmp_path)
    (rows, layers), = duckdb.sql(f"select count(*), max(len({LAYER_COLUMN})) "
                                 f"from read_parquet('{mixed}/*.parquet', union_by_name = true)").fetchall()
    assert (rows, layers) == (3, 3)


# ---------------------------------------------------------------------------- queries

def test_queries_for_a_search_loop(tmp_path):
    store = store_of(tmp_path, suite_rows() + [row("par", "w0", 0.1, minutes=-5)])
    assert len(queries.table(store)) == 13 and len(queries.latest(store)) == 12
    assert len(queries.latest(store, candidates=["par"])) == 3
    assert queries.top_k(store, 2)["candidate_name"].to_pylist() == ["kid", "par"]
    assert queries.top_k(store, 10, "median_runtime_s")["candidate_name"].to_pylist() == ["par", "deepseek_eplb",
                                                                                          "kid"]
    assert "bad" in queries.top_k(store, 10, include_failed=True)["candidate_name"].to_pylist()
    assert queries.top_k(store, 1, "balancedness", higher_is_better=False)["candidate_name"].to_pylist() == [
        "deepseek_eplb"]
    front = queries.pareto_front(store)
    assert sorted(front["candidate_name"].to_pylist()) == ["kid", "par"]
    assert queries.pareto_front(store, {"balancedness": "max"})["candidate_name"].to_pylist() == ["kid"]
    chain = queries.lineage(store, "kid")
    assert [c["candidate_name"] for c in chain] == ["par", "kid"] and chain[1]["diff_name"] == "kid.diff"
    assert chain[1]["delta_vs_parent"] == pytest.approx(0.06)
    assert queries.lineage(str(store.root), "hki")[-1]["candidate_name"] == "kid"  # a hash prefix
    assert sorted(queries.children(store, "par")["candidate_name"].to_pylist()) == ["bad", "kid"]
    assert queries.summary(store.root, suites=["s1"]).num_rows == 4


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
    assert re.search(r"<b>kid</b> #1 · balancedness 0.9200 · <span class=\"up\">Δ \+0.0600</span> vs parent", page)


def test_html_report_without_per_layer_rows_or_reference_says_so():
    rows = to_table([row("a", "w0", 0.8), row("b", "w0", 0.7)]).drop_columns([LAYER_COLUMN])
    page = render_html(rows, leaderboard(rows))
    assert "written before schema version 2" in page and page.count("<img") == 2
    page = render_html(to_table([row("a", "w0", 0.8)]), leaderboard(to_table([row("a", "w0", 0.8)])))
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


# ---------------------------------------------------------------------------- compaction and scores

def test_compact_merges_files_keeping_every_row_and_column(tmp_path, monkeypatch):
    root = _mixed_version_store(tmp_path)
    store = ResultStore(root)
    for r in suite_rows():
        store.append([r])
    before = store.read()
    stale = store.files()
    merged = store.compact()
    assert store.files() == [merged] and not list(root.glob(".*"))
    after = store.read()
    assert len(after) == len(before) == 15 and set(after.column_names) == set(before.column_names)
    assert sorted(map(str, after["candidate_name"].to_pylist())) == sorted(map(str, before["candidate_name"].to_pylist()))
    metadata = pq.read_schema(merged).metadata
    assert metadata[b"eplb_harness_compacted_from_versions"] == f"1,{SCHEMA_VERSION}".encode()
    assert [s.candidate_name for s in leaderboard(after)] == [s.candidate_name for s in leaderboard(before)]
    assert store.compact() is None  # one file: nothing to do
    (root / ".compact.lock").touch()
    store.append([row("late", "w0")])
    assert store.compact() is None and len(store.files()) == 2  # another compaction holds the lock
    (root / ".compact.lock").unlink()
    # a read that listed files a compaction then removed lists again
    listings = iter([stale, store.files()])
    monkeypatch.setattr(ResultStore, "files", lambda self: next(listings))
    assert len(store.read()) == 16


def test_vectorised_compatibility_scores_match_metrics():
    from harness.metrics import adrs_combined_score, adrs_leaderboard_score

    b = np.array([0.5, 0.9, 0.99, 0.7, 0.8])
    t = np.array([0.001, 0.005, 0.02, 2.0, 0.0])
    # The published formulas, written out per candidate.
    expected_adrs = [90 * x + 5 * min(0.002 / y, 2) - (min(20 * y, 20) if y > 0.01 else 0) if y > 0 else math.nan
                     for x, y in zip(b, t)]
    expected_combined = [(x - 0.1 + 0.02 / y) / 2 if y > 0 else math.nan for x, y in zip(b, t)]
    np.testing.assert_allclose(adrs_leaderboard_score(b, t), expected_adrs, equal_nan=True)
    np.testing.assert_allclose(adrs_combined_score(b - 0.1, t), expected_combined, equal_nan=True)
    # One candidate at a time gives the same figures, as plain floats.
    scalars = [adrs_leaderboard_score(x, y) for x, y in zip(b, t)]
    assert all(isinstance(value, float) for value in scalars)
    np.testing.assert_allclose(scalars, expected_adrs, equal_nan=True)