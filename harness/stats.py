"""Statistics the harness reports, in plain numpy: timing summaries, per-group figures
over rows, Student-t quantiles and Pareto fronts.

Per-group helpers take rows as parallel arrays: `codes: [rows]` (the group of each row,
0 <= code < groups) and `values: [rows]`; they return one figure per group, `[groups]`,
NaN for a group with no finite value. No Python loop runs over rows or groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MedianInterval", "TimingStats", "finite_or", "first_per_group", "group_mean", "group_median",
           "group_min", "mean_delta_vs_partner", "median_interval", "pareto_mask", "summarize", "t975"]


@dataclass(frozen=True)
class TimingStats:
    """Summary of wall-time samples of one call, in seconds."""

    median_s: float
    iqr_s: float
    min_s: float
    samples: int

    @property
    def relative_iqr(self) -> float:
        """IQR over median: the spread a ranking has to beat."""
        return self.iqr_s / self.median_s if self.median_s > 0 else float("inf")


@dataclass(frozen=True)
class MedianInterval:
    """A median and its distribution-free 95% confidence interval (NaN when undefined)."""

    median: float
    low: float
    high: float


def median_interval(values: Sequence[float]) -> MedianInterval:
    """The median of the finite `values` with a 95% interval from order statistics: the
    number of values below the true median is Binomial(n, 1/2), so the values ranked
    n/2 -+ 1.96 sqrt(n)/2 bracket it with about 95% confidence (normal approximation;
    below 6 values the interval is the whole range, which covers it with less)."""
    finite = np.sort(np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64))
    n = len(finite)
    if n == 0:
        return MedianInterval(math.nan, math.nan, math.nan)
    half_width = 1.96 * math.sqrt(n) / 2
    low = min(max(math.floor(n / 2 - half_width), 0), n - 1)
    high = min(max(math.ceil(n / 2 + half_width) - 1, 0), n - 1)
    return MedianInterval(float(np.median(finite)), float(finite[low]), float(finite[high]))


def summarize(samples_s: list[float]) -> TimingStats:
    """Median, interquartile range and minimum of `samples_s` (at least one sample)."""
    if not samples_s:
        raise ValueError("summarize needs at least one timing sample")
    values = np.asarray(samples_s, dtype=np.float64)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return TimingStats(median_s=float(median), iqr_s=float(q3 - q1), min_s=float(values.min()), samples=len(values))


def finite_or(value: object, default: float) -> float:
    """`value` as a float when it is a finite int or float, else `default` (NaN, an
    infinity, None or anything that is no number)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else default


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


def group_mean(codes: np.ndarray, values: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the mean of the finite `values` and how many there were (both `[groups]`)."""
    finite = np.isfinite(values)
    count = np.bincount(codes[finite], minlength=groups).astype(np.float64)
    total = np.bincount(codes[finite], weights=values[finite], minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan), count


def group_min(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """Per group: the least of the finite `values` (`[groups]`; NaN where a group has none)."""
    finite = np.isfinite(values)
    least = np.full(groups, np.inf)
    np.minimum.at(least, codes[finite], values[finite])
    return np.where(np.isfinite(least), least, np.nan)


def group_median(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """Per group: the median of the finite `values`."""
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


def first_per_group(codes: np.ndarray, groups: int) -> np.ndarray:
    """Index of each group's first row (-1 where a group has none)."""
    first = np.full(groups, -1, dtype=np.int64)
    unique, index = np.unique(codes, return_index=True)
    first[unique] = index
    return first


def mean_delta_vs_partner(codes: np.ndarray, workloads: np.ndarray, values: np.ndarray, partner: np.ndarray,
                          groups: int, num_workloads: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group g: the mean over workloads w where both have a finite value of
    value(g, w) - value(partner[g], w), and how many such w. Rows are (group, workload)
    pairs, at most one per pair: `codes`, `workloads` and `values` are `[rows]`;
    `partner: [groups]`, -1 for none."""
    finite = np.isfinite(values)
    codes, workloads, values = codes[finite], workloads[finite], values[finite]
    if len(values) == 0:
        return np.full(groups, np.nan), np.zeros(groups)
    keys = codes * num_workloads + workloads
    order = np.argsort(keys, kind="stable")
    sorted_keys, sorted_values = keys[order], values[order]
    other = partner[codes]
    wanted = other * num_workloads + workloads
    position = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
    found = (other >= 0) & (sorted_keys[position] == wanted)
    return group_mean(codes[found], values[found] - sorted_values[position[found]], groups)


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
