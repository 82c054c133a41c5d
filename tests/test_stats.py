"""The study's statistics against hand-computed and scipy reference numbers."""

import math

import numpy as np
import pytest
from scipy import stats

from skconvfeat.study._stats import corrected_paired_ttest, mean_interval, verdict


def test_mean_interval_hand_numbers():
    # mean 2, s = 1, n = 3: half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert low == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert high == pytest.approx(2.0 + 2.484138, abs=1e-6)


def test_mean_interval_matches_scipy():
    values = np.array([0.91, 0.95, 0.93, 0.97, 0.94, 0.92])
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    _, our_low, our_high = mean_interval(values)
    assert (our_low, our_high) == pytest.approx((low, high))


def test_mean_interval_correction_widens_by_the_variance_factor():
    values = np.array([0.91, 0.95, 0.93, 0.97, 0.94, 0.92])
    mean, _, high = mean_interval(values)
    _, _, corrected_high = mean_interval(values, test_train_ratio=0.25)
    # half-width scales with sqrt((1/n + ratio) / (1/n)) = sqrt(1 + n * ratio)
    assert (corrected_high - mean) == pytest.approx((high - mean) * math.sqrt(1 + 6 * 0.25))


def test_corrected_ttest_hand_numbers():
    # differences 0.01, 0.02, 0.03, 0.04 (k*r = 4), n_test/n_train = 1/3
    a = np.array([0.91, 0.92, 0.93, 0.94])
    b = np.array([0.90, 0.90, 0.90, 0.90])
    res = corrected_paired_ttest(a, b, n_train=300, n_test=100)
    var = np.var([0.01, 0.02, 0.03, 0.04], ddof=1)  # 1.6667e-4
    se = math.sqrt((1 / 4 + 1 / 3) * var)  # 0.0098601
    assert res["mean_diff"] == pytest.approx(0.025)
    assert res["t_statistic"] == pytest.approx(0.025 / se)  # 2.5355
    assert res["t_statistic"] == pytest.approx(2.53546, abs=1e-4)
    assert res["p_value"] == pytest.approx(2 * stats.t.sf(0.025 / se, 3))
    assert res["df"] == 3
    half = stats.t.ppf(0.975, 3) * se
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((0.025 - half, 0.025 + half))


def test_corrected_ttest_without_correction_is_scipy_paired_ttest():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.02, 10), rng.normal(0.89, 0.02, 10)
    res = corrected_paired_ttest(a, b)  # no sizes: no correction
    ref = stats.ttest_rel(a, b)
    assert res["t_statistic"] == pytest.approx(ref.statistic, rel=1e-6)
    assert res["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)


def test_corrected_ttest_constant_difference():
    res = corrected_paired_ttest([0.75, 0.5], [0.5, 0.25], n_train=4, n_test=1)  # exact in binary
    assert res["p_value"] == 0.0 and res["ci_low"] == 0.25
    res = corrected_paired_ttest([0.9, 0.8], [0.9, 0.8], n_train=4, n_test=1)
    assert res["p_value"] == 1.0 and res["mean_diff"] == 0.0


@pytest.mark.parametrize(
    "low, high, claim, expected",
    [
        (-0.03, -0.01, "below", "supported"),
        (-0.03, -0.01, "above", "refuted"),
        (0.01, 0.03, "below", "refuted"),
        (0.01, 0.03, "above", "supported"),
        (-0.01, 0.02, "below", "inconclusive"),
        (-0.01, 0.02, "above", "inconclusive"),
        (0.0, 0.02, "above", "inconclusive"),  # touching zero is not excluding it
    ],
)
def test_verdict(low, high, claim, expected):
    assert verdict(low, high, claim=claim) == expected


def test_verdict_threshold():
    assert verdict(-0.04, -0.02, claim="below", threshold=-0.05) == "refuted"
    assert verdict(-0.09, -0.06, claim="below", threshold=-0.05) == "supported"


@pytest.mark.parametrize(
    "call",
    [
        lambda: mean_interval([1.0]),
        lambda: mean_interval([1.0, 2.0], confidence=1.5),
        lambda: corrected_paired_ttest([1, 2], [1, 2], n_train=0, n_test=1),
        lambda: corrected_paired_ttest([1, 2], [1, 2], n_train=3),
        lambda: verdict(0.1, 0.0),
        lambda: verdict(0.0, 0.1, claim="sideways"),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
