"""Grids that follow the choice: an arm whose best setting is an end of its grid tries the next value out."""

import json
from dataclasses import replace

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skconvfeat.study._curves import CurveProtocol, curve_arms, fit_arm, follow_grid

# Small enough for tests (as tests/test_curves.py's TINY): a check every 5 steps, at most 40 steps.
TINY = CurveProtocol(check_steps=5, patience=2, min_budget_steps=40, min_budget_epochs=1, cv_below=300)


def _peaked_at(peak):
    """A held-out score that falls with the distance from ``peak`` in decades, and the values it was asked."""
    asked = []

    def score(value):
        asked.append(value)
        return -abs(np.log10(value) - np.log10(peak))

    return score, asked


def test_an_end_that_wins_grows_the_grid_until_a_new_value_loses():
    score, asked = _peaked_at(300.0)
    values, scores, best = follow_grid((1.0, 3.0, 10.0, 30.0), score, extensions=5)
    # The grid alternates steps of 3 and 10/3, and so does its growth: 100, 300, then 1,000 loses.
    assert values == [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
    assert asked == values and values[best] == 300.0
    assert scores == [score(v) for v in values]


def test_the_low_end_grows_downwards_by_its_own_step():
    score, _ = _peaked_at(1e-3)
    values, _, best = follow_grid((0.01, 0.1, 1.0, 10.0), score, extensions=5)
    assert values == [1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0] and values[best] == 1e-3


def test_growth_stops_at_its_budget_even_while_the_end_still_wins():
    score, _ = _peaked_at(1e-6)
    values, _, best = follow_grid((0.01, 0.1, 1.0, 10.0), score, extensions=2)
    assert values == [1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0] and best == 0  # still at an end: recorded as such


@pytest.mark.parametrize("extensions", [0, 3])
def test_an_inner_choice_or_no_budget_leaves_the_grid_as_it_is(extensions):
    score, asked = _peaked_at(0.1)
    values, _, best = follow_grid((0.01, 0.1, 1.0, 10.0), score, extensions)
    assert values == asked == [0.01, 0.1, 1.0, 10.0] and best == 1
    score, asked = _peaked_at(100.0)
    values, _, best = follow_grid((0.01, 0.1, 1.0, 10.0), score, 0)
    assert values == asked == [0.01, 0.1, 1.0, 10.0] and best == 3


def test_a_new_value_that_only_ties_is_tried_but_not_chosen():
    table = {0.01: 0.5, 0.1: 0.6, 1.0: 0.7, 10.0: 0.8, 100.0: 0.8}
    values, scores, best = follow_grid((0.01, 0.1, 1.0, 10.0), table.__getitem__, extensions=3)
    assert values == [0.01, 0.1, 1.0, 10.0, 100.0] and values[best] == 10.0 and scores[-1] == 0.8


def test_a_two_value_grid_grows_by_its_one_step():
    score, _ = _peaked_at(1e-2)
    values, _, best = follow_grid((1.0, 10.0), score, extensions=3)
    assert values == [1e-3, 0.01, 0.1, 1.0, 10.0] and values[best] == 0.01


def test_growth_needs_increasing_grids_and_a_whole_budget():
    with pytest.raises(ValueError, match="increasing order"):
        replace(CurveProtocol(), logistic_C=(1.0, 0.1, 10.0, 100.0), grid_extensions=1).check()
    with pytest.raises(ValueError, match="grid_extensions must be a non-negative integer"):
        replace(CurveProtocol(), grid_extensions=-1).check()
    with pytest.raises(ValueError, match="positive numbers"):
        replace(CurveProtocol(), learning_rates=(0.0, 1e-3, 1e-2, 1e-1)).check()
    # The recorded curves' protocol keeps its digest; growing grids makes another protocol.
    assert CurveProtocol(grid_extensions=0).digest() == "8ce804815574"
    assert CurveProtocol(grid_extensions=2).digest() != CurveProtocol().digest()


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(y))[:600]
    return X[rows].reshape(-1, 8, 8), y[rows]


def _arm(kind):
    return next(a for a in curve_arms((1,), preset="coates-digits") if a.kind == kind
                and (kind != "fixed" or a.bank == "random"))


