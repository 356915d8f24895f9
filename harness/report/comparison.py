"""Like for like: which workloads a leaderboard compares its candidates on.

A mean over workloads only compares two candidates when it is over the same workloads:
one scored on 5 easy workloads would otherwise sit above one scored on 7 harder ones.
So by default (`common_workloads=True`) a leaderboard ranks candidates on one set of
workloads that each of them has a row for (any status), chosen from the rows it was
given (one per candidate and workload):

1. The candidates with no failed evaluation choose the set (all candidates, where every
   one failed somewhere). A failed candidate ranks last whatever it is compared on, and
   a search that stops at a program's first failure leaves it rows only up to it, so it
   must not narrow the others' comparison.
2. The set is the one that compares the most results: the number of those candidates
   with a row on each of its workloads, times its workloads, is largest (a set only one
   candidate has counts only when there is one). The sets weighed are those the
   candidates were evaluated on (the 256 most common) and, per workload, the workloads
   every candidate evaluated on it shares; where all candidates share some workloads,
   that is the set they all share. Ties: the larger set, then the set with the first
   workload id.
3. Ranked: those candidates with a row on each workload of the set, and the failed
   candidates with a row on any of them. The others are left out and listed; ranked
   candidates' rows on other workloads are not used (counted in
   `Standing.uncompared_workloads`, the candidates listed).

So a candidate that was killed half-way, or scored on a file of its own, is left out
rather than shrinking everyone's comparison to its few workloads, and candidates
evaluated on one suite are compared on all of it. With `common_workloads=False` every
candidate is ranked over all of its own rows, and the candidates without a row on some
of the workloads the others have are listed instead.

The outcome is a `Comparison`, carried in the leaderboard table's schema metadata (it
survives `slice`, `filter` and `take`); `comparison(board)` reads it back and
`Comparison.note()` words it for the reports. Column-wise: numpy over a candidates x
workloads matrix, no loop over candidates or workloads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

__all__ = ["METADATA_KEY", "Comparison", "comparison", "like_for_like"]

METADATA_KEY = b"eplb_harness_comparison"
_NAMES_SHOWN = 8
_MOST_SETS = 256  # workload sets weighed, the most common first: bounds the work on scattered stores


@dataclass(frozen=True)
class Comparison:
    """Which workloads a leaderboard's figures are over, and who is not fully in it.

    Candidates are named by `candidate_name` (hash prefix where the name is empty)."""

    common_workloads: bool  # True: like for like (the default); False: each over all its own rows
    workloads: int  # True: the workloads compared; False: the distinct workloads of all ranked rows
    candidates: int  # candidates ranked
    left_out: tuple[str, ...] = ()  # True only: candidates lacking rows on compared workloads, not ranked
    more_rows: tuple[str, ...] = ()  # True only: ranked candidates whose rows on other workloads were not used
    fewer_rows: tuple[str, ...] = ()  # False only: candidates without a row on some of the `workloads`

    def note(self) -> str:
        """One or more sentences for a report, e.g. "Compared like for like on 4 workloads
        (3 candidates)."."""
        plural = "" if self.workloads == 1 else "s"
        if not self.common_workloads:
            text = (f"Each candidate over all of its own workloads ({self.workloads} workload{plural} in all; "
                    f"not like for like).")
            if self.fewer_rows:
                text += f" With rows on fewer of them: {_names(self.fewer_rows)}."
            return text
        many = "" if self.candidates == 1 else "s"
        text = f"Compared like for like on {self.workloads} workload{plural} ({self.candidates} candidate{many})."
        if self.more_rows:
            text += f" Not used: the rows of {_names(self.more_rows)} on other workloads."
        if self.left_out:
            text += f" Left out, lacking rows on some of them: {_names(self.left_out)}."
        if self.more_rows or self.left_out:
            text += " --all-workloads ranks each over all of its own."
        return text

    def to_metadata(self) -> dict[bytes, bytes]:
        return {METADATA_KEY: json.dumps(asdict(self)).encode()}


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")


def comparison(board: pa.Table) -> Comparison | None:
    """The `Comparison` a `leaderboard` table carries; None for a table without one."""
    raw = (board.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    values = json.loads(raw)
    return Comparison(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def like_for_like(cand: np.ndarray, names: list[str], work: np.ndarray, workload_ids: list[str], ok: np.ndarray,
                  common_workloads: bool = True) -> tuple[np.ndarray, np.ndarray, Comparison]:
    """Which rows the leaderboard uses (see the module docstring), of rows that hold at
    most one row per (candidate, workload).

    `cand: [rows]` and `work: [rows]` are the rows' candidate and workload codes into
    `names` and `workload_ids`, `ok: [rows]` whether each is `ok`. Returns `used: [rows]`
    (bool), `uncompared: [candidates]` (each candidate's rows not used) and the
    `Comparison`."""
    groups, kinds = len(names), len(workload_ids)
    own = np.bincount(cand, minlength=groups)
    present = own > 0
    if not common_workloads:
        per_workload = np.bincount(work, minlength=kinds)
        fewer = present & (own < np.count_nonzero(per_workload))
        used = np.ones(len(cand), dtype=bool)
        return used, np.zeros(groups, dtype=np.int64), Comparison(
            False, int(np.count_nonzero(per_workload)), int(present.sum()), fewer_rows=_named(names, fewer))
    if not present.any():
        return np.zeros(0, dtype=bool), np.zeros(groups, dtype=np.int64), Comparison(True, 0, 0)

    has = np.zeros((groups, kinds), dtype=bool)  # [candidates, workloads]: a row there
    has[cand, work] = True
    failed = np.bincount(cand[~ok], minlength=groups) > 0
    setter = present & ~failed
    if not setter.any():
        setter = present
    compared = _compared_workloads(has[setter], workload_ids)
    covers = has[:, compared].all(axis=1)
    ranked = (setter & covers) | (present & ~setter & has[:, compared].any(axis=1))
    used = ranked[cand] & compared[work]
    uncompared = np.where(ranked, own - np.bincount(cand[used], minlength=groups), 0)
    return used, uncompared, Comparison(
        True, int(compared.sum()), int(ranked.sum()), left_out=_named(names, present & ~ranked),
        more_rows=_named(names, uncompared > 0))


def _compared_workloads(has: np.ndarray, workload_ids: list[str]) -> np.ndarray:
    """The workloads (bool [workloads]) to compare candidates on, given `has: [candidates,
    workloads]` (where the choosing candidates have rows; at least one candidate)."""
    sets, counts = np.unique(has, axis=0, return_counts=True)
    sets = sets[np.argsort(-counts, kind="stable")[:_MOST_SETS]]
    rows = has.astype(np.float32)
    # shared[w, v]: every candidate with a row on w has one on v too
    shared = (rows.T @ (1 - rows)) == 0
    options = np.concatenate([sets, shared[has.any(axis=0)]])
    size = options.sum(axis=1)
    covering = (rows @ options.T.astype(np.float32) == size).sum(axis=0)
    results = np.where(covering >= min(2, len(has)), covering * size, -1)
    by_id = np.argsort(np.asarray(workload_ids, dtype=str), kind="stable")
    # lexsort's last key leads: most results, then the larger set, then the first workload ids
    return options[np.lexsort((*~options[:, by_id[::-1]].T, -size, -results))[0]]


def _named(names: list[str], mask: np.ndarray) -> tuple[str, ...]:
    return tuple(sorted(names[i] for i in np.flatnonzero(mask)))
