"""Queries over the store for a search loop (`harness.queries`)."""

from __future__ import annotations

import pytest
from helpers import row, store_of, suite_rows

from harness import queries
from harness.report import comparison

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




def test_queries_compare_like_for_like_and_lineage_keeps_every_link(tmp_path):
    # the parent ran w0-w2; its child only w0, where it is worse than the parent's mean
    rows = [row("par", w, bal) for w, bal in (("w0", 0.7), ("w1", 0.9), ("w2", 0.95))]
    rows += [row("kid", "w0", 0.8, parent="hpar", diff="kid.diff"), row("odd", "w7", 0.99)]
    store = store_of(tmp_path, rows)
    assert queries.top_k(store, 2)["candidate_name"].to_pylist() == ["kid", "par"]  # on w0, the one they share
    board = queries.summary(store)
    assert comparison(board).left_out == ("odd",) and comparison(board).workloads == 1
    assert queries.top_k(store, 3, common_workloads=False)["candidate_name"].to_pylist() == ["odd", "par", "kid"]
    chain = queries.lineage(store, "kid")  # each link over all of its own workloads
    assert [c["candidate_name"] for c in chain] == ["par", "kid"]
    assert chain[0]["balancedness"] == pytest.approx(0.85) and chain[1]["delta_vs_parent"] == pytest.approx(0.1)
    assert queries.children(store, "par")["candidate_name"].to_pylist() == ["kid"]
