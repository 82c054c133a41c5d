"""The study's statistics against hand-computed and scipy reference numbers."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logit

from skconvfeat.study._stats import (
    accuracy_interval,
    claim_verdict,
    corrected_paired_ttest,
    holm,
    judge,
    paired_holdout_test,
    wilson_interval,
)

# -- one arm's interval -------------------------------------------------------


def test_accuracy_interval_is_the_logit_delta_method_interval():
    scores = np.array([0.91, 0.95, 0.93, 0.97, 0.94, 0.92])
    mean, low, high = accuracy_interval(scores, n_test=100, test_train_ratio=0.25)
    se = math.sqrt((1 / 6 + 0.25) * scores.var(ddof=1))  # corrected standard error of the mean
    half = stats.t.ppf(0.975, 5) * se / (scores.mean() * (1 - scores.mean()))
    assert mean == pytest.approx(0.9366666667)
    assert (low, high) == pytest.approx((expit(logit(mean) - half), expit(logit(mean) + half)))


def test_accuracy_interval_never_leaves_0_1():
    # The old plain t-interval on these gave "97.0% to 100.3%".
    scores = [0.99, 1.0, 1.0, 0.97, 1.0, 1.0, 0.98, 1.0, 1.0, 1.0]
    mean, low, high = accuracy_interval(scores, n_test=360, test_train_ratio=0.25)
    plain_high = np.mean(scores) + stats.t.ppf(0.975, 9) * math.sqrt((0.1 + 0.25) * np.var(scores, ddof=1))
    assert plain_high > 1  # the case the issue reports
    assert 0 < low < mean < high < 1
    for extreme in ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.5, 1.0]):
        mean, low, high = accuracy_interval(extreme, n_test=10, test_train_ratio=1.0)
        assert 0 <= low <= mean <= high <= 1


def test_accuracy_interval_without_spread_keeps_the_mean_inside():
    assert accuracy_interval([1.0, 1.0], n_test=100) == (1.0, pytest.approx(1 - 0.5 / 100), 1.0)


def test_wilson_matches_scipy_and_the_textbook_example():
    assert wilson_interval(81, 263) == pytest.approx((0.2552885, 0.3662096), abs=1e-6)
    for k, n in [(0, 20), (20, 20), (9_850, 10_000), (3, 7)]:
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high))
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0)


# -- paired differences -------------------------------------------------------


def test_corrected_ttest_hand_numbers():
    # differences 0.01, 0.02, 0.03, 0.04 (k*r = 4), n_test/n_train = 1/3
    a = np.array([0.91, 0.92, 0.93, 0.94])
    b = np.array([0.90, 0.90, 0.90, 0.90])
    res = corrected_paired_ttest(a, b, n_train=300, n_test=100, margin=0.05)
    var = np.var([0.01, 0.02, 0.03, 0.04], ddof=1)  # 1.6667e-4
    se = math.sqrt((1 / 4 + 1 / 3) * var)  # 0.0098601
    assert res["mean_diff"] == pytest.approx(0.025)
    assert res["statistic"] == pytest.approx(2.53546, abs=1e-4)
    assert res["p_value"] == pytest.approx(2 * stats.t.sf(0.025 / se, 3))
    assert res["df"] == 3
    half = stats.t.ppf(0.975, 3) * se
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((0.025 - half, 0.025 + half))
    # TOST at +-0.05: the worse one-sided test is "difference >= +0.05"
    assert res["equivalence_p_value"] == pytest.approx(stats.t.cdf((0.025 - 0.05) / se, 3))


def test_corrected_ttest_without_correction_is_scipy_paired_ttest():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.9, 0.02, 10), rng.normal(0.89, 0.02, 10)
    res = corrected_paired_ttest(a, b)  # no sizes: no correction
    ref = stats.ttest_rel(a, b)
    assert res["statistic"] == pytest.approx(ref.statistic, rel=1e-6)
    assert res["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)
    # TOST p-values are scipy's one-sided paired tests against the shifted scores
    lower = stats.ttest_rel(a, b - 0.01, alternative="greater").pvalue  # H0: diff <= -margin
    upper = stats.ttest_rel(a, b + 0.01, alternative="less").pvalue  # H0: diff >= +margin
    assert res["equivalence_p_value"] == pytest.approx(max(lower, upper), rel=1e-6)


def test_tost_agrees_with_the_90_percent_interval():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.normal(0.9, 0.01, 10), rng.normal(0.9, 0.01, 10)
        res = corrected_paired_ttest(a, b, margin=0.01)
        ci90 = corrected_paired_ttest(a, b, confidence=0.90, margin=0.01)
        inside = -0.01 < ci90["ci_low"] and ci90["ci_high"] < 0.01
        assert (res["equivalence_p_value"] < 0.05) == inside


def test_corrected_ttest_constant_difference():
    res = corrected_paired_ttest([0.75, 0.5], [0.5, 0.25], n_train=4, n_test=1)  # exact in binary
    assert res["p_value"] == 0.0 and res["ci_low"] == 0.25 and res["equivalence_p_value"] == 1.0
    res = corrected_paired_ttest([0.9, 0.8], [0.9, 0.8], n_train=4, n_test=1)
    assert res["p_value"] == 1.0 and res["mean_diff"] == 0.0 and res["equivalence_p_value"] == 0.0


def test_difference_interval_stays_inside_plus_minus_one():
    res = corrected_paired_ttest([0.1, 0.9], [0.9, 0.1], n_train=1, n_test=1)  # t(1) on a huge spread
    assert -1 <= res["ci_low"] <= res["ci_high"] <= 1


def test_holdout_one_seed_is_mcnemar_exact():
    # 30 images only A gets right, 14 only B, 900 both, 56 neither
    a = np.array([1] * 30 + [0] * 14 + [1] * 900 + [0] * 56, dtype=bool)
    b = np.array([0] * 30 + [1] * 14 + [1] * 900 + [0] * 56, dtype=bool)
    res = paired_holdout_test(a[None], b[None])
    assert res["p_value"] == pytest.approx(stats.binomtest(30, 44, 0.5).pvalue)
    assert res["p_value"] == pytest.approx(2 * sum(math.comb(44, k) for k in range(15)) / 2**44)  # 2 P(Bin <= 14)
    assert res["mean_diff"] == pytest.approx(16 / 1000)
    d = a.astype(float) - b
    se = d.std(ddof=1) / math.sqrt(1000)
    half = stats.t.ppf(0.975, 999) * se
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((0.016 - half, 0.016 + half))
    assert res["test"].startswith("McNemar")


def test_holdout_seeds_average_per_image():
    rng = np.random.default_rng(2)
    a, b = rng.random((3, 500)) < 0.9, rng.random((3, 500)) < 0.85
    res = paired_holdout_test(a, b)
    d = a.mean(axis=0) - b.mean(axis=0)
    ref = stats.ttest_1samp(d, 0.0)
    assert res["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)
    assert res["mean_diff"] == pytest.approx(a.mean() - b.mean())


# -- families and verdicts ----------------------------------------------------


def test_holm_hand_numbers():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == [0.03, 0.06, 0.06, 0.02]
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_judge_outcomes_use_the_adjusted_p_values():
    tests = [
        {"mean_diff": -0.05, "p_value": 0.001, "equivalence_p_value": 0.9},  # clearly lower
        {"mean_diff": 0.002, "p_value": 0.6, "equivalence_p_value": 0.004},  # equal within the margin
        {"mean_diff": 0.03, "p_value": 0.03, "equivalence_p_value": 0.7},  # p 0.03 * 3 after Holm
        {"mean_diff": 0.01, "p_value": 0.4, "equivalence_p_value": 0.3},  # neither
    ]
    judged = judge(tests)
    assert [j["outcome"] for j in judged] == ["lower", "equivalent", "inconclusive", "inconclusive"]
    assert judged[2]["p_holm"] == pytest.approx(0.09)
    assert [j["equivalent"] for j in judged] == [False, True, False, False]
    assert judge(tests[2:3])[0]["outcome"] == "higher"  # alone, it is not corrected


@pytest.mark.parametrize(
    "outcome, claim, expected",
    [
        ("lower", "below", "supported"),
        ("higher", "below", "refuted"),
        ("equivalent", "below", "refuted"),
        ("higher", "above", "supported"),
        ("equivalent", "above", "refuted"),
        ("inconclusive", "below", "inconclusive"),
    ],
)
def test_claim_verdict(outcome, claim, expected):
    assert claim_verdict(outcome, claim) == expected


@pytest.mark.parametrize(
    "call",
    [
        lambda: accuracy_interval([1.0], n_test=10),
        lambda: accuracy_interval([0.5, 0.6], n_test=10, confidence=1.5),
        lambda: accuracy_interval([0.5, 0.6], n_test=0),
        lambda: wilson_interval(11, 10),
        lambda: corrected_paired_ttest([1, 2], [1, 2], n_train=0, n_test=1),
        lambda: corrected_paired_ttest([1, 2], [1, 2], n_train=3),
        lambda: corrected_paired_ttest([1, 2], [1, 2], margin=0),
        lambda: paired_holdout_test(np.ones((1, 5)), np.ones((2, 5))),
        lambda: holm([0.5, 1.5]),
        lambda: judge([], alpha=0.7),
        lambda: claim_verdict("lower", "sideways"),
        lambda: claim_verdict("worse", "below"),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
