"""Statistics for comparing classifiers: bounded intervals, paired tests, Holm, equivalence.

Two designs, one per way the study scores its arms:

* **Cross-validation** (small datasets such as digits). Scores from the splits
  of a repeated k-fold are not independent: every training set overlaps every
  other, so the plain t-interval over splits is too narrow. Nadeau & Bengio
  (2003) inflate the variance by the test/train size ratio; Bouckaert & Frank
  (2004) use that correction for repeated k-fold ("corrected repeated k-fold
  t-test"). The interval of one arm's accuracy is built on the logit scale
  (:func:`accuracy_interval`), so it never leaves [0, 1].
* **Official train/test split** (MNIST, CIFAR-10): every arm predicts the
  same test images, possibly once per seed. One arm's accuracy gets a Wilson
  interval (:func:`wilson_interval`); two arms are compared image by image
  (:func:`paired_holdout_test`: McNemar's exact test for one seed).

Both tests return the same dict, to which :func:`judge` adds Holm-adjusted
p-values for the family of comparisons, an equivalence test (TOST: the two
arms are "equal within +-margin" when both one-sided tests reject, i.e. the
(1 - 2 alpha) interval of the difference lies inside +-margin) and one
outcome word. All functions are pure and take plain sequences of numbers.
"""

import math

import numpy as np
from scipy import stats
from scipy.special import expit, logit

__all__ = [
    "OUTCOMES",
    "accuracy_interval",
    "claim_verdict",
    "corrected_paired_ttest",
    "holm",
    "is_judged",
    "judge",
    "paired_holdout_test",
    "sign_flip_test",
    "wilson_interval",
]

CV_TEST = "corrected repeated k-fold t-test (Bouckaert & Frank 2004)"
MCNEMAR_TEST = "McNemar's exact test on the same test images"
IMAGE_TEST = "paired t-test over test images of the accuracy averaged over seeds"
SIGN_FLIP_TEST = "exact two-sided sign-flip permutation test over the seeds' differences"
# The sign-flip test enumerates all 2**n sign patterns: at most this many differences.
SIGN_FLIP_MAX = 16
# A difference is "higher"/"lower" when its Holm-adjusted p-value is below
# alpha, else "equivalent" when the Holm-adjusted TOST p-value is, else
# "inconclusive".
OUTCOMES = ("higher", "lower", "equivalent", "inconclusive")


def _check_confidence(confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1). Got {confidence!r}.")


def _variance_factor(n_values, test_train_ratio):
    """``1/n + n_test/n_train``: Nadeau & Bengio's correction (``1/n`` when the ratio is 0)."""
    if test_train_ratio < 0:
        raise ValueError(f"test_train_ratio must be >= 0. Got {test_train_ratio!r}.")
    return 1.0 / n_values + test_train_ratio


def _as_values(values):
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"Need a 1-D sequence of at least 2 numbers. Got shape {values.shape}.")
    return values


def accuracy_interval(scores, *, n_test, confidence=0.95, test_train_ratio=0.0):
    """Mean accuracy over CV splits and an interval inside [0, 1].

    The standard error of the mean is the (corrected) t one,
    ``sqrt((1/n + test_train_ratio) * s**2)``; it is carried to the logit
    scale by the delta method (divided by ``m * (1 - m)``), the t-interval is
    built there around ``logit(m)`` and mapped back, so it always contains the
    mean and never leaves [0, 1]. A mean of exactly 0 or 1 is moved half an
    image inside (``0.5 / n_test``) before the transform, as in the empirical
    logit.

    Parameters
    ----------
    scores : array-like of shape (n,)
        Accuracy of one arm on each split, ``n >= 2``.
    n_test : int
        Test images per split.
    confidence : float, default=0.95
        Coverage of the interval.
    test_train_ratio : float, default=0.0
        ``n_test / n_train`` of one split; ``0`` gives the textbook standard
        error, the ratio of a k-fold split widens it for overlapping folds.

    Returns
    -------
    mean, low, high : float

    Examples
    --------
    >>> [round(v, 4) for v in accuracy_interval([0.98, 1.0, 1.0, 0.99], n_test=100)]
    [0.9925, 0.9447, 0.999]
    """
    scores = _as_values(scores)
    _check_confidence(confidence)
    if n_test < 1:
        raise ValueError(f"n_test must be positive. Got {n_test!r}.")
    mean = float(scores.mean())
    edge = 0.5 / n_test
    centre = min(max(mean, edge), 1 - edge)
    std_error = math.sqrt(_variance_factor(scores.size, test_train_ratio) * scores.var(ddof=1))
    half = stats.t.ppf(0.5 + confidence / 2, scores.size - 1) * std_error / (centre * (1 - centre))
    low, high = float(expit(logit(centre) - half)), float(expit(logit(centre) + half))
    return mean, min(low, mean), max(high, mean)


