"""The one module that formats the study's numbers (text, command line and report all use it)."""

import math

from skconvfeat.study import _format as fmt


def _comparison(**changes):
    base = {"mean_diff": -0.0004, "ci_low": -0.003, "ci_high": 0.0026, "p_holm": 0.84, "margin": 0.01,
            "outcome": "equivalent", "equivalent": True}
    return {**base, **changes}


def test_numbers():
    assert fmt.percent(0.94734) == "94.7%" and fmt.percent(None) == "n/a"
    assert fmt.p_value(0.0004) == "< 0.001" and fmt.p_value(0.0123) == "0.012"
    assert fmt.p_value(math.nan) == "n/a" and fmt.p_value(None) == "n/a"
    assert fmt.seconds([0.1, None, 0.3]) == "0.2 s" and fmt.seconds([None]) == "n/a"
    assert fmt.margin(0.01) == "±1 point" and fmt.margin(0.005) == "±0.5 points" and fmt.margin(0.02) == "±2 points"
    entry = {"mean": 0.9473, "ci_low": 0.934, "ci_high": 0.961}
    assert fmt.accuracy(entry) == "94.7% [95% CI 93.4% to 96.1%]"
    assert fmt.accuracy_cell(entry) == "94.7% (93.4% to 96.1%)"


def test_differences_never_read_minus_zero_and_say_their_outcome():
    assert fmt.difference(_comparison()) == (
        "+0.0 points [95% CI -0.3 to +0.3; Holm p = 0.840]: equal within ±1 point"
    )
    lower = _comparison(mean_diff=-0.004, ci_low=-0.006, ci_high=-0.002, p_holm=0.0002, outcome="lower")
    assert fmt.difference(lower) == "-0.4 points [95% CI -0.6 to -0.2; Holm p < 0.001]: lower, but within ±1 point"
    assert fmt.outcome(_comparison(outcome="inconclusive", equivalent=False)) == "inconclusive"


def test_text_table_pads_columns():
    table = fmt.text_table(("Arm", "Accuracy"), [("Gabor, fixed", "97.0%"), ("Raw", "88.8%")])
    assert table.splitlines() == ["Arm           Accuracy", "Gabor, fixed  97.0%", "Raw           88.8%"]
