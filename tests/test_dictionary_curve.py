"""benchmarks/dictionary_curve.py: its dual ridge against GramRidgeClassifier, and its resumable rows file."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from benchmark_scripts import load_benchmark
from skconvfeat import GramRidgeClassifier


def _module():
    return load_benchmark("dictionary_curve")


@pytest.mark.parametrize("alpha", [1e-3, 0.1])
def test_dual_ridge_gives_gram_ridge_classifiers_decision_values(alpha):
    # Digits have constant pixels (zero variance: left unscaled) and fewer features than rows, so the two
    # solves share nothing but the model: primal Cholesky of X^T X against the kernels' dual solve.
    module = _module()
    X, y = load_digits(return_X_y=True)
    X_fit, y_fit, X_new = X[:1200].astype(np.float16), y[:1200], X[1200:].astype(np.float16)
    mean, scale = module.feature_scales(X_fit)
    assert np.sum(scale == 1.0) >= 3 and np.isfinite(scale).all()
    K, K_new = module.kernels(X_fit, X_new, mean, scale)
    Y = np.where(y_fit[:, None] == np.arange(10)[None, :], 1.0, -1.0)
    dual = module.dual_ridge_decision(K, K_new, Y, alpha)
    head = GramRidgeClassifier(alphas=(alpha,), standardize=True).fit(X_fit.astype(np.float64), y_fit)
    primal = head.decision_function(X_new.astype(np.float64))
    np.testing.assert_allclose(dual, primal, atol=2e-4 * np.abs(primal).max())
    assert (dual.argmax(axis=1) == primal.argmax(axis=1)).mean() > 0.999


def test_choose_and_score_picks_the_tenths_best_penalty_and_scores_the_held_out_rows():
    module = _module()
    X, y = load_digits(return_X_y=True)
    X_fit, X_held = X[:1000].astype(np.float16), X[1000:].astype(np.float16)
    mean, scale = module.feature_scales(X_fit)
    K, K_held = module.kernels(X_fit, X_held, mean, scale)
    alphas = [1e-4, 1.0, 1e3]  # 1e3 per row drowns the data: it must lose on the tenth
    alpha, tenth_scores, held_out = module.choose_and_score(K, K_held, y[:1000], y[1000:], alphas)
    assert set(alphas) <= set(tenth_scores) and tenth_scores[alpha] == max(tenth_scores.values())
    assert tenth_scores[1e3] < tenth_scores[alpha]
    head = GramRidgeClassifier(alphas=(alpha,), standardize=True).fit(X_fit.astype(np.float64), y[:1000])
    assert held_out == pytest.approx(head.score(X_held.astype(np.float64), y[1000:]), abs=2 / len(X_held))


@pytest.mark.parametrize("peak, tried, chosen", [
    (0.3, [0.03, 0.1, 0.3, 1.0], 0.3),             # inside the grid: nothing more tried
    (3.0, [0.03, 0.1, 0.3, 1.0, 3.0, 10.0], 3.0),  # past the top end: 3 wins, 10 loses, stop
    (100.0, [0.03, 0.1, 0.3, 1.0, 3.0, 10.0], 10.0),  # still rising at the second extra value: the budget ends
    (0.001, [0.003, 0.01, 0.03, 0.1, 0.3, 1.0], 0.003),  # past the bottom end, in the same series
])
def test_the_penalty_grid_follows_a_choice_at_its_end(peak, tried, chosen):
    module = _module()
    calls = []

    def score(alpha):  # peaked at ``peak`` on a log scale
        calls.append(alpha)
        return -abs(np.log10(alpha) - np.log10(peak))

    best, scores = module.follow_grid(score, [0.03, 0.1, 0.3, 1.0])
    assert sorted(calls) == pytest.approx(tried) and sorted(scores) == pytest.approx(tried)
    assert best == pytest.approx(chosen)


def test_rows_file_keeps_finished_rows_drops_a_cut_last_line_and_refuses_damage(tmp_path):
    module = _module()
    path = tmp_path / "rows.jsonl"
    assert module.finished_rows(path) == []
    row = {"filters": 400, "features": 7200, "held_out": 0.6, "alpha": 0.3,
           "seconds": {"bank": 1, "features": 2, "kernels": 3, "solves": 4}}
    path.write_text(json.dumps(row) + '\n{"filters": 800, "held')  # stopped mid-write
    assert module.finished_rows(path) == [row]
    path.write_text(json.dumps(row) + '\nnot json\n' + json.dumps({**row, "filters": 800}) + "\n")
    with pytest.raises(ValueError, match="line 2: not a JSON row"):
        module.finished_rows(path)
    for damaged in ({**row, "filters": "400"}, {k: v for k, v in row.items() if k != "alpha"},
                    {**row, "seconds": {"bank": 1}}, [row]):
        path.write_text(json.dumps(damaged) + "\n")
        with pytest.raises(ValueError, match="line 1: not a row of this script"):
            module.finished_rows(path)


@pytest.mark.parametrize("option, value", [("--filters", "400,abc"), ("--filters", "0"), ("--alphas", "0.1,-1"),
                                           ("--train-size", "0")])
def test_bad_options_are_refused_by_name_before_any_data_is_read(capsys, option, value):
    module = _module()
    with pytest.raises(SystemExit):
        module.main(["no-such-archive.tar.gz", option, value])
    assert option.split("-")[-1] in capsys.readouterr().err