def _check_record(record, grid, extensions):
    candidates, scores = record["candidates"], record["validation_scores"]
    best = int(np.argmax(scores))
    assert len(candidates) == len(scores) == len(grid) + record["extra_candidates"]
    assert record["extra_candidates"] <= extensions and candidates == sorted(candidates)
    assert [c for c in candidates if c in grid] == list(grid)
    assert record["validation_accuracy"] == scores[best]
    assert record["at_grid_edge"] == (best in (0, len(scores) - 1))
    return candidates[best]


def test_a_fixed_arm_under_too_strong_a_penalty_grows_its_grid_towards_weaker_ones(digits):
    # C of 1e-5..1e-2 on standardised features shrink the head: the weakest penalty wins, and the grid
    # grows upwards (to 0.1, then 1, where it peaks at 97.5% of the held-out images, then 10 loses); its
    # four study values score exactly as without growth.
    X, y = digits
    grid = (1e-5, 1e-4, 1e-3, 1e-2)
    fixed = replace(TINY, logistic_C=grid)
    grown = replace(fixed, grid_extensions=5)
    _, plain = fit_arm(_arm("fixed"), X, y, fixed, 0)
    _, record = fit_arm(_arm("fixed"), X, y, grown, 0)
    chosen = _check_record(record, grid, 5)
    assert plain["setting"]["C"] == 1e-2 and plain["at_grid_edge"] and plain["extra_candidates"] == 0
    assert record["candidates"][4:] == [0.1, 1.0, 10.0] and record["extra_candidates"] == 3
    assert chosen == record["setting"]["C"] == 1.0 and not record["at_grid_edge"]
    assert record["validation_scores"][:4] == plain["validation_scores"]


@pytest.mark.parametrize("kind", ["preset", "learned"])
def test_ridge_and_network_arms_follow_the_same_rule(digits, kind):
    # Held out at 600 images (cv_below 300), cross-validated and refitted at 200: both paths grow alike.
    X, y = digits
    grown = replace(TINY, ridge_alphas=(1e2, 1e3, 1e4, 1e5), learning_rates=(1e-5, 3e-5, 1e-4, 3e-4),
                    grid_extensions=2)
    grid = grown.ridge_alphas if kind == "preset" else grown.learning_rates
    for size in (600, 200):
        predict, record = fit_arm(_arm(kind), X[:size], y[:size], grown, 0)
        chosen = _check_record(record, grid, 2)
        assert chosen == record["setting"]["alpha" if kind == "preset" else "learning_rate"]
        assert record["extra_candidates"] > 0  # both grids are far from their best values: an end wins
        assert predict(X[:50]).shape == (50,)


def test_the_report_counts_the_extra_candidates_and_the_cli_sets_and_checks_the_rule(digits, capsys):
    from skconvfeat.study._cli import _protocol, build_curves_parser, main
    from skconvfeat.study._curve_report import curve_document
    from skconvfeat.study._curves import plan_curves, run_curves
    from skconvfeat.study._document import to_markdown

    X, y = digits
    plan = plan_curves([300], n_train=500, depths=(1,), banks=("random",), seeds=1)
    plan.arms = [arm for arm in plan.arms if arm.kind in ("raw", "fixed")]
    grown = replace(TINY, logistic_C=(1e-5, 1e-4, 1e-3, 1e-2), grid_extensions=2)
    results = run_curves(X[:500], y[:500], X[500:], y[500:], plan, grown)
    per_arm = [arm["sizes"][300]["extra_candidates"] for arm in results["arms"].values()]
    assert results["extra_candidates"] == sum(per_arm) > 0
    text = to_markdown(curve_document(results, "digits"))
    assert "up to 2 more, one step past an end of its grid at a time while the end wins" in text
    assert f"{sum(per_arm)} extra candidates tried in all" in text
    assert "tried past an end" in text
    plain = run_curves(X[:500], y[:500], X[500:], y[500:], plan, replace(grown, grid_extensions=0))
    assert plain["extra_candidates"] == 0 and "past an end" not in to_markdown(curve_document(plain, "digits"))

    args = build_curves_parser().parse_args(["--dataset", "mnist", "--train-sizes", "100", "--grid-extensions", "3"])
    assert _protocol(args).grid_extensions == 3
    assert main(["curves", "--dataset", "mnist", "--train-sizes", "100", "--grid-extensions", "-1"]) == 2
    assert "--grid-extensions: expected a non-negative integer, got '-1'" in capsys.readouterr().err


# -- a larger budget grows on from the records of a smaller one -----------------------------------


