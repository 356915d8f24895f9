"""Like for like: which workloads a leaderboard compares its candidates on.

A mean over workloads only compares two candidates when it is over the same workloads:
one scored on 5 easy workloads would otherwise sit above one scored on 7 harder ones.
So by default (`common_workloads=True`) a leaderboard keeps, of the rows it was given
(one per candidate and workload, any status):

1. The candidates that set the workloads are those with no failed evaluation (all of
   them where every candidate failed somewhere). A failed candidate ranks last whatever
   it is compared on, and a search that stops at a program's first failure leaves it
   with rows only up to that failure, so it must not narrow everyone's comparison.
2. The anchor is the workload the most of those candidates have a row for (ties: the
   one whose candidates have the most rows in all, then the first by id). Where they all
   share a workload, they all have the anchor.
3. Ranked: the setting candidates with a row on the anchor, and the failed candidates
   with a row on some compared workload; every other candidate is left out (listed).
4. Compared workloads: those every ranked setting candidate has a row for (the anchor
   among them). Rows on other workloads are not used; the candidates that have such
   rows are listed, with how many in `Standing.uncompared_workloads`.

With `common_workloads=False` every candidate is ranked over all of its own rows, and
the candidates that lack some of the workloads the others have are listed instead.

The outcome is a `Comparison`, carried in the leaderboard table's schema metadata (it
survives `slice`, `filter` and `take`); `comparison(board)` reads it back and
`Comparison.note()` words it for the reports. Column-wise: bincounts over the rows, no
loop over candidates or workloads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

__all__ = ["METADATA_KEY", "Comparison", "comparison", "like_for_like"]

METADATA_KEY = b"eplb_harness_comparison"
_NAMES_SHOWN = 8


@dataclass(frozen=True)
class Comparison:
    """Which workloads a leaderboard's figures are over, and who is not fully in it.

    Candidates are named by `candidate_name` (hash prefix where the name is empty)."""

    common_workloads: bool  # True: like for like (the default); False: each over all its own rows
    workloads: int  # True: the workloads compared; False: the distinct workloads of all ranked rows
    candidates: int  # candidates ranked
    left_out: tuple[str, ...] = ()  # True only: candidates with no row the comparison could use, not ranked
    more_rows: tuple[str, ...] = ()  # True only: ranked candidates whose rows on other workloads were not used
    fewer_rows: tuple[str, ...] = ()  # False only: candidates without a row on some of the `workloads`

    def note(self) -> str:
        """One or more sentences for a report, e.g. "Compared on the 4 workloads all 3
        candidates have rows for."."""
        plural = "" if self.workloads == 1 else "s"
        if not self.common_workloads:
            text = (f"Each candidate over all of its own workloads ({self.workloads} workload{plural} in all; "
                    f"not like for like).")
            if self.fewer_rows:
                text += f" With rows on fewer of them: {_names(self.fewer_rows)}."
            return text
        text = f"Compared on the {self.workloads} workload{plural} all {self.candidates} candidates have rows for."
        if self.more_rows:
            text += f" Their rows on other workloads are not used: {_names(self.more_rows)}."
        if self.left_out:
            text += f" Left out, with no row on these workloads: {_names(self.left_out)}."
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

    failed = np.bincount(cand[~ok], minlength=groups) > 0
    setter = present & ~failed
    if not setter.any():
        setter = present
    by_setter = setter[cand]
    setters_per_workload = np.bincount(work[by_setter], minlength=kinds)
    rows_behind = np.bincount(work[by_setter], weights=own[cand[by_setter]], minlength=kinds)
    id_rank = np.argsort(np.argsort(np.asarray(workload_ids, dtype=str), kind="stable"), kind="stable")
    anchor = np.lexsort((id_rank, -rows_behind, -setters_per_workload))[0] if kinds else -1
    member = np.zeros(groups, dtype=bool)
    member[cand[work == anchor]] = True
    member &= setter
    compared = np.bincount(work[member[cand]], minlength=kinds) == member.sum()
    in_compared = compared[work]
    ranked = member | (present & ~setter & (np.bincount(cand[in_compared], minlength=groups) > 0))
    used = ranked[cand] & in_compared
    uncompared = np.where(ranked, own - np.bincount(cand[used], minlength=groups), 0)
    return used, uncompared, Comparison(
        True, int(compared.sum()), int(ranked.sum()), left_out=_named(names, present & ~ranked),
        more_rows=_named(names, uncompared > 0))


def _named(names: list[str], mask: np.ndarray) -> tuple[str, ...]:
    return tuple(sorted(names[i] for i in np.flatnonzero(mask)))
