"""Queries over the store for a search loop (`harness.queries`)."""

from __future__ import annotations

import pytest
from helpers import row, store_of, suite_rows

from harness import queries

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


