"""Summary statistics of repeated timings: a small pure module with fixed fields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def summarize(samples_s: list[float]) -> TimingStats:
    """Median, interquartile range and minimum of `samples_s` (at least one sample)."""
    if not samples_s:
        raise ValueError("summarize needs at least one timing sample")
    values = np.asarray(samples_s, dtype=np.float64)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return TimingStats(median_s=float(median), iqr_s=float(q3 - q1), min_s=float(values.min()), samples=len(values))