def wilson_interval(successes, n, *, confidence=0.95):
    """Wilson score interval of a proportion ``successes / n`` (one test set).

    ``successes`` may be fractional (the mean number of correct images over
    several seeds). The interval lies inside [0, 1] and, unlike the Wald
    interval, keeps its coverage near 0 and 1.

    Returns
    -------
    low, high : float

    Examples
    --------
    >>> [round(v, 4) for v in wilson_interval(81, 263)]  # Wilson (1927); scipy's binomtest agrees
    [0.2553, 0.3662]
    """
    _check_confidence(confidence)
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"Need 0 <= successes <= n and n >= 1. Got successes={successes!r}, n={n!r}.")
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def _difference(mean, std_error, df, confidence, margin, test):
    """The shared result of a paired test on a mean difference of accuracies, with a t (or normal) law.

    ``equivalence_p_value`` is the TOST p-value: the larger of the one-sided
    p-values of "difference <= -margin" and "difference >= +margin".
    """
    law = stats.t(df) if math.isfinite(df) else stats.norm()
    if std_error > 0:
        half = law.ppf(0.5 + confidence / 2) * std_error
        t_stat = mean / std_error
        p_value = float(2 * law.sf(abs(t_stat)))
        equivalence = float(max(law.sf((mean + margin) / std_error), law.cdf((mean - margin) / std_error)))
    else:  # identical differences everywhere: no spread, the sign is certain unless 0
        half = 0.0
        t_stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p_value = 1.0 if mean == 0 else 0.0
        equivalence = 0.0 if abs(mean) < margin else 1.0
    # Differences of accuracies lie in [-1, 1]; so does their interval.
    return {
        "mean_diff": float(mean),
        "ci_low": float(max(mean - half, -1.0)),
        "ci_high": float(min(mean + half, 1.0)),
        "statistic": float(t_stat),
        "p_value": p_value,
        "equivalence_p_value": equivalence,
        "margin": float(margin),
        "test": test,
    }


def _check_margin(margin):
    if not margin > 0:
        raise ValueError(f"margin must be > 0. Got {margin!r}.")


def corrected_paired_ttest(scores_a, scores_b, *, n_train=None, n_test=None, confidence=0.95, margin=0.01):
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
    margin : float, default=0.01
        Equivalence margin of the TOST p-value (0.01: one point of accuracy).

    Returns
    -------
    result : dict
        ``mean_diff``, ``ci_low``, ``ci_high``, ``statistic`` (t),
        ``p_value`` (two-sided), ``equivalence_p_value`` (TOST), ``margin``,
        ``test`` and ``df``.
    """
    diff = _as_values(np.asarray(scores_a, dtype=float) - np.asarray(scores_b, dtype=float))
    _check_confidence(confidence)
    _check_margin(margin)
    if (n_train is None) != (n_test is None):
        raise ValueError("Give both n_train and n_test, or neither.")
    if n_train is not None and (n_train < 1 or n_test < 1):
        raise ValueError(f"n_train and n_test must be positive. Got {n_train!r}, {n_test!r}.")
    factor = _variance_factor(diff.size, 0.0 if n_train is None else n_test / n_train)
    std_error = math.sqrt(factor * diff.var(ddof=1))
    df = diff.size - 1
    return {**_difference(diff.mean(), std_error, df, confidence, margin, CV_TEST), "df": int(df)}


def paired_holdout_test(correct_a, correct_b, *, confidence=0.95, margin=0.01):
    """Compare two classifiers on the same test images, over one or more seeds.

    Parameters
    ----------
    correct_a, correct_b : array-like of bool of shape (n_seeds, n_test)
        Whether each model got each test image right, one row per seed
        (the same images in the same order in every row and in both arrays).
    confidence : float, default=0.95
        Coverage of the interval on the difference of accuracies.
    margin : float, default=0.01
        Equivalence margin of the TOST p-value.

    Returns
    -------
    result : dict
        As :func:`corrected_paired_ttest`. The per-image differences
        ``d_i`` (image ``i``'s correctness averaged over seeds, A minus B)
        are independent across images: the interval and TOST use their mean
        and standard error ``sd(d) / sqrt(n_test)`` with a t law
        (``n_test - 1`` degrees of freedom, n_test is in the thousands). With
        one seed the p-value is McNemar's exact test (a binomial test on the
        images exactly one model got right); with several it is the t-test's.
    """
    a, b = np.atleast_2d(np.asarray(correct_a, dtype=bool)), np.atleast_2d(np.asarray(correct_b, dtype=bool))
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"Need two (n_seeds, n_test) arrays of the same shape, n_test >= 2. Got {a.shape}, {b.shape}.")
    _check_confidence(confidence)
    _check_margin(margin)
    diff = a.mean(axis=0) - b.mean(axis=0)
    n = diff.size
    std_error = math.sqrt(diff.var(ddof=1) / n)
    result = _difference(diff.mean(), std_error, n - 1, confidence, margin, IMAGE_TEST)
    if a.shape[0] == 1:
        only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
        discordant = only_a + only_b
        result["p_value"] = 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant).pvalue)
        result["test"] = MCNEMAR_TEST
    return {**result, "df": int(n - 1)}


def holm(p_values):
    """Holm's step-down adjusted p-values (same order as given).

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i``
    (``i`` from 0), made non-decreasing along that order and capped at 1;
    rejecting where the adjusted value is below alpha controls the
    family-wise error rate at alpha (Holm 1979).

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError(f"p-values must be a 1-D sequence of numbers in [0, 1]. Got {p_values!r}.")
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, np.maximum.accumulate(p[order] * (p.size - np.arange(p.size))))
    adjusted = np.empty_like(p)
    adjusted[order] = steps
    return adjusted.tolist()


