"""Queries over the result store for a search loop (and for people at a prompt).

Every function takes a `source`: a `ResultStore`, a store folder (str or Path) or an
Arrow table of store rows (e.g. one you read once and query many times). Filters are
those of the leaderboard (`harness.report.select`): `runs`, `suites`, `workloads`
(name or id), `devices`, `candidates` (name or hash prefix), each a list of values.
Results are Arrow tables; `.to_pandas()` or `polars.from_arrow()` turn them into frames.
The leaderboard queries compare candidates like for like (on the workloads they all have
rows for, see `harness.report.comparison`) unless `common_workloads=False`; their table's
`harness.report.comparison(board)` says how many workloads and who was left out.

    from harness import queries as q
    rows = q.table("results")                          # every row, every column
    q.latest("results")                                # newest row per (candidate, workload)
    q.top_k("results", 5, "balancedness")              # the 5 best fully-ok candidates
    q.pareto_front("results", {"balancedness": "max", "median_runtime_s": "min"})
    q.lineage("results", "peak_aware_tail_and_two_step_fixup")   # root first
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness import report  # for report.latest: this module's `latest` takes a source
from harness.errors import HarnessError
from harness.report import COLUMNS, PER_WORKLOAD, REFERENCE, SORT_KEYS, leaderboard, select
from harness.stats import pareto_mask
from harness.store import ResultStore

__all__ = ["Source", "children", "latest", "lineage", "pareto_front", "resolve", "summary", "table", "to_pandas",
           "top_k"]

Source = ResultStore | str | Path | pa.Table


def table(source: Source, columns: Iterable[str] | None = None) -> pa.Table:
    """Every stored row (of `columns`), older schema versions included."""
    if isinstance(source, pa.Table):
        return source if columns is None else source.select(list(columns))
    store = source if isinstance(source, ResultStore) else ResultStore(source)
    return store.read(columns)


def to_pandas(source: Source, columns: Iterable[str] | None = None):
    """`table(...)` as a pandas DataFrame (needs pandas)."""
    return table(source, columns).to_pandas()


def latest(source: Source, per: Sequence[str] = PER_WORKLOAD, **filters: Iterable[str]) -> pa.Table:
    """The newest row of each `per` group (default: each candidate on each workload) among
    the rows the filters keep; failed evaluations included (see `status`)."""
    return report.latest(select(table(source), **filters), per)


def summary(source: Source, sort_by: str = "balancedness", reference: str = REFERENCE, *,
            common_workloads: bool = True, **filters: Iterable[str]) -> pa.Table:
    """The leaderboard as an Arrow table: one ranked row per candidate, the columns of
    `harness.report.Standing` (means over ok workloads, CI, median runtime, speedup vs
    the reference, compatibility scores, lineage, first error), like for like unless
    `common_workloads` is False."""
    return leaderboard(table(source, COLUMNS), sort_by=sort_by, reference=reference,
                       common_workloads=common_workloads, **filters)


def top_k(source: Source, k: int, metric: str = "balancedness", *, higher_is_better: bool | None = None,
          include_failed: bool = False, reference: str = REFERENCE, common_workloads: bool = True,
          **filters: Iterable[str]) -> pa.Table:
    """The `k` best candidates by `metric` (a `summary` column; better is the metric's own
    direction unless `higher_is_better` says otherwise). Candidates with a failed workload
    are left out unless `include_failed` (they would rank last anyway)."""
    if metric not in SORT_KEYS:
        raise HarnessError(f"unknown metric {metric!r}; one of {sorted(SORT_KEYS)}")
    ranked = leaderboard(table(source, COLUMNS), sort_by=metric, reference=reference, descending=higher_is_better,
                         common_workloads=common_workloads, **filters)
    if not include_failed:
        ranked = ranked.filter(pc.equal(ranked["workloads"], ranked["ok"]))
    return ranked.slice(0, k)


def pareto_front(source: Source, objectives: Mapping[str, str] | None = None, *, include_failed: bool = False,
                 reference: str = REFERENCE, common_workloads: bool = True, **filters: Iterable[str]) -> pa.Table:
    """The candidates no other beats on every objective, as `summary` rows in rank order.
    `objectives` maps `summary` columns to "max" or "min" (default: balancedness max,
    median_runtime_s min). Candidates with a failed workload take no part unless
    `include_failed`; those with a NaN objective never do."""
    objectives = dict(objectives or {"balancedness": "max", "median_runtime_s": "min"})
    bad = {k: v for k, v in objectives.items() if v not in ("max", "min")}
    if bad:
        raise HarnessError(f"objectives must be 'max' or 'min': {bad}")
    ranked = summary(source, reference=reference, common_workloads=common_workloads, **filters)
    missing = [k for k in objectives if k not in ranked.column_names]
    if missing:
        raise HarnessError(f"unknown objective(s) {missing}; columns are {ranked.column_names}")
    if not include_failed:
        ranked = ranked.filter(pc.equal(ranked["workloads"], ranked["ok"]))
    values = np.column_stack([pc.fill_null(ranked[k].cast(pa.float64()), np.nan).to_numpy() for k in objectives]) \
        if len(ranked) else np.zeros((0, len(objectives)))
    return ranked.filter(pa.array(pareto_mask(values, [v == "max" for v in objectives.values()])))


def resolve(source: Source, candidate: str) -> str:
    """The hash of `candidate`: a full hash, a unique hash prefix, or a name (the newest
    candidate of that name)."""
    rows = table(source).select(["candidate_hash", "candidate_name", "created_at"])
    hashes = set(rows["candidate_hash"].to_pylist())
    if candidate in hashes:
        return candidate
    prefixed = {h for h in hashes if h and h.startswith(candidate)}
    if len(prefixed) == 1:
        return prefixed.pop()
    named = report.latest(rows.filter(pc.equal(rows["candidate_name"], candidate)), ("candidate_name",))
    if len(named):
        return named["candidate_hash"][0].as_py()
    if prefixed:
        raise HarnessError(f"hash prefix {candidate!r} is ambiguous: {sorted(prefixed)[:5]}")
    raise HarnessError(f"no candidate {candidate!r} in the store")


def lineage(source: Source, candidate: str, reference: str = REFERENCE) -> list[dict]:
    """The chain of programs that led to `candidate` (name, hash or hash prefix), root
    first: per link its hash, name, the diff that made it from the previous link, its
    mean GPU balancedness over all of its own workloads and its change vs its parent on
    the workloads both have (NaN where the store lacks a link's rows; a link whose parent
    the store never saw ends the chain there)."""
    rows = table(source, COLUMNS)
    target = resolve(rows, candidate)
    ranked = leaderboard(rows, reference=reference, common_workloads=False)  # every link, whatever it ran on
    board = {r["candidate_hash"]: r for r in ranked.to_pylist()}
    chain, seen = [], set()
    current = target
    while current and current not in seen:
        seen.add(current)
        entry = board.get(current)
        if entry is None:
            chain.append(dict(candidate_hash=current, candidate_name="", parent_hash="", diff_name="",
                              balancedness=float("nan"), delta_vs_parent=float("nan"), statuses=""))
            break
        chain.append({k: entry[k] for k in ("candidate_hash", "candidate_name", "parent_hash", "diff_name",
                                             "balancedness", "delta_vs_parent", "statuses")})
        current = entry["parent_hash"]
    return chain[::-1]


def children(source: Source, candidate: str, reference: str = REFERENCE, *,
             common_workloads: bool = True) -> pa.Table:
    """The `summary` rows of the candidates made from `candidate` by one diff."""
    rows = table(source, COLUMNS)
    parent = resolve(rows, candidate)
    ranked = summary(rows, reference=reference, common_workloads=common_workloads)
    return ranked.filter(pc.equal(ranked["parent_hash"], parent))