def _fitted_C(monkeypatch):
    """The C of every logistic head fitted, in order."""
    from skconvfeat.study import _curves

    seen, real = [], _curves._logistic
    monkeypatch.setattr(_curves, "_logistic", lambda C, seed: seen.append(C) or real(C, seed))
    return seen


_SELECTION = ("setting", "candidates", "validation_scores", "extra_candidates", "at_grid_edge", "test_correct")


def test_a_larger_budget_trains_only_the_candidates_past_a_smaller_ones_records(digits, tmp_path, monkeypatch):
    # The fixed arm's C grid (1e-5..1e-2) starves its head: under growth it goes to 0.1 (the peak), then 1
    # only ties. Budgets 0, 1, 3 in turn on one cache give what a fresh run under each gives, each fitting
    # only the C values past the previous budget's; a second run under 3 fits nothing.
    from skconvfeat.study._curves import plan_curves, run_curves

    X, y = digits
    plan = plan_curves([300], n_train=500, depths=(1,), banks=("random",), seeds=1)
    plan.arms = [arm for arm in plan.arms if arm.kind == "fixed"]
    base = replace(TINY, logistic_C=(1e-5, 1e-4, 1e-3, 1e-2))
    record_path = tmp_path / "grown" / plan.arms[0].name / "n300-s0.json"
    fitted = _fitted_C(monkeypatch)
    for budget, new in [(0, [1e-5, 1e-4, 1e-3, 1e-2]), (1, [0.1]), (3, [1.0]), (3, [])]:
        protocol = replace(base, grid_extensions=budget)
        del fitted[:]
        grown = run_curves(X[:500], y[:500], X[500:], y[500:], plan, protocol, cache_dir=tmp_path / "grown")
        assert fitted == new
        fresh = run_curves(X[:500], y[:500], X[500:], y[500:], plan, protocol, cache_dir=tmp_path / f"fresh{budget}")
        cell, fresh_cell = (r["arms"][plan.arms[0].name]["sizes"][300] for r in (grown, fresh))
        assert {k: v for k, v in cell.items() if "fit_" not in k} == {k: v for k, v in fresh_cell.items() if "fit_" not in k}
        stored = json.loads(record_path.read_text())
        again = json.loads((tmp_path / f"fresh{budget}" / plan.arms[0].name / "n300-s0.json").read_text())
        assert {k: stored[k] for k in _SELECTION} == {k: again[k] for k in _SELECTION}
    # Under 3 the newest value (1) lost: the record made under 1 stands, its test scoring kept, its
    # selection and fit times grown, and the budget it now answers for written down.
    assert stored["setting"] == {"C": 0.1} and stored["candidates"][-1] == 1.0 and stored["grid_budget"] == 3
    assert stored["protocol"] == replace(base, grid_extensions=1).digest()
    assert stored["fit_wall"] > again["fit_wall"] / 10  # the two runs' times added, not the last one's alone


def test_a_record_is_grown_on_only_when_its_growth_ran_out_of_budget():
    from skconvfeat.study._curves import growth_to_do

    grid = (0.01, 0.1, 1.0, 10.0)
    four = replace(CurveProtocol(), grid_extensions=4)
    record = {"setting": {"C": 10.0}, "candidates": list(grid), "validation_scores": [0.1, 0.2, 0.3, 0.4]}
    assert growth_to_do(record, 0, four, grid) == dict(zip(grid, [0.1, 0.2, 0.3, 0.4]))
    assert growth_to_do(dict(record, candidates=None), 0, four, grid) == dict(zip(grid, [0.1, 0.2, 0.3, 0.4]))
    assert growth_to_do(dict(record, setting={"C": 1.0}), 0, four, grid) is None  # an inner choice is final
    assert growth_to_do(record, 4, four, grid) is None  # made under this budget
    assert growth_to_do(dict(record, grid_budget=4), 0, four, grid) is None  # grown on to it since
    grown = dict(record, candidates=[*grid, 100.0], validation_scores=[0.1, 0.2, 0.3, 0.4, 0.3])
    assert growth_to_do(grown, 2, four, grid) is None  # the newest value lost: growth ended by itself
    # A record whose selection does not add up is measured again from nothing.
    for broken in ({"setting": {"C": 5.0}}, {"validation_scores": [0.1]}, {"setting": "C"},
                   {"candidates": [0.01, 0.1, 10.0], "validation_scores": [0.1, 0.2, 0.3]},
                   {"validation_scores": ["x", 0.2, 0.3, 0.4]}):
        assert growth_to_do({**record, **broken}, 0, four, grid) == {}
