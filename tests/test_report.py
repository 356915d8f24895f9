"""The leaderboard's figures, ranking and text formats, built from `EvalResult` rows
directly (no candidate runs)."""

from __future__ import annotations

import csv
import io
import json
import math

import pyarrow as pa
import pytest
from helpers import row, store_of, suite_rows

from harness.cli import main
from harness.report import (
    Comparison,
    comparison,
    format_csv,
    format_json,
    format_markdown,
    format_table,
    latest,
    leaderboard,
    select,
    to_standings,
)
from harness.report.formats import DISPLAY_HEADER
from harness.store import to_table


def by_name(standings):
    return {s.candidate_name: s for s in standings}


# ---------------------------------------------------------------------------- figures

def test_leaderboard_figures():
    board = to_standings(leaderboard(to_table(suite_rows())))
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
    assert kid.worst_balancedness == pytest.approx(0.90) and par.worst_balancedness == pytest.approx(0.85)
    assert kid.fit_balancedness == pytest.approx(0.93) and kid.moved_replicas_per_plan == pytest.approx(2.0)


def test_failed_candidates_rank_last_with_their_status():
    rows = suite_rows() + [row("dead", w, status="timeout") for w in ("w0", "w1")]
    board = to_standings(leaderboard(to_table(rows)))
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
    assert sorted(zip(newest["candidate_name"].to_pylist(), newest["balancedness"].to_pylist(), strict=True)) == [
        ("a", 0.7), ("a", 0.9), ("b", 0.8)]
    board = by_name(to_standings(leaderboard(table, common_workloads=False)))
    assert board["a"].balancedness == pytest.approx(0.8) and board["b"].statuses == "ok:1"
    # like for like (the default): both on w0, the one workload b has
    board = by_name(to_standings(leaderboard(table)))
    assert board["a"].balancedness == pytest.approx(0.7) and board["a"].uncompared_workloads == 1
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
    assert [s.candidate_name for s in to_standings(leaderboard(table, devices=["cpu"], workloads=["w1"]))] == ["a", "c"]


def test_sort_keys_have_their_own_direction():
    table = to_table(suite_rows())
    assert [s.candidate_name for s in to_standings(leaderboard(table, sort_by="median_runtime_s"))][:3] == \
        ["par", "deepseek_eplb", "kid"]
    assert [s.candidate_name for s in to_standings(leaderboard(table, sort_by="median_runtime_s",
                                                               descending=True))][:3] == ["kid", "deepseek_eplb", "par"]
    assert to_standings(leaderboard(table, sort_by="speedup_vs_reference"))[0].candidate_name == "par"
    assert [s.rank for s in to_standings(leaderboard(table, sort_by="candidate_name"))] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="unknown sort key"):
        to_standings(leaderboard(table, sort_by="nope"))


# ---------------------------------------------------------------------------- formats and CLI

def test_text_formats_parse():
    board = to_standings(leaderboard(to_table(suite_rows())))
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


# ---------------------------------------------------------------------------- like for like

def overlapping_rows():
    """a on w0-w2 and b on w1-w3 (they share w1 and w2), c only on w9, d timed out on w1."""
    rows = [row("a", w, bal) for w, bal in (("w0", 0.9), ("w1", 0.8), ("w2", 0.7))]
    rows += [row("b", w, bal) for w, bal in (("w1", 0.85), ("w2", 0.75), ("w3", 0.95))]
    return rows + [row("c", "w9", 0.99), row("d", "w1", status="timeout")]


def test_leaderboard_compares_on_the_workloads_all_candidates_have():
    board = leaderboard(to_table(overlapping_rows()))
    s = by_name(to_standings(board))
    assert [b.candidate_name for b in to_standings(board)] == ["b", "a", "d"]  # c has no row on w1 or w2
    assert s["a"].balancedness == pytest.approx(0.75) and s["b"].balancedness == pytest.approx(0.80)
    assert (s["a"].workloads, s["a"].uncompared_workloads, s["d"].workloads) == (2, 1, 1)
    # d failed, so it does not narrow the others' comparison; it is shown on its row among them
    assert s["d"].statuses == "timeout:1" and s["d"].uncompared_workloads == 0
    compared = comparison(board)
    assert compared == Comparison(True, 2, 3, left_out=("c",), more_rows=("a", "b"))
    text = format_table(board)
    assert "Compared like for like on 2 workloads (3 candidates)." in text
    assert "Not used: the rows of a, b on other workloads. Left out, lacking rows on some of them: c." in text
    assert "Left out" in format_markdown(board)
    assert comparison(board.slice(0, 1)) == compared  # what --limit does keeps it