def judge(tests, *, alpha=0.05):
    """Add Holm-adjusted p-values and an outcome to each test of one family.

    Parameters
    ----------
    tests : list of dict
        Results of :func:`corrected_paired_ttest` or :func:`paired_holdout_test`
        that form one family (e.g. every arm against the reference).
    alpha : float, default=0.05
        Family-wise error rate of both the difference and the equivalence tests.

    Returns
    -------
    tests : list of dict
        New dicts with ``p_holm``, ``equivalence_p_holm``, ``equivalent``
        (bool: equal within +-margin) and ``outcome``, one of
        :data:`OUTCOMES`: ``"higher"``/``"lower"`` (A vs B) when the
        difference is significant, else ``"equivalent"`` when equivalence
        is, else ``"inconclusive"``.
    """
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5). Got {alpha!r}.")
    if not tests:
        return []
    p_holm = holm([t["p_value"] for t in tests])
    eq_holm = holm([t["equivalence_p_value"] for t in tests])
    judged = []
    for test, p, eq in zip(tests, p_holm, eq_holm):
        if p < alpha:
            outcome = "higher" if test["mean_diff"] > 0 else "lower"
        else:
            outcome = "equivalent" if eq < alpha else "inconclusive"
        judged.append({**test, "p_holm": p, "equivalence_p_holm": eq, "equivalent": bool(eq < alpha),
                       "outcome": outcome})
    return judged


def claim_verdict(outcome, claim):
    """``"supported"``, ``"refuted"`` or ``"inconclusive"`` for a claim about A vs B.

    Parameters
    ----------
    outcome : str
        One of :data:`OUTCOMES`, from :func:`judge`.
    claim : {"below", "above"}
        The claim is that A is below (or above) B. Equivalence refutes it,
        as does a significant difference the other way.

    Examples
    --------
    >>> claim_verdict("lower", "below"), claim_verdict("equivalent", "below"), claim_verdict("inconclusive", "above")
    ('supported', 'refuted', 'inconclusive')
    """
    if claim not in ("below", "above"):
        raise ValueError(f"claim must be 'below' or 'above'. Got {claim!r}.")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}. Got {outcome!r}.")
    if outcome == "inconclusive":
        return "inconclusive"
    return "supported" if outcome == {"below": "lower", "above": "higher"}[claim] else "refuted"


def sign_flip_test(differences):
    """Exact two-sided sign-flip permutation test that paired differences are centred on 0.

    Under the null each difference is as likely to have either sign, so the
    2**n patterns of signs are equally likely; the p-value is the share of them
    whose ``|sum|`` is at least the observed one. Valid for any n (no normal
    law), but coarse: with n differences no p-value is below ``2 / 2**n``
    (0.0625 for 5 seeds, 0.25 for 3), reported as ``min_p_value``.

    Parameters
    ----------
    differences : array-like of shape (n,)
        One difference per pair (e.g. per seed, A's accuracy minus B's), 1 <= n <= 16.

    Returns
    -------
    result : dict
        ``p_value``, ``min_p_value``, ``n``, ``mean_diff``, ``positive`` and
        ``negative`` (how many differences have each sign) and ``test``.

    Examples
    --------
    >>> sign_flip_test([0.02, 0.01, 0.03])["p_value"], sign_flip_test([0.02, 0.01, 0.03])["min_p_value"]
    (0.25, 0.25)
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or not 1 <= d.size <= SIGN_FLIP_MAX or not np.all(np.isfinite(d)):
        raise ValueError(f"sign_flip_test needs 1 to {SIGN_FLIP_MAX} finite differences in a 1-D sequence. "
                         f"Got {differences!r}.")
    n = d.size
    patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # row k: the bits of k, 1 = flip
    sums = np.abs((1 - 2 * patterns) @ d)
    observed = abs(d.sum())
    # Sums equal to the observed one up to rounding count as "at least as extreme".
    tolerance = 1e-9 * max(1.0, float(np.abs(d).sum()))
    return {"p_value": float(np.mean(sums >= observed - tolerance)), "min_p_value": 2.0 / 2**n, "n": int(n),
            "mean_diff": float(d.mean()), "positive": int(np.sum(d > 0)), "negative": int(np.sum(d < 0)),
            "test": SIGN_FLIP_TEST}


def is_judged(outcome, arm_converged, reference_converged):
    """Whether an outcome of ``arm - reference`` can be judged when a network may not have converged.

    A network that reached its budget still improving would only gain with more training (its best
    validation check is kept), so a significant difference *in its favour* holds a fortiori; any other
    outcome (equal, undecided, or against it) could change, and is not judged.
    """
    if arm_converged and reference_converged:
        return True
    winner_unconverged = (outcome == "higher" and not arm_converged and reference_converged) or (
        outcome == "lower" and not reference_converged and arm_converged)
    return winner_unconverged
