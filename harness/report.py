"""Reports over the result store: the leaderboard, one row per candidate.

Reads only the store's table. For each (candidate, workload, settings) the latest row
counts; a candidate's figures are means over its `ok` workloads, and a candidate with
any failed workload ranks below every candidate without one, so failures stay visible.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.metrics import adrs_combined_score, adrs_leaderboard_score


@dataclass(frozen=True)
class Standing:
    """One candidate's line on the leaderboard."""

    rank: int
    candidate_name: str
    candidate_hash: str
    statuses: str
    workloads: int
    balancedness: float
    replica_balancedness: float
    node_balancedness: float
    group_spread: float
    runtime_s: float
    combined_score: float
    adrs_score: float
    diff_name: str
    first_error: str


def latest(table: pa.Table) -> pa.Table:
    """The newest row of each (candidate_hash, workload_id, settings_hash)."""
    if len(table) == 0:
        return table
    order = pc.sort_indices(table, sort_keys=[("created_at", "descending")])
    table = table.take(order)
    keys = [f"{a}|{b}|{c}" for a, b, c in zip(*(table[k].to_pylist() for k in ("candidate_hash", "workload_id", "settings_hash")))]
    _, first = np.unique(np.asarray(keys, dtype=object), return_index=True)
    return table.take(pa.array(np.sort(first)))


def leaderboard(table: pa.Table, candidate_hashes: set[str] | None = None, workload_ids: set[str] | None = None,
                sort_by: str = "balancedness") -> list[Standing]:
    """Rank the candidates in `table` (optionally only the given ones and workloads)."""
    table = latest(table)
    rows = table.to_pylist()
    if candidate_hashes is not None:
        rows = [r for r in rows if r["candidate_hash"] in candidate_hashes]
    if workload_ids is not None:
        rows = [r for r in rows if r["workload_id"] in workload_ids]
    by_candidate: dict[str, list[dict]] = {}
    for row in rows:
        by_candidate.setdefault(row["candidate_hash"], []).append(row)
    standings = []
    for candidate_hash, group in by_candidate.items():
        ok = [r for r in group if r["status"] == "ok"]
        mean = {k: float(np.mean([r[k] for r in ok])) if ok else float("nan")
                for k in ("balancedness", "replica_balancedness", "node_balancedness", "group_spread", "runtime_s")}
        counts = Counter(r["status"] for r in group)
        failed = [r for r in group if r["status"] != "ok"]
        standings.append(dict(
            candidate_name=group[0]["candidate_name"], candidate_hash=candidate_hash,
            statuses=" ".join(f"{s}:{n}" for s, n in sorted(counts.items())), workloads=len(group), **mean,
            combined_score=adrs_combined_score(mean["replica_balancedness"], mean["runtime_s"]) if ok else float("nan"),
            adrs_score=adrs_leaderboard_score(mean["balancedness"], mean["runtime_s"]) if ok else float("nan"),
            diff_name=group[0]["diff_name"] or "", first_error=failed[0]["error"] if failed else "",
        ))
    descending = sort_by != "runtime_s"

    def order(s: dict) -> tuple:
        value = s[sort_by]
        value = -np.inf if np.isnan(value) else value
        return (bool(s["first_error"]), -value if descending else value, s["candidate_name"])

    return [Standing(rank=i + 1, **s) for i, s in enumerate(sorted(standings, key=order))]


def format_table(standings: list[Standing]) -> str:
    """The leaderboard as a fixed-width terminal table."""
    header = ("rank", "candidate", "status", "gpu_bal", "replica_bal", "node_bal", "group_spread",
              "runtime_ms", "combined", "adrs_score")
    lines = [header]
    for s in standings:
        lines.append((str(s.rank), s.candidate_name, s.statuses, f"{s.balancedness:.4f}",
                      f"{s.replica_balancedness:.4f}", f"{s.node_balancedness:.4f}", f"{s.group_spread:.2f}",
                      f"{s.runtime_s * 1e3:.1f}", f"{s.combined_score:.4f}", f"{s.adrs_score:.2f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            for line in lines]
    errors = [f"  {s.candidate_name}: {s.first_error}" for s in standings if s.first_error]
    return "\n".join(text + (["failures (first per candidate):"] + errors if errors else []))
