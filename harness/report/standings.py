"""The leaderboard: which store rows count, and one ranked `Standing` per candidate.

Reads only the store's table, column-wise with pyarrow and numpy (no per-row Python), so
a store of 100,000 rows ranks in well under a second.

How a leaderboard is made:
- `select` keeps the rows of the runs, suites, workloads, devices and candidates asked
  for; then, per (candidate, workload), the newest row counts (`latest` with
  `PER_WORKLOAD`): a later evaluation of the same candidate on the same workload replaces
  an earlier one, whatever its settings, so filter by device to compare like with like.
- Like for like (`harness.report.comparison`): by default the candidates are compared on
  the workloads they all have rows for; candidates that cannot be are left out and
  listed, and `common_workloads=False` ranks each over all of its own rows. The table
  says which (`comparison(board)`).
- A candidate's figures are means over its `ok` workloads, with a 95% confidence
  interval (Student t) of GPU balancedness over those workloads and its lowest
  (`worst_balancedness`). The framework integrations score a program by this same
  aggregation of its rows. `median_runtime_s` is the
  median of the per-workload runtimes; `runtime_s` is their mean, which the compatibility
  scores use as DESIGN.md defines them (`combined_score`, `adrs_score`).
- `speedup_vs_reference`: geometric mean over its `ok` workloads of each row's
  `speedup_vs_reference`, timed in turns with the DeepSeek reference (> 1 is faster than
  it); for a row without one, and against any other `reference` named, the reference's
  runtime on the workload over the candidate's.
- `score`: the harness's score of that balancedness and that speedup
  (`harness.metrics.harness_score`), what a search ranks by.
- `delta_vs_parent`: mean over the workloads both ran `ok` of the candidate's GPU
  balancedness minus its parent's, for candidates made by a diff.
- Ranking: a candidate with any failed workload ranks below every candidate without one
  (failures stay listed, with their status and first error), then by the sort key (its
  own direction: higher is better except for runtimes and group spread), then the faster
  (median runtime), then by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.metrics import SPEED_DOUBLINGS, SPEED_WEIGHT, adrs_combined_score, adrs_leaderboard_score, harness_score
from harness.report.comparison import like_for_like
from harness.stats import first_per_group, group_mean, group_median, group_min, mean_delta_vs_partner, t975
from harness.store import KEY_COLUMNS

__all__ = ["COLUMNS", "LAYER_COLUMN", "PER_WORKLOAD", "REFERENCE", "SCORES", "SORT_KEYS", "STANDING_FIELDS",
           "Standing", "latest", "leaderboard", "select", "to_standings"]

REFERENCE = "deepseek_eplb"
PER_WORKLOAD = ("candidate_hash", "workload_id")
# Store columns the leaderboard reads; the HTML report reads LAYER_COLUMN too.
LAYER_COLUMN = "gpu_max_over_mean_per_layer"
COLUMNS = (
    "run_id", "suite", "created_at", "candidate_name", "candidate_hash", "parent_hash", "diff_name",
    "workload_id", "workload_name", "device", "settings_hash", "status", "error", "balancedness",
    "replica_balancedness", "node_balancedness", "fit_balancedness", "group_spread", "moved_replicas_per_plan",
    "runtime_s", "speedup_vs_reference", "bound_balancedness", "local_bound_balancedness",
)
# Store columns whose mean over a candidate's ok workloads is its figure of the same name.
_MEANS = ("balancedness", "replica_balancedness", "node_balancedness", "fit_balancedness", "group_spread",
          "moved_replicas_per_plan", "runtime_s")


@dataclass(frozen=True)
class Standing:
    """One candidate's line on the leaderboard (figures over its `ok` workloads; NaN when
    it has none)."""

    rank: int
    candidate_name: str
    candidate_hash: str
    statuses: str  # "error:1 ok:3"
    workloads: int  # the workloads its figures are over (compared like for like by default)
    ok: int
    balancedness: float
    balancedness_ci95: float  # half width of the 95% interval over workloads; NaN below 2
    replica_balancedness: float
    node_balancedness: float
    fit_balancedness: float
    worst_balancedness: float  # the lowest GPU balancedness of any one workload
    # How far fit balancedness is below the workloads' ceilings (harness.bounds): for any
    # placement, and for one keeping groups on nodes (over the workloads that allow one).
    fit_gap_to_bound: float
    fit_gap_to_local_bound: float
    group_spread: float
    moved_replicas_per_plan: float
    runtime_s: float  # mean over workloads (what the compatibility scores use)
    median_runtime_s: float
    speedup_vs_reference: float
    score: float  # harness_score(balancedness, speedup_vs_reference)
    combined_score: float
    adrs_score: float
    parent_hash: str
    parent_name: str
    diff_name: str
    delta_vs_parent: float
    first_error: str  # "status: message" of its first failed workload
    uncompared_workloads: int  # workloads it has rows for that this leaderboard did not compare


STANDING_FIELDS = tuple(f.name for f in fields(Standing))
# The sort keys and whether higher is better.
SORT_KEYS = {
    "balancedness": True, "replica_balancedness": True, "node_balancedness": True, "fit_balancedness": True,
    "worst_balancedness": True, "fit_gap_to_bound": False, "fit_gap_to_local_bound": False, "group_spread": False,
    "moved_replicas_per_plan": False, "runtime_s": False,
    "median_runtime_s": False, "speedup_vs_reference": True, "score": True, "combined_score": True, "adrs_score": True,
    "delta_vs_parent": True, "ok": True, "candidate_name": False,
}

# The scores a search can rank by, by name: the `Standing` figure each one is, and what it means.
SCORES = {
    "harness": ("score", f"harness score: GPU balancedness + {SPEED_WEIGHT:g} per doubling of speed against the "
                         f"reference timed in turns with it (up to {SPEED_DOUBLINGS:g} doublings either way)"),
    "adrs_combined": ("combined_score",
                      "OpenEvolve/ADRS combined score (replica_balancedness + 0.02 / runtime_s) / 2; "
                      "absolute seconds, so as noisy as the machine"),
    "balancedness": ("balancedness", "GPU balancedness: mean GPU load / max GPU load, runtime ignored"),
    "adrs_leaderboard": ("adrs_score",
                         "ADRS leaderboard score 90 b + 5 min(0.002 / t, 2) - (min(20 t, 20) if t > 0.01 else 0); "
                         "absolute seconds, so as noisy as the machine"),
}


# ---------------------------------------------------------------------------- which rows count

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


def latest(table: pa.Table, keys: Sequence[str] = KEY_COLUMNS) -> pa.Table:
    """The newest row (by `created_at`; a tie goes to the later row) of each `keys` group,
    by default each evaluation (the store's key: candidate hash, workload id, settings
    hash). Rows keep their order in `table`."""
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


def _floats(table: pa.Table, column: str) -> np.ndarray:
    return pc.fill_null(table[column], np.nan).to_numpy().astype(np.float64, copy=False)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    encoded = pc.fill_null(column, "").combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy().astype(np.int64), encoded.dictionary.to_pylist()


def _candidate_names(table: pa.Table) -> pa.Table:
    """(candidate_hash, candidate_name) pairs of `table`, one per hash."""
    codes, hashes = _codes(table["candidate_hash"])
    last = np.full(len(hashes), -1, dtype=np.int64)
    last[codes] = np.arange(len(codes))  # the last row of each hash wins
    return pa.table({"candidate_hash": pa.array(hashes, type=pa.string()),
                     "candidate_name": table["candidate_name"].take(pa.array(last))})


# ---------------------------------------------------------------------------- the leaderboard

def leaderboard(table: pa.Table, candidate_hashes: set[str] | None = None, workload_ids: set[str] | None = None,
                sort_by: str = "balancedness", reference: str = REFERENCE, descending: bool | None = None,
                *, common_workloads: bool = True, **filters: Iterable[str]) -> pa.Table:
    """The leaderboard as an Arrow table: one ranked row per candidate, `Standing`'s
    fields as columns (what the formats render and the queries return; `to_standings`
    makes records of it).

    Ranks the candidates of the rows `select(table, candidate_hashes=...,
    workload_ids=..., **filters)` keeps (filters: runs, suites, workloads, devices,
    candidates), by `sort_by` in its own direction unless `descending` says otherwise;
    on the workloads they all have rows for unless `common_workloads` is False (see
    `harness.report.comparison`; the table's `comparison(board)` says how many and who
    was left out). Parents are named from the whole of `table`."""
    if sort_by not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort_by!r}; one of {sorted(SORT_KEYS)}")
    chosen = latest(select(table, candidate_hashes=candidate_hashes, workload_ids=workload_ids, **filters),
                    PER_WORKLOAD)
    cand, hashes = _codes(chosen["candidate_hash"])
    work, workload_ids_seen = _codes(chosen["workload_id"])
    ok = pc.fill_null(pc.equal(chosen["status"], "ok"), False).to_numpy(zero_copy_only=False)
    names = [name or h[:12] for name, h in zip(_candidate_names(chosen)["candidate_name"].to_pylist(), hashes,
                                                strict=True)]
    used, uncompared, compared = like_for_like(cand, names, work, workload_ids_seen, ok, common_workloads)
    uncompared_by_hash = (pa.array(hashes, type=pa.string()), uncompared)
    board = _rank(chosen.filter(pa.array(used)), sort_by, reference, descending, _candidate_names(table),
                  uncompared_by_hash)
    return board.replace_schema_metadata(compared.to_metadata())


def to_standings(board: pa.Table) -> list[Standing]:
    """The rows of a `leaderboard` table as `Standing` records, in rank order."""
    return [Standing(*values) for values in zip(*(board[k].to_pylist() for k in STANDING_FIELDS), strict=True)]


def _standing_schema() -> pa.Schema:
    kinds = {"int": pa.int64(), "str": pa.string(), "float": pa.float64()}
    return pa.schema([pa.field(f.name, kinds[f.type]) for f in fields(Standing)])


def _rank(table: pa.Table, sort_by: str, reference: str, descending: bool | None, names: pa.Table,
          uncompared_by_hash: tuple[pa.Array, np.ndarray]) -> pa.Table:
    """`leaderboard` of `table`, which holds at most one row per (candidate, workload).
    `names` (candidate_hash, candidate_name) names parents that `table` lacks;
    `uncompared_by_hash` (hashes, counts) gives `uncompared_workloads`."""
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
    first_failed = first_per_group(cand[failed_rows], groups)
    first_error = np.full(groups, "", dtype=object)
    failing_groups = np.flatnonzero(first_failed >= 0)
    rows = failed_rows[first_failed[failing_groups]]
    errors = pc.fill_null(table["error"].take(rows), "").to_pylist()
    first_error[failing_groups] = [f"{status_names[status[r]]}: {e}" for r, e in zip(rows, errors, strict=True)]

    # Balance and runtime over ok workloads.
    ok_cand, ok_work = cand[ok], work[ok]
    means = {k: group_mean(ok_cand, _floats(table, k)[ok], groups)[0] for k in _MEANS}
    balanced = _floats(table, "balancedness")[ok]
    worst = group_min(ok_cand, balanced, groups)
    fit = _floats(table, "fit_balancedness")[ok]
    gap, local_gap = (group_mean(ok_cand, _floats(table, bound)[ok] - fit, groups)[0]
                      for bound in ("bound_balancedness", "local_bound_balancedness"))
    mean_b, n_b = group_mean(ok_cand, balanced, groups)
    finite = np.isfinite(balanced)
    squares = np.bincount(ok_cand[finite], weights=(balanced[finite] - mean_b[ok_cand[finite]]) ** 2,
                          minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(squares / (n_b - 1))
        ci95 = np.where(n_b >= 2, t975(n_b - 1) * std / np.sqrt(n_b), np.nan)
    runtime = _floats(table, "runtime_s")[ok]
    median_runtime = group_median(ok_cand, runtime, groups)

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
        if reference == REFERENCE:  # rows timed in turns with the shipped reference carry that paired figure
            paired = np.log(_floats(table, "speedup_vs_reference")[ok])
            log_ratio = np.where(np.isfinite(paired), paired, log_ratio)
    log_ratio[~np.isfinite(log_ratio)] = np.nan
    speedup = np.exp(group_mean(ok_cand, log_ratio, groups)[0])

    # Balancedness change vs the parent on shared workloads.
    hash_array = pa.array(hashes, type=pa.string())
    parent = pc.fill_null(pc.index_in(parent_hash, value_set=hash_array), -1).to_numpy().astype(np.int64)
    delta = mean_delta_vs_partner(ok_cand, ok_work, balanced, parent, groups, len(workload_ids))[0]
    parent_name = pc.if_else(parent >= 0, name.take(pa.array(np.maximum(parent, 0))), "")
    if len(names):
        outside = pc.index_in(parent_hash, value_set=names["candidate_hash"].combine_chunks())
        elsewhere = pc.fill_null(names["candidate_name"].combine_chunks().take(outside), "")
        parent_name = pc.if_else(pc.and_(pa.array(parent < 0), pc.not_equal(parent_hash, "")), elsewhere, parent_name)

    combined = adrs_combined_score(means["replica_balancedness"], means["runtime_s"])
    adrs = adrs_leaderboard_score(means["balancedness"], means["runtime_s"])

    columns = dict(
        candidate_name=name, candidate_hash=hash_array, statuses=pa.array(statuses, type=pa.string()),
        workloads=workloads, ok=ok_count, balancedness=means["balancedness"], balancedness_ci95=ci95,
        replica_balancedness=means["replica_balancedness"], node_balancedness=means["node_balancedness"],
        fit_balancedness=means["fit_balancedness"], worst_balancedness=worst, fit_gap_to_bound=gap,
        fit_gap_to_local_bound=local_gap, group_spread=means["group_spread"],
        moved_replicas_per_plan=means["moved_replicas_per_plan"], runtime_s=means["runtime_s"],
        median_runtime_s=median_runtime, speedup_vs_reference=speedup,
        score=harness_score(means["balancedness"], speedup), combined_score=combined, adrs_score=adrs,
        parent_hash=parent_hash, parent_name=parent_name, diff_name=diff_name, delta_vs_parent=delta,
        first_error=pa.array(first_error, type=pa.string()),
        uncompared_workloads=uncompared_by_hash[1][
            pc.index_in(hash_array, value_set=uncompared_by_hash[0]).to_numpy(zero_copy_only=False)],
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
