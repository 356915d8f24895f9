"""Reports over the result store: the leaderboard, one row per candidate, in five formats.

Reads only the store's table, column-wise with pyarrow and numpy (no per-row Python), so
a store of 100,000 rows ranks in well under a second.

How a leaderboard is made:
- `select` keeps the rows of the runs, suites, workloads, devices and candidates asked
  for; then, per (candidate, workload), the newest row counts (`latest` with
  `PER_WORKLOAD`): a later evaluation of the same candidate on the same workload replaces
  an earlier one, whatever its settings, so filter by device to compare like with like.
- A candidate's balance figures are means over its `ok` workloads, with a 95% confidence
  interval (Student t) of GPU balancedness over those workloads. `median_runtime_s` is the
  median of the per-workload runtimes; `runtime_s` is their mean, which the compatibility
  scores use as DESIGN.md defines them (`combined_score`, `adrs_score`).
- `speedup_vs_reference`: geometric mean over the workloads both ran `ok` of the
  reference's runtime over the candidate's (the reference is the candidate named
  `deepseek_eplb` unless told otherwise; > 1 is faster than it).
- `delta_vs_parent`: mean over the workloads both ran `ok` of the candidate's GPU
  balancedness minus its parent's, for candidates made by a diff.
- Ranking: a candidate with any failed workload ranks below every candidate without one
  (failures stay listed, with their status and first error), then by the sort key (its
  own direction: higher is better except for runtimes and group spread), then the faster
  (median runtime), then by name.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.metrics import adrs_combined_score, adrs_leaderboard_score

REFERENCE = "deepseek_eplb"
EVALUATION_KEYS = ("candidate_hash", "workload_id", "settings_hash")
PER_WORKLOAD = ("candidate_hash", "workload_id")
FORMATS = ("table", "markdown", "csv", "json", "html")
# Store columns the leaderboard reads; the HTML report reads LAYER_COLUMN too.
LAYER_COLUMN = "gpu_max_over_mean_per_layer"
COLUMNS = (
    "run_id", "suite", "created_at", "candidate_name", "candidate_hash", "parent_hash", "diff_name",
    "workload_id", "workload_name", "device", "settings_hash", "status", "error", "balancedness",
    "replica_balancedness", "node_balancedness", "group_spread", "runtime_s",
)
_BALANCE = ("balancedness", "replica_balancedness", "node_balancedness", "group_spread")


@dataclass(frozen=True)
class Standing:
    """One candidate's line on the leaderboard (figures over its `ok` workloads; NaN when
    it has none)."""

    rank: int
    candidate_name: str
    candidate_hash: str
    statuses: str  # "error:1 ok:3"
    workloads: int
    ok: int
    balancedness: float
    balancedness_ci95: float  # half width of the 95% interval over workloads; NaN below 2
    replica_balancedness: float
    node_balancedness: float
    group_spread: float
    runtime_s: float  # mean over workloads (what the compatibility scores use)
    median_runtime_s: float
    speedup_vs_reference: float
    combined_score: float
    adrs_score: float
    parent_hash: str
    parent_name: str
    diff_name: str
    delta_vs_parent: float
    first_error: str  # "status: message" of its first failed workload


STANDING_FIELDS = tuple(f.name for f in fields(Standing))
# The sort keys and whether higher is better.
SORT_KEYS = {
    "balancedness": True, "replica_balancedness": True, "node_balancedness": True, "group_spread": False,
    "runtime_s": False, "median_runtime_s": False, "speedup_vs_reference": True, "combined_score": True,
    "adrs_score": True, "delta_vs_parent": True, "ok": True, "candidate_name": False,
}


# ---------------------------------------------------------------------------- selection

def _string_in(column: pa.ChunkedArray, values: Iterable[str]) -> pa.ChunkedArray:
    return pc.is_in(column, value_set=pa.array(sorted(set(values)), type=pa.string()))


def _any(masks: list) -> pa.ChunkedArray:
    mask = masks[0]
    for other in masks[1:]:
        mask = pc.or_kleene(mask, other)
    return mask


def select(table: pa.Table, *, runs: Iterable[str] = (), suites: Iterable[str] = (), workloads: Iterable[str] = (),
           devices: Iterable[str] = (), candidates: Iterable[str] = (), candidate_hashes: Iterable[str] | None = None,
           workload_ids: Iterable[str] | None = None) -> pa.Table:
    """The rows matching every filter given (an empty filter keeps everything).

    `workloads` match `workload_id` or `workload_name`; `candidates` match
    `candidate_name` or a prefix of `candidate_hash`; `candidate_hashes` and
    `workload_ids` match exactly (an empty set keeps nothing)."""
    masks = []
    for column, values in (("run_id", runs), ("suite", suites), ("device", devices)):
        values = list(values)
        if values:
            masks.append(_string_in(table[column], values))
    workloads, candidates = list(workloads), list(candidates)
    if workloads:
        masks.append(_any([_string_in(table["workload_id"], workloads), _string_in(table["workload_name"], workloads)]))
    if candidates:
        masks.append(_any([_string_in(table["candidate_name"], candidates)]
                          + [pc.starts_with(table["candidate_hash"], pattern=c) for c in candidates]))
    if candidate_hashes is not None:
        masks.append(_string_in(table["candidate_hash"], candidate_hashes))
    if workload_ids is not None:
        masks.append(_string_in(table["workload_id"], workload_ids))
    if not masks:
        return table
    mask = masks[0]
    for other in masks[1:]:
        mask = pc.and_kleene(mask, other)
    return table.filter(mask)  # a null in the mask drops the row


def latest(table: pa.Table, keys: Sequence[str] = EVALUATION_KEYS) -> pa.Table:
    """The newest row (by `created_at`; a tie goes to the later row) of each `keys` group,
    by default each evaluation (candidate hash, workload id, settings hash). Rows keep
    their order in `table`."""
    if len(table) == 0:
        return table
    created = pc.fill_null(table["created_at"].cast(pa.int64()), np.iinfo(np.int64).min).to_numpy()
    group = _group_codes(table, keys)
    order = np.lexsort((np.arange(len(table)), created, group))
    last = np.r_[group[order][1:] != group[order][:-1], True]
    return table.take(np.sort(order[last]))


def _group_codes(table: pa.Table, keys: Sequence[str]) -> np.ndarray:
    """One int64 code per row, equal for rows equal in every `keys` column (null and ""
    alike). Pure numpy and pyarrow.compute: group_by would load Acero, slow to import."""
    group = np.zeros(len(table), dtype=np.int64)
    for key in keys:
        codes, values = _codes(table[key])
        group = group * max(len(values), 1) + codes
        _, group = np.unique(group, return_inverse=True)  # keep the codes small
        group = group.ravel().astype(np.int64)
    return group


# ---------------------------------------------------------------------------- figures

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(dof: np.ndarray) -> np.ndarray:
    """The 0.975 quantile of Student's t with `dof` degrees of freedom (NaN below 1):
    a table to 30, a Cornish-Fisher expansion above (error < 1e-4)."""
    dof = np.asarray(dof, dtype=np.float64)
    z = 1.959963984540054
    safe = np.maximum(dof, 1.0)
    expansion = z + (z**3 + z) / (4 * safe) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * safe**2)
    table = np.asarray(_T975)[np.clip(safe.astype(np.int64), 1, 30) - 1]
    return np.where(dof < 1, np.nan, np.where(dof <= 30, table, expansion))


def _floats(table: pa.Table, column: str) -> np.ndarray:
    return pc.fill_null(table[column], np.nan).to_numpy().astype(np.float64, copy=False)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    encoded = pc.fill_null(column, "").combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy().astype(np.int64), encoded.dictionary.to_pylist()


def _group_mean(codes: np.ndarray, values: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the mean of the finite `values` and how many there were."""
    finite = np.isfinite(values)
    count = np.bincount(codes[finite], minlength=groups).astype(np.float64)
    total = np.bincount(codes[finite], weights=values[finite], minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan), count


