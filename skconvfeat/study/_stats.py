"""Statistics for comparing classifiers over cross-validation splits.

Scores from the splits of a repeated k-fold are not independent: every
training set overlaps every other, so the plain t-interval over splits is too
narrow. Nadeau & Bengio (2003) inflate the variance by the test/train size
ratio; Bouckaert & Frank (2004) use that correction for repeated k-fold
("corrected repeated k-fold t-test"), which is what this module computes.
All functions are pure and take plain sequences of numbers.
"""

import math

import numpy as np
from scipy import stats

__all__ = ["corrected_paired_ttest", "mean_interval", "verdict"]

TEST_NAME = "corrected repeated k-fold t-test (Bouckaert & Frank 2004)"


def _t_interval(values, variance_factor, confidence):
    """Mean, half-width and degrees of freedom of a t-interval with an inflated variance."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"Need a 1-D sequence of at least 2 numbers. Got shape {values.shape}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1). Got {confidence!r}.")
    df = values.size - 1
    std_error = math.sqrt(variance_factor * values.var(ddof=1))
    half_width = stats.t.ppf(0.5 + confidence / 2, df) * std_error
    return float(values.mean()), float(half_width), std_error, df


def _variance_factor(n_values, test_train_ratio):
    """``1/n + n_test/n_train``: Nadeau & Bengio's correction (``1/n`` when the ratio is 0)."""
    if test_train_ratio < 0:
        raise ValueError(f"test_train_ratio must be >= 0. Got {test_train_ratio!r}.")
    return 1.0 / n_values + test_train_ratio


def mean_interval(values, *, confidence=0.95, test_train_ratio=0.0):
    """Mean and t-interval of ``values`` (e.g. accuracies over CV splits).

    Parameters
    ----------
    values : array-like of shape (n,)
        One number per split, ``n >= 2``.
    confidence : float, default=0.95
        Coverage of the interval.
    test_train_ratio : float, default=0.0
        ``n_test / n_train`` of one split. ``0`` gives the textbook interval
        ``mean ± t * s / sqrt(n)``; the ratio of a k-fold split widens it as in
        the corrected repeated k-fold t-test (the splits overlap).

    Returns
    -------
    mean, low, high : float

    Examples
    --------
    >>> [round(v, 3) for v in mean_interval([1.0, 2.0, 3.0])]  # 2 ± t(0.975, 2) * 1 / sqrt(3)
    [2.0, -0.484, 4.484]
    """
    mean, half, _, _ = _t_interval(values, _variance_factor(len(values), test_train_ratio), confidence)
    return mean, mean - half, mean + half


def corrected_paired_ttest(scores_a, scores_b, *, n_train=None, n_test=None, confidence=0.95):
    """Corrected repeated k-fold t-test of ``scores_a - scores_b`` (paired by split).

    The variance of the mean difference is ``(1/n + n_test/n_train) * s**2``
    with ``n`` the number of splits (k folds times r repeats) and ``s**2`` the
    sample variance of the differences (Nadeau & Bengio 2003; Bouckaert &
    Frank 2004); the statistic follows Student's t with ``n - 1`` degrees of
    freedom.

    Parameters
    ----------
    scores_a, scores_b : array-like of shape (n,)
        Scores of two models on the same splits, in the same order.
    n_train, n_test : int or None, default=None
        Training and test set sizes of one split. Leave both ``None`` for
        pairs that do not share data (e.g. disjoint test folds with small,
        barely overlapping training draws): the plain paired t-test.
    confidence : float, default=0.95
        Coverage of the interval on the mean difference.

    Returns
    -------
    result : dict
        ``mean_diff``, ``ci_low``, ``ci_high``, ``t_statistic``,
        ``p_value`` (two-sided) and ``df``.
    """
    diff = np.asarray(scores_a, dtype=float) - np.asarray(scores_b, dtype=float)
    if (n_train is None) != (n_test is None):
        raise ValueError("Give both n_train and n_test, or neither.")
    if n_train is not None and (n_train < 1 or n_test < 1):
        raise ValueError(f"n_train and n_test must be positive. Got {n_train!r}, {n_test!r}.")
    factor = _variance_factor(diff.size, 0.0 if n_train is None else n_test / n_train)
    mean, half, std_error, df = _t_interval(diff, factor, confidence)
    if std_error > 0:
        t_stat = mean / std_error
        p_value = float(2 * stats.t.sf(abs(t_stat), df))
    else:  # identical differences on every split: no spread, the sign is certain unless 0
        t_stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p_value = 1.0 if mean == 0 else 0.0
    return {
        "mean_diff": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "t_statistic": float(t_stat),
        "p_value": p_value,
        "df": int(df),
    }


def verdict(ci_low, ci_high, *, claim="below", threshold=0.0):
    """Judge a claim about a difference from its confidence interval.

    Parameters
    ----------
    ci_low, ci_high : float
        Confidence interval of the difference.
    claim : {"below", "above"}, default="below"
        The claim is that the difference lies below (or above) ``threshold``,
        e.g. ``"below"`` for "A is worse than B" with the difference ``A - B``.
    threshold : float, default=0.0
        Where the claim's side begins.

    Returns
    -------
    verdict : {"supported", "refuted", "inconclusive"}
        ``"supported"`` when the whole interval lies on the claim's side,
        ``"refuted"`` when it lies wholly on the other side, and
        ``"inconclusive"`` when it contains ``threshold``.

    Examples
    --------
    >>> verdict(-0.03, -0.01)
    'supported'
    >>> verdict(-0.01, 0.02)
    'inconclusive'
    >>> verdict(0.01, 0.02, claim="below")
    'refuted'
    """
    if claim not in ("below", "above"):
        raise ValueError(f"claim must be 'below' or 'above'. Got {claim!r}.")
    if ci_low > ci_high:
        raise ValueError(f"ci_low must not exceed ci_high. Got ({ci_low}, {ci_high}).")
    if ci_low <= threshold <= ci_high:
        return "inconclusive"
    below = ci_high < threshold
    return "supported" if below == (claim == "below") else "refuted"