def test_all_workloads_ranks_each_over_its_own():
    board = leaderboard(to_table(overlapping_rows()), common_workloads=False)
    s = by_name(to_standings(board))
    assert [b.candidate_name for b in to_standings(board)][:3] == ["c", "b", "a"]
    assert s["a"].balancedness == pytest.approx(0.80) and s["b"].balancedness == pytest.approx(0.85)
    assert s["a"].workloads == 3 and s["c"].workloads == 1 and s["a"].uncompared_workloads == 0
    assert comparison(board) == Comparison(False, 5, 4, fewer_rows=("a", "b", "c", "d"))
    assert "not like for like" in format_table(board)


def test_one_shared_workload_set_leaves_nobody_out():
    board = leaderboard(to_table(suite_rows()))
    assert comparison(board) == Comparison(True, 3, 4)
    assert format_table(board).count("Compared like for like on 3 workloads (4 candidates).") == 1
    assert "--all-workloads" not in format_table(board)
    empty = leaderboard(to_table(suite_rows()), candidates=["nobody"])
    assert len(empty) == 0 and comparison(empty) == Comparison(True, 0, 0)


def test_cli_leaderboard_says_what_it_compared(tmp_path, capsys):
    store = store_of(tmp_path, overlapping_rows())
    assert main(["leaderboard", "--results", str(store.root), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert [r["candidate_name"] for r in json.loads(out)] == ["b", "a", "d"]  # stdout stays plain JSON
    assert "Compared like for like on 2 workloads" in err and "Left out" in err
    assert main(["leaderboard", "--results", str(store.root), "--format", "json", "--all-workloads"]) == 0
    out, err = capsys.readouterr()
    assert {r["candidate_name"]: r["workloads"] for r in json.loads(out)} == {"a": 3, "b": 3, "c": 1, "d": 1}
    assert "Each candidate over all of its own workloads" in err
    assert main(["leaderboard", "--results", str(store.root)]) == 0
    assert "Left out, lacking rows on some of them: c." in capsys.readouterr().out


def test_a_candidate_scored_half_way_is_left_out_not_shrinking_the_comparison():
    rows = [row(c, f"w{i}", 0.8) for c in ("a", "b", "c") for i in range(4)]
    rows += [row("half", "w0", 0.99), row("half", "w1", 0.99)]  # killed after two workloads
    board = leaderboard(to_table(rows))
    assert comparison(board) == Comparison(True, 4, 3, left_out=("half",))
    assert [s.workloads for s in to_standings(board)] == [4, 4, 4]
    assert to_standings(leaderboard(to_table(rows), common_workloads=False))[0].candidate_name == "half"


def test_speedup_is_the_rows_paired_figure_and_the_score_uses_it():
    from harness.metrics import harness_score
    from harness.report import SCORES

    rows = [row("deepseek_eplb", w, 0.8, 0.020, speedup_vs_reference=1.0) for w in ("w0", "w1")]
    # timed in turns with the reference: 2x and 8x, though its absolute runtimes say 1x
    rows += [row("a", "w0", 0.9, 0.020, speedup_vs_reference=2.0), row("a", "w1", 0.9, 0.020, speedup_vs_reference=8.0)]
    rows += [row("old", w, 0.9, 0.010) for w in ("w0", "w1")]  # no paired figure: the runtimes' ratio
    s = by_name(to_standings(leaderboard(to_table(rows))))
    assert s["a"].speedup_vs_reference == pytest.approx(4.0) and s["old"].speedup_vs_reference == pytest.approx(2.0)
    assert s["a"].score == pytest.approx(0.9 + 0.01 * 2) == pytest.approx(harness_score(0.9, 4.0))
    assert s["deepseek_eplb"].score == pytest.approx(0.8)
    against_old = by_name(to_standings(leaderboard(to_table(rows), reference="old")))
    assert against_old["a"].speedup_vs_reference == pytest.approx(0.5)  # another reference: runtimes only
    assert SCORES["harness"][0] == "score" and "score" in format_table(leaderboard(to_table(rows))).splitlines()[0]


def test_gaps_to_the_balance_ceilings():
    rows = [row("a", w, 0.8, fit_balancedness=0.85, bound_balancedness=0.95, local_bound_balancedness=bound)
            for w, bound in (("w0", 0.9), ("w1", 0.87), ("w2", math.nan))]
    (standing,) = to_standings(leaderboard(to_table(rows)))
    assert standing.fit_gap_to_bound == pytest.approx(0.10)
    # A workload no group-keeping placement fits (NaN ceiling) has no local gap.
    assert standing.fit_gap_to_local_bound == pytest.approx(((0.9 - 0.85) + (0.87 - 0.85)) / 2)
    assert ["fit_gap", "local_gap"] == [h for h in DISPLAY_HEADER if h.endswith("gap")]