def _group_median(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    finite = np.isfinite(values)
    codes, values = codes[finite], values[finite]
    order = np.lexsort((values, codes))
    codes, values = codes[order], values[order]
    start = np.searchsorted(codes, np.arange(groups), side="left")
    end = np.searchsorted(codes, np.arange(groups), side="right")
    count = end - start
    low = np.clip(start + (count - 1) // 2, 0, max(len(values) - 1, 0))
    high = np.clip(start + count // 2, 0, max(len(values) - 1, 0))
    if len(values) == 0:
        return np.full(groups, np.nan)
    return np.where(count > 0, (values[low] + values[high]) / 2, np.nan)


def _first_per_group(codes: np.ndarray, groups: int) -> np.ndarray:
    """Index of each group's first row (-1 where a group has none)."""
    first = np.full(groups, -1, dtype=np.int64)
    unique, index = np.unique(codes, return_index=True)
    first[unique] = index
    return first


def _pairwise_delta(cand: np.ndarray, work: np.ndarray, values: np.ndarray, partner: np.ndarray,
                    groups: int, num_workloads: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group g: the mean over workloads w where both have a finite value of
    value(g, w) - value(partner[g], w), and how many such w. The rows are parallel arrays
    with one row per (group, workload); partner -1 means none."""
    finite = np.isfinite(values)
    cand, work, values = cand[finite], work[finite], values[finite]
    if len(values) == 0:
        return np.full(groups, np.nan), np.zeros(groups)
    keys = cand * num_workloads + work
    order = np.argsort(keys, kind="stable")
    sorted_keys, sorted_values = keys[order], values[order]
    other = partner[cand]
    wanted = other * num_workloads + work
    position = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
    found = (other >= 0) & (sorted_keys[position] == wanted)
    return _group_mean(cand[found], values[found] - sorted_values[position[found]], groups)


def standings_table(table: pa.Table, sort_by: str = "balancedness", reference: str = REFERENCE,
                    descending: bool | None = None, names: pa.Table | None = None) -> pa.Table:
    """The leaderboard as an Arrow table, one row per candidate, ranked, columns as
    `Standing`'s fields. `table` holds the rows to rank (already selected); it is reduced
    to the newest row per (candidate, workload) here. `names` (candidate_hash,
    candidate_name) names parents that `table` lacks, e.g. the whole store's."""
    if sort_by not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort_by!r}; one of {sorted(SORT_KEYS)}")
    table = latest(table, PER_WORKLOAD)
    cand, hashes = _codes(table["candidate_hash"])
    groups = len(hashes)
    if groups == 0:
        return pa.Table.from_pylist([], schema=_standing_schema())
    work, workload_ids = _codes(table["workload_id"])
    status, status_names = _codes(table["status"])
    ok = status == (status_names.index("ok") if "ok" in status_names else -1)
    created = pc.fill_null(table["created_at"].cast(pa.int64()), 0).to_numpy()

    # Names and lineage from each candidate's newest row.
    newest = np.lexsort((created, cand))
    last = newest[np.searchsorted(cand[newest], np.arange(groups), side="right") - 1]
    heads = table.select(["candidate_name", "parent_hash", "diff_name"]).take(last)
    name = pc.fill_null(heads["candidate_name"], "").combine_chunks()
    parent_hash = pc.fill_null(heads["parent_hash"], "").combine_chunks()
    diff_name = pc.fill_null(heads["diff_name"], "").combine_chunks()

    # Status counts and the first failure.
    kinds = len(status_names)
    counts = np.bincount(cand * kinds + status, minlength=groups * kinds).reshape(groups, kinds)
    by_name = np.argsort(status_names)
    spelled: dict[tuple, str] = {}
    statuses = []
    for row in map(tuple, counts[:, by_name]):
        text = spelled.get(row)
        if text is None:
            text = spelled[row] = " ".join(f"{status_names[by_name[i]]}:{n}" for i, n in enumerate(row) if n)
        statuses.append(text)
    workloads = counts.sum(axis=1)
    ok_count = np.bincount(cand[ok], minlength=groups)
    failed_rows = np.flatnonzero(~ok)
    first_failed = _first_per_group(cand[failed_rows], groups)
    first_error = np.full(groups, "", dtype=object)
    failing_groups = np.flatnonzero(first_failed >= 0)
    rows = failed_rows[first_failed[failing_groups]]
    errors = pc.fill_null(table["error"].take(rows), "").to_pylist()
    first_error[failing_groups] = [f"{status_names[status[r]]}: {e}" for r, e in zip(rows, errors)]

    # Balance and runtime over ok workloads.
    ok_cand, ok_work = cand[ok], work[ok]
    means = {k: _group_mean(ok_cand, _floats(table, k)[ok], groups)[0] for k in (*_BALANCE, "runtime_s")}
    balanced = _floats(table, "balancedness")[ok]
    mean_b, n_b = _group_mean(ok_cand, balanced, groups)
    finite = np.isfinite(balanced)
    squares = np.bincount(ok_cand[finite], weights=(balanced[finite] - mean_b[ok_cand[finite]]) ** 2,
                          minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(squares / (n_b - 1))
        ci95 = np.where(n_b >= 2, t975(n_b - 1) * std / np.sqrt(n_b), np.nan)
    runtime = _floats(table, "runtime_s")[ok]
    median_runtime = _group_median(ok_cand, runtime, groups)

    # Speedup vs the reference's newest ok row on each workload.
    is_reference = ok & pc.fill_null(pc.equal(table["candidate_name"], reference), False).to_numpy()
    reference_runtime = np.full(len(workload_ids), np.nan)
    ref_rows = np.flatnonzero(is_reference)
    ref_rows = ref_rows[np.lexsort((created[ref_rows], work[ref_rows]))]
    if len(ref_rows):
        ref_last = ref_rows[np.r_[work[ref_rows][1:] != work[ref_rows][:-1], True]]
        reference_runtime[work[ref_last]] = _floats(table, "runtime_s")[ref_last]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_ratio = np.log(reference_runtime[ok_work] / runtime)
    log_ratio[~np.isfinite(log_ratio)] = np.nan
    speedup = np.exp(_group_mean(ok_cand, log_ratio, groups)[0])

    # Balancedness change vs the parent on shared workloads.
    hash_array = pa.array(hashes, type=pa.string())
    parent = pc.fill_null(pc.index_in(parent_hash, value_set=hash_array), -1).to_numpy().astype(np.int64)
    delta = _pairwise_delta(ok_cand, ok_work, balanced, parent, groups, len(workload_ids))[0]
    parent_name = pc.if_else(parent >= 0, name.take(pa.array(np.maximum(parent, 0))), "")
    if names is not None and len(names):
        outside = pc.index_in(parent_hash, value_set=names["candidate_hash"].combine_chunks())
        elsewhere = pc.fill_null(names["candidate_name"].combine_chunks().take(outside), "")
        parent_name = pc.if_else(pc.and_(pa.array(parent < 0), pc.not_equal(parent_hash, "")), elsewhere, parent_name)

    combined = adrs_combined_score(means["replica_balancedness"], means["runtime_s"])
    adrs = adrs_leaderboard_score(means["balancedness"], means["runtime_s"])

    columns = dict(
        candidate_name=name, candidate_hash=hash_array, statuses=pa.array(statuses, type=pa.string()),
        workloads=workloads, ok=ok_count, balancedness=means["balancedness"], balancedness_ci95=ci95,
        replica_balancedness=means["replica_balancedness"], node_balancedness=means["node_balancedness"],
        group_spread=means["group_spread"], runtime_s=means["runtime_s"], median_runtime_s=median_runtime,
        speedup_vs_reference=speedup, combined_score=combined, adrs_score=adrs, parent_hash=parent_hash,
        parent_name=parent_name, diff_name=diff_name, delta_vs_parent=delta,
        first_error=pa.array(first_error, type=pa.string()),
    )
    higher_better = SORT_KEYS[sort_by] if descending is None else descending
    name_rank = pc.rank(name, sort_keys="ascending", tiebreaker="dense").to_numpy()
    if sort_by == "candidate_name":
        key = name_rank.astype(np.float64) * (-1 if higher_better else 1)
    else:
        value = np.asarray(columns[sort_by], dtype=np.float64)
        key = np.where(np.isfinite(value), -value if higher_better else value, np.inf)
    failing = workloads > ok_count
    faster = np.where(np.isfinite(median_runtime), median_runtime, np.inf)  # breaks ties before the name
    order = pa.array(np.lexsort((name_rank, faster, key, failing)))
    schema = _standing_schema()
    ranked = [pa.array(np.arange(1, groups + 1))] + [
        (v if isinstance(v, pa.Array) else pa.array(v, type=schema.field(k).type)).take(order)
        for k, v in columns.items()]
    return pa.Table.from_arrays(ranked, schema=schema)


def _standing_schema() -> pa.Schema:
    kinds = {"int": pa.int64(), "str": pa.string(), "float": pa.float64()}
    return pa.schema([pa.field(f.name, kinds[f.type]) for f in fields(Standing)])


def leaderboard_table(table: pa.Table, candidate_hashes: set[str] | None = None,
                      workload_ids: set[str] | None = None, sort_by: str = "balancedness",
                      reference: str = REFERENCE, descending: bool | None = None,
                      **filters: Iterable[str]) -> pa.Table:
    """`leaderboard` as an Arrow table (`Standing`'s fields as columns): what the text
    formats render fastest and what queries return."""
    chosen = select(table, candidate_hashes=candidate_hashes, workload_ids=workload_ids, **filters)
    return standings_table(chosen, sort_by=sort_by, reference=reference, descending=descending,
                           names=_names(table))


def leaderboard(table: pa.Table, candidate_hashes: set[str] | None = None, workload_ids: set[str] | None = None,
                sort_by: str = "balancedness", reference: str = REFERENCE, descending: bool | None = None,
                **filters: Iterable[str]) -> list[Standing]:
    """Rank the candidates in `table` (optionally only the given ones and workloads, and
    the rows `select(**filters)` keeps: runs, suites, workloads, devices, candidates).
    Parents are named from the whole of `table`."""
    ranked = leaderboard_table(table, candidate_hashes, workload_ids, sort_by=sort_by, reference=reference,
                               descending=descending, **filters)
    return standings(ranked)


def standings(ranked: pa.Table) -> list[Standing]:
    """The rows of a leaderboard table as `Standing`s."""
    return [Standing(*values) for values in zip(*(ranked[k].to_pylist() for k in STANDING_FIELDS))]


def _names(table: pa.Table) -> pa.Table:
    """(candidate_hash, candidate_name) pairs of `table`, one per hash."""
    codes, hashes = _codes(table["candidate_hash"])
    last = np.full(len(hashes), -1, dtype=np.int64)
    last[codes] = np.arange(len(codes))  # the last row of each hash wins
    return pa.table({"candidate_hash": pa.array(hashes, type=pa.string()),
                     "candidate_name": table["candidate_name"].take(pa.array(last))})


def pareto_mask(values: np.ndarray, higher_better: Sequence[bool]) -> np.ndarray:
    """Which rows of `values: [n, k]` no other row dominates (at least as good in every
    column and better in one), each column better high or low as `higher_better` says.
    Rows with a NaN are never on the front. Two columns: O(n log n); more: O(n^2)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(higher_better):
        raise ValueError("values must be [n, k] with one direction per column")
    signed = np.where(np.asarray(higher_better, dtype=bool), values, -values)
    usable = np.isfinite(signed).all(axis=1)
    front = np.zeros(len(values), dtype=bool)
    points = signed[usable]
    if len(points) == 0:
        return front
    if points.shape[1] == 1:
        front[usable] = points[:, 0] == points[:, 0].max()
    elif points.shape[1] == 2:
        a, b = points[:, 0], points[:, 1]
        levels, level = np.unique(-a, return_inverse=True)  # level 0: the highest a
        level = level.ravel()
        best_b = np.full(len(levels), -np.inf)
        np.maximum.at(best_b, level, b)
        above = np.concatenate(([-np.inf], np.maximum.accumulate(best_b)[:-1]))  # best b at a strictly higher a
        front[usable] = (b == best_b[level]) & (b > above[level])
    else:
        keep = np.ones(len(points), dtype=bool)
        for start in range(0, len(points), 256):
            chunk = points[start:start + 256, None, :]
            dominated = ((points[None] >= chunk).all(-1) & (points[None] > chunk).any(-1)).any(-1)
            keep[start:start + 256] = ~dominated
        front[usable] = keep
    return front


# ---------------------------------------------------------------------------- formats

def _number(value: float, digits: int, scale: float = 1.0) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value * scale:.{digits}f}"


Board = Sequence[Standing] | pa.Table  # what the formatters take: standings or a leaderboard table


def _columns(board: Board) -> dict[str, list]:
    if isinstance(board, pa.Table):
        return {k: board[k].to_pylist() for k in STANDING_FIELDS}
    return {k: [getattr(s, k) for s in board] for k in STANDING_FIELDS}


def _lineage(parent_hash: str, parent_name: str, diff_name: str) -> str:
    if not parent_hash:
        return ""
    parent = parent_name or parent_hash[:8]
    return f"{parent} + {diff_name}" if diff_name else parent


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


DISPLAY_HEADER = ("rank", "candidate", "status", "gpu_bal", "±95%", "replica_bal", "node_bal", "group_spread",
                  "runtime_ms", "speedup", "combined", "adrs_score", "Δbal_parent", "lineage")


def _numbers(values: Sequence[float], digits: int, scale: float = 1.0, sign: str = "") -> list[str]:
    array = np.asarray(values, dtype=np.float64) * scale
    spec = f"{{:{sign}.{digits}f}}".format
    return [spec(v) if f else "-" for v, f in zip(array.tolist(), np.isfinite(array).tolist())]


def display_columns(board: Board) -> list[list[str]]:
    """The leaderboard's cells as text, column by column under `DISPLAY_HEADER` (runtime
    is the median over workloads, in ms; speedup is vs the reference, ×)."""
    c = board if isinstance(board, dict) else _columns(board)
    return [
        [str(r) for r in c["rank"]], c["candidate_name"], c["statuses"],
        _numbers(c["balancedness"], 4), _numbers(c["balancedness_ci95"], 4),
        _numbers(c["replica_balancedness"], 4), _numbers(c["node_balancedness"], 4),
        _numbers(c["group_spread"], 2), _numbers(c["median_runtime_s"], 2, 1e3),
        _numbers(c["speedup_vs_reference"], 2), _numbers(c["combined_score"], 4),
        _numbers(c["adrs_score"], 2), _numbers(c["delta_vs_parent"], 4, sign="+"),
        list(map(_lineage, c["parent_hash"], c["parent_name"], c["diff_name"])),
    ]


def display_rows(board: Board) -> list[tuple[str, ...]]:
    """The leaderboard's cells as text, row by row (see `display_columns`)."""
    return list(zip(*display_columns(board))) if len(board) else []


def _failures(c: dict[str, list], limit: int) -> list[tuple[str, str]]:
    return [(name, _one_line(error, limit)) for name, error in zip(c["candidate_name"], c["first_error"]) if error]


def format_table(board: Board) -> str:
    """The leaderboard as a fixed-width terminal table, failures listed below it."""
    c = _columns(board)
    left = {0, 1, 2, len(DISPLAY_HEADER) - 1}
    padded = []
    for i, (head, cells) in enumerate(zip(DISPLAY_HEADER, display_columns(c))):
        width = max(len(head), max(map(len, cells), default=0))
        pad = str.ljust if i in left else str.rjust
        padded.append([pad(head, width)] + [pad(cell, width) for cell in cells])
    text = ["  ".join(line).rstrip() for line in zip(*padded)]
    errors = [f"  {name}: {error}" for name, error in _failures(c, 160)]
    return "\n".join(text + (["failures (first per candidate):"] + errors if errors else []))


def format_markdown(board: Board) -> str:
    """The leaderboard as a GitHub-flavoured Markdown table, failures listed below it."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|") or " "

    c = _columns(board)
    right = "|".join("---:" if i not in (1, 2, len(DISPLAY_HEADER) - 1) else "---" for i in range(len(DISPLAY_HEADER)))
    lines = ["| " + " | ".join(DISPLAY_HEADER) + " |", f"|{right}|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in zip(*display_columns(c))]
    errors = [f"- `{name}`: {cell(error)}" for name, error in _failures(c, 300)]
    return "\n".join(lines + (["", "Failures (first per candidate):", ""] + errors if errors else []))


def _plain(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def format_csv(board: Board) -> str:
    """Every `Standing` field, full precision; NaN as an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STANDING_FIELDS)
    for row in zip(*_columns(board).values()):
        writer.writerow(["" if _plain(v) is None else v for v in row])
    return out.getvalue()


def format_json(board: Board) -> str:
    """A JSON list of every `Standing` field, NaN as null."""
    c = _columns(board)
    return json.dumps([{k: _plain(v) for k, v in zip(STANDING_FIELDS, row)} for row in zip(*c.values())], indent=2)


def render(standings: Board, fmt: str) -> str:
    """The leaderboard (standings or a leaderboard table) in a text format: table,
    markdown, csv or json."""
    renderers = {"table": format_table, "markdown": format_markdown, "csv": format_csv, "json": format_json}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; one of {sorted(renderers)} (html: harness.html_report)")
    return renderers[fmt](standings)
