"""The statistics helpers: t quantiles, the Pareto front, per-group figures."""

import numpy as np
import pytest

from harness.stats import finite_or, group_mean, group_median, group_min, pareto_mask, t975


def test_t_quantiles_and_pareto_front():
    assert t975(np.array([1, 2, 10, 30]))[:4] == pytest.approx([12.706, 4.303, 2.228, 2.042])
    assert t975(np.array([60, 1000])) == pytest.approx([2.000, 1.962], abs=2e-3)
    assert np.isnan(t975(np.array([0]))[0])
    rng = np.random.default_rng(1)
    for k, n in ((2, 200), (3, 120)):
        values = np.round(rng.random((n, k)), 1)
        values[3] = np.nan
        better = [True, False, True][:k]
        signed = np.where(better, values, -values)
        brute = np.array([np.isfinite(signed[i]).all() and not any(
            np.isfinite(signed[j]).all() and (signed[j] >= signed[i]).all() and (signed[j] > signed[i]).any()
            for j in range(n)) for i in range(n)])
        assert (pareto_mask(values, better) == brute).all()


def test_group_figures_ignore_what_is_not_finite():
    codes = np.array([0, 0, 0, 1, 1, 2])
    values = np.array([0.3, np.nan, 0.1, 0.5, np.inf, np.nan])
    mean, count = group_mean(codes, values, 4)
    np.testing.assert_allclose(mean, [0.2, 0.5, np.nan, np.nan], equal_nan=True)
    assert count.tolist() == [2, 1, 0, 0]
    np.testing.assert_allclose(group_min(codes, values, 4), [0.1, 0.5, np.nan, np.nan], equal_nan=True)
    np.testing.assert_allclose(group_median(codes, values, 4), [0.2, 0.5, np.nan, np.nan], equal_nan=True)
    assert finite_or(0.25, 0.0) == 0.25 and finite_or(float("nan"), 0.0) == 0.0 and finite_or("x", -1.0) == -1.0
