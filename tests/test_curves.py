"""Learning curves under one protocol: subsets, selection splits, the plateau rule, resuming, verdicts."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skconvfeat.study import _curves, _stats
from skconvfeat.study._curves import (
    CurveProtocol,
    balanced_subset,
    crossover,
    plan_curves,
    practical_outcome,
    refit_network,
    run_curves,
    selection_splits,
    train_to_plateau,
)

# A protocol small enough for tests: a check every 5 steps, at most 40 steps.
TINY = CurveProtocol(check_steps=5, patience=2, min_budget_steps=40, min_budget_epochs=1, cv_below=300)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X.reshape(-1, 8, 8), y


@pytest.mark.parametrize("size", [10, 57, 300])
def test_balanced_subset_is_balanced_and_reproducible(size):
    y = np.repeat(np.arange(10), 40)
    picked = balanced_subset(y, size, seed=3)
    counts = np.bincount(y[picked], minlength=10)
    assert picked.size == size == np.unique(picked).size
    assert counts.max() - counts.min() <= 1
    assert np.array_equal(picked, balanced_subset(y, size, seed=3))
    assert not np.array_equal(picked, balanced_subset(y, size, seed=4)) or size == 400


def test_balanced_subset_refuses_more_images_than_there_are():
    y = np.array([0] * 50 + [1] * 5)
    with pytest.raises(ValueError, match="Cannot draw 60"):
        balanced_subset(y, 60, seed=0)


@pytest.mark.parametrize("size", [20, 31, 54, 55])
def test_a_rare_class_gives_all_it_has_and_the_others_share_the_rest(size):
    # MNIST's rarest digit has 5,421 of 60,000 images: 'all' must be the whole set, not an error.
    y = np.array([0] * 50 + [1] * 5 + [2] * 30)
    picked = balanced_subset(y, size, seed=0)
    counts = np.bincount(y[picked], minlength=3)
    assert picked.size == size == np.unique(picked).size
    assert counts[1] == min(5, size // 3 + 1)
    assert abs(int(counts[0]) - int(counts[2])) <= 1 or counts[2] == 30
    assert np.array_equal(balanced_subset(y, y.size, seed=1), np.arange(y.size))


def test_selection_splits_hold_out_or_cross_validate():
    y = np.repeat(np.arange(10), 50)
    (split,), refit = selection_splits(y, TINY, seed=0)
    fit, valid = split
    assert not refit and valid.size == 100 and np.intersect1d(fit, valid).size == 0
    assert np.all(np.bincount(y[valid]) == 10)  # stratified
    splits, refit = selection_splits(y[:200], TINY, seed=0)  # below cv_below: folds, then refit
    assert refit and len(splits) == TINY.cv_folds
    assert np.array_equal(np.sort(np.concatenate([v for _, v in splits])), np.arange(200))


def test_protocol_budgets_are_equal_and_checked():
    protocol = CurveProtocol()
    assert len(protocol.logistic_C) == len(protocol.learning_rates) == len(protocol.ridge_alphas)
    with pytest.raises(ValueError, match="same tuning budget"):
        CurveProtocol(logistic_C=(1.0,)).check()
    with pytest.raises(ValueError, match="validation_fraction"):
        CurveProtocol(validation_fraction=1.5).check()
    assert protocol.budget_steps(45_000) == 60 * 352  # 60 epochs of 128-image steps beat 3,000 steps
    assert protocol.budget_steps(800) == 3000
    assert protocol.digest() != CurveProtocol(patience=3).digest()


def _network(seed=0):
    pytest.importorskip("torch")
    from skconvfeat import FixedConvTransformer, LearnedConvClassifier

    return LearnedConvClassifier(FixedConvTransformer("random", kernel_size=3, pool_grid=2, random_state=seed),
                                 random_state=seed)


def test_train_to_plateau_keeps_the_best_check_and_flags_the_budget(digits):
    X, y = digits
    fit, valid = np.arange(0, 300), np.arange(300, 400)
    best, curve, converged, steps_per_check = train_to_plateau(_network(), X[fit], y[fit], X[valid], y[valid], TINY)
    assert steps_per_check >= TINY.check_steps
    assert best.score(X[valid], y[valid]) == pytest.approx(max(curve))
    # Stopped on a plateau: the last `patience` checks did not beat the best one before them.
    if converged:
        assert max(curve[-TINY.patience:]) <= max(curve[:-TINY.patience])
    # A budget too small for a plateau: not converged, whatever the curve did.
    short = CurveProtocol(check_steps=5, patience=50, min_budget_steps=10, min_budget_epochs=1)
    _, curve, converged, steps_per_check = train_to_plateau(_network(), X[fit], y[fit], X[valid], y[valid], short)
    assert not converged and len(curve) == -(-short.budget_steps(300) // steps_per_check)


def test_a_refit_that_diverged_is_replaced_by_the_best_cross_validation_model(digits):
    """Judged on the training images only: a refit fitting them far worse than the validated score has diverged."""
    X, y = digits
    X, y = X[:200], y[:200]
    fold_model = _network().set_params(max_epochs=3, early_stopping=False).fit(X[:150], y[:150])
    runs = [(None, [0.2, 0.3], True, 5), (fold_model, [0.5, 0.9, 0.8], True, 5)]
    # A sound refit: kept, no note.
    sound, note = refit_network(_network(), X, y, 1e-2, 40, 0.8, runs, TINY)
    assert note is None and sound is not fold_model and sound.score(X, y) >= 0.75
    # An absurd rate sends the refit far from its validated 90%: the fold model with the best check is kept.
    diverged, note = refit_network(_network(), X / 1e-3, y, 10.0, 40, 0.9, runs, TINY)
    assert diverged is fold_model
    assert note.startswith("diverged (") and "fold 2 kept" in note
    # A loss that becomes NaN is a divergence as well, not a failed arm.
    exploded, note = refit_network(_network(), X * 1e30, y, 1e6, 40, 0.9, runs, TINY)
    assert exploded is fold_model and note.startswith("diverged (a non-finite training loss)")


def test_practical_outcome_prefers_equivalence_to_significance():
    significant_but_equal = {"equivalence_p_value": 0.01, "p_value": 1e-6, "mean_diff": 0.004}
    assert practical_outcome(significant_but_equal) == "equivalent"
    assert practical_outcome({"equivalence_p_value": 0.4, "p_value": 1e-6, "mean_diff": -0.03}) == "lower"
    assert practical_outcome({"equivalence_p_value": 0.4, "p_value": 0.2, "mean_diff": -0.03}) == "inconclusive"


def _crossover_reference(outcomes, sizes):
    """Slow reference: the smallest size from which every larger judged size is 'lower'."""
    for i, size in enumerate(sizes):
        if all(outcomes[s] == "lower" for s in sizes[i:]):
            return (sizes[i - 1] if i else None, size)
    return None


@pytest.mark.parametrize("seed", range(20))
def test_crossover_matches_reference(seed):
    rng = np.random.default_rng(seed)
    sizes = [100, 300, 1000, 3000, 10000]
    outcomes = dict(zip(sizes, rng.choice(["lower", "higher", "equivalent", "inconclusive"], len(sizes),
                                          p=[0.6, 0.1, 0.2, 0.1])))
    comparisons = [{"role": "b", "depth": 1, "size": s, "outcome": o, "judged": True} for s, o in outcomes.items()]
    assert crossover(comparisons, sizes) == _crossover_reference(outcomes, sizes)


def test_crossover_is_not_judged_on_unconverged_networks():
    comparisons = [{"role": "b", "depth": 1, "size": s, "outcome": "lower", "judged": s != 300}
                   for s in (100, 300, 1000)]
    assert crossover(comparisons, [100, 300, 1000]) == (300, 1000)


def test_run_curves_resumes_from_its_records(digits, tmp_path, monkeypatch):
    X, y = digits
    plan = plan_curves([100, 300], n_train=1500, depths=(1,), banks=("random",), seeds=1)
    plan.arms = [arm for arm in plan.arms if arm.kind in ("raw", "fixed")]
    calls = []
    real = _curves.run_one
    monkeypatch.setattr(_curves, "run_one", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    first = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY, cache_dir=tmp_path)
    assert len(calls) == 4 and first["test_evaluations"] == 4
    again = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY, cache_dir=tmp_path)
    assert len(calls) == 4  # nothing trained twice
    assert again["arms"] == first["arms"]
    # A damaged record and a record of another protocol are trained again; no temporary files survive.
    (tmp_path / "raw" / "n100-s0.json").write_text("{not json")
    record = tmp_path / "fixed-random-d1" / "n300-s0.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "protocol": "other"}))
    run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY, cache_dir=tmp_path)
    assert sorted(calls[4:]) == ["fixed-random-d1", "raw"]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_records_and_report_name_the_environment_each_model_came_from(digits, tmp_path):
    import sklearn

    from skconvfeat.study._curve_report import curve_document
    from skconvfeat.study._document import to_text

    X, y = digits
    plan = plan_curves([100], n_train=1500, depths=(1,), banks=("random",), seeds=1)
    plan.arms = [arm for arm in plan.arms if arm.kind in ("raw", "fixed")]
    run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY, cache_dir=tmp_path)
    record = json.loads((tmp_path / "raw" / "n100-s0.json").read_text())
    assert record["environment"]["scikit-learn"] == sklearn.__version__
    assert record["environment"]["numpy"] == np.__version__ and record["environment"]["cpu"]
    # A record cached before environments were kept, and one from another machine, are counted apart.
    older = tmp_path / "fixed-random-d1" / "n100-s0.json"
    older.write_text(json.dumps({k: v for k, v in json.loads(older.read_text()).items() if k != "environment"}))
    results = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY, cache_dir=tmp_path)
    assert [e["models"] for e in results["environments"]] == [1, 1]
    assert results["environments"][0]["environment"] == record["environment"]
    assert results["environments"][1]["environment"] is None
    text = to_text(curve_document(results, "t"))
    assert f"scikit-learn {sklearn.__version__}" in text and "(1 model)" in text
    assert "not recorded for 1 model (cached before environments were recorded)" in text


def test_run_curves_end_to_end_verdicts(digits):
    pytest.importorskip("torch")
    X, y = digits
    plan = plan_curves([200], n_train=1500, depths=(1,), banks=("random",), seeds=1)
    results = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY)
    arms = results["arms"]
    assert set(arms) == {"raw", "fixed-random-d1", "frozen-d1", "learned-d1"}
    for arm in arms.values():
        entry = arm["sizes"][200]
        assert 0.1 < entry["accuracy"] <= 1 and entry["low"] <= entry["accuracy"] <= entry["high"]
    learned = arms["learned-d1"]["sizes"][200]
    assert learned["settings"][0]["learning_rate"] in TINY.learning_rates
    assert learned["budget_steps"] == [TINY.budget_steps(200 * 2 // 3)] or learned["budget_steps"][0] > 0
    roles = {c["role"] for c in results["comparisons"]}
    assert roles == {"b", "a-raw", "a-learned", "kernels"}
    assert results["test_evaluations"] == 4
    assert any("not judged" in v["text"] for v in results["verdicts"])
    # Holm counts each pair of arms once, even when two claims rest on the same test.
    p_values = {(c["arm"], c["reference"]): c["p_value"] for c in results["comparisons"]}
    adjusted = dict(zip(p_values, _curves.holm(list(p_values.values()))))
    for c in results["comparisons"]:
        assert c["holm_p"] == pytest.approx(adjusted[c["arm"], c["reference"]])
    # ... and the report shows it once ("b" and "a-learned" share random-vs-learned here).
    from skconvfeat.study._curve_report import curve_document
    from skconvfeat.study._document import to_text

    rows = [line for line in to_text(curve_document(results, "t")).splitlines() if line.startswith("200 ")]
    assert len(rows) == len(set(rows)) == len(p_values)


def test_verdict_sentences_name_only_outcomes_that_occurred():
    text = _curves.outcomes_text({"higher": [100, 300], "not judged": [3000]}, "learned kernels", 0.01)
    assert text == ("above learned kernels at 100, 300 images; not judged against learned kernels at 3,000 images "
                    "(a network had not converged)")
    assert "none" not in text
    assert _curves.outcomes_text({}, "raw pixels", 0.01) == "not compared with raw pixels"


def test_curves_command_refuses_bad_options_before_any_work(capsys):
    from skconvfeat.study._cli import main

    assert main(["curves", "--dataset", "mnist", "--train-sizes", "100,lots"]) == 2
    assert "--train-sizes" in capsys.readouterr().err
    assert main(["curves", "--dataset", "mnist", "--train-sizes", "100", "--layers", "one"]) == 2
    assert main(["curves", "--train-sizes", "100"]) == 2  # --dataset is required
    assert main(["curves", "--dataset", "mnist", "--train-sizes", "100", "--seeds", "0"]) == 2
    assert "--seeds: expected a positive integer or a comma-separated list, got '0'" in capsys.readouterr().err
    assert main(["curves", "--dataset", "mnist", "--train-sizes", "100", "--min-improvement", "-1"]) == 2
    assert "--min-improvement: expected a number of accuracy points from 0 to 50, got '-1'" in capsys.readouterr().err
    assert main(["curves", "--dataset", "mnist", "--train-sizes", "100", "--batch-norm"]) == 2
    assert "--batch-norm: normalises the mixing arms; add --mixing" in capsys.readouterr().err
    assert main(["curves", "--dataset", "mnist", "--train-sizes", "100", "--budget-steps", "0"]) == 2
    assert "--budget-steps: expected a positive integer" in capsys.readouterr().err


def test_plan_refuses_bad_seeds_and_banks():
    with pytest.raises(ValueError, match="'seeds' parameter of plan_curves must be a positive integer"):
        plan_curves([100], n_train=1000, seeds=0)
    with pytest.raises(ValueError, match=r"'banks' parameter of plan_curves must name registered banks .*'gabr'"):
        plan_curves([100], n_train=1000, banks=("gabr",))


def test_curve_report_from_results(digits, tmp_path):
    pytest.importorskip("matplotlib")
    from skconvfeat.study import write_curves
    from skconvfeat.study._curve_report import curve_document
    from skconvfeat.study._document import to_markdown
    from skconvfeat.study._format import duration

    X, y = digits
    plan = plan_curves([100, 300], n_train=1500, depths=(1,), banks=("random",), seeds=1)
    plan.arms = [arm for arm in plan.arms if arm.kind in ("raw", "fixed")]
    results = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY)
    text = to_markdown(curve_document(results, "digits"))
    assert "| Raw pixels (no conv) | raw |" in text and "2 test evaluations" not in text
    assert "4 test evaluations" in text
    paths = write_curves(results, tmp_path / "out", "digits")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    page = (tmp_path / "out" / "report.html").read_text()
    # The page is the same document as summary.md, with both figures beside their sections.
    for key in ("curves", "comparisons", "settings", "verdicts", "fig-curves", "fig-cost"):
        assert f'<section id="{key}">' in page
    assert page.count("data:image/svg+xml;base64,") == 2
    fits = sum(e["fit_wall"] * e["seeds"] for arm in results["arms"].values() for e in arm["sizes"].values())
    assert f"The 4 models took {duration(fits)} of fitting in all" in text


def test_plan_takes_one_seed_count_per_size():
    # A short run drops seeds at its largest sizes first; a count per size is taken as given, above the
    # default rule too (5 at 100, 1 on the whole set), while one count for all sizes only caps it.
    plan = plan_curves([100, 3000, "all"], n_train=20_000, depths=(1,), banks=("random",), seeds=[9, 2, 2])
    assert plan.seeds == {100: list(range(9)), 3000: [0, 1], 20_000: [0, 1]}
    plan = plan_curves([100, 3000, "all"], n_train=20_000, depths=(1,), banks=("random",), seeds=2)
    assert plan.seeds == {100: [0, 1], 3000: [0, 1], 20_000: [0]}
    with pytest.raises(ValueError, match="one positive integer per training size"):
        plan_curves([100, 300], n_train=1000, seeds=[1])
    with pytest.raises(ValueError, match="one positive integer per training size"):
        plan_curves([100, 300], n_train=1000, seeds=[1, 0])


def test_curves_command_refuses_a_seed_list_of_another_length(capsys):
    from skconvfeat.study._cli import main

    assert main(["curves", "--dataset", "mnist", "--train-sizes", "100,300,1000", "--seeds", "5,3"]) == 2
    assert "--seeds: expected one count or one per --train-sizes entry (3), got 2" in capsys.readouterr().err


def test_depth_three_trains_in_every_kind_of_arm(digits):
    # The third layer of the study's network: every arm kind builds and trains it (fixed, frozen, learned).
    pytest.importorskip("torch")
    X, y = digits
    plan = plan_curves([150], n_train=1500, depths=(3,), banks=("gabor",), seeds=1)
    assert {arm.name for arm in plan.arms} == {"raw", "fixed-gabor-d3", "frozen-d3", "learned-d3"}
    results = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY)
    for name in ("fixed-gabor-d3", "learned-d3"):
        assert results["arms"][name]["sizes"][150]["accuracy"] > 0.3
    with pytest.raises(ValueError, match="'depths' parameter of plan_curves must hold depths among"):
        plan_curves([150], n_train=1500, depths=(4,))


@pytest.mark.parametrize("outcome, arm_ok, reference_ok, judged", [
    ("lower", True, True, True), ("equivalent", True, True, True),
    # The unconverged learned reference is already ahead: more training only widens the gap.
    ("lower", True, False, True),
    # ... but a fixed arm ahead of an unconverged network, or equal to it, could change.
    ("higher", True, False, False), ("equivalent", True, False, False), ("inconclusive", True, False, False),
    ("higher", False, True, True), ("lower", False, True, False), ("higher", False, False, False),
])
def test_unconverged_networks_are_judged_only_where_they_already_win(outcome, arm_ok, reference_ok, judged):
    assert _stats.is_judged(outcome, arm_ok, reference_ok) is judged


def test_mixing_arms_train_and_get_their_own_verdict(digits):
    pytest.importorskip("torch")
    X, y = digits
    plan = plan_curves([150], n_train=1500, depths=(1,), banks=("gabor", "kmeans"), seeds=1, mixing=True)
    # The whitened k-means layer is no plain convolution: no torch network starts from it.
    assert [arm.name for arm in plan.arms if arm.kind == "mixing"] == ["mixing-gabor-d1"]
    plan.arms = [arm for arm in plan.arms if arm.kind in ("raw", "learned", "mixing")]
    results = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY)
    assert results["arms"]["mixing-gabor-d1"]["sizes"][150]["accuracy"] > 0.3
    [comparison] = [c for c in results["comparisons"] if c["role"] == "mixing"]
    assert (comparison["arm"], comparison["reference"]) == ("mixing-gabor-d1", "learned-d1")
    [verdict] = [v for v in results["verdicts"] if v["claim"] == "mixing"]
    assert verdict["text"].startswith("Depth 1, the question of the wiring: with a learned 1x1 mixing after each "
                                      "layer, frozen gabor spatial kernels are ")


def test_mixing_can_be_given_to_some_banks_only():
    # The fixed arms of every bank (the best fixed arm is chosen among them), the costly mixing arms for one.
    from skconvfeat.study._cli import _mixing, build_curves_parser

    banks = ("random", "gabor", "kmeans")
    plan = plan_curves([150], n_train=1500, depths=(1,), banks=banks, seeds=1, mixing=("random",))
    assert [arm.name for arm in plan.arms if arm.kind == "mixing"] == ["mixing-random-d1"]
    assert {f"fixed-{bank}-d1" for bank in banks} <= {arm.name for arm in plan.arms}
    with pytest.raises(ValueError, match=r"'mixing' parameter of curve_arms names \['kmeans'\], whose layer is not a "
                                         "plain convolution"):
        plan_curves([150], n_train=1500, banks=banks, mixing=("kmeans",))
    with pytest.raises(ValueError, match=r"'mixing' parameter of curve_arms must name banks among the fixed banks "
                                         r"\['random', 'gabor', 'kmeans'\]. Got \['gabr'\] instead"):
        plan_curves([150], n_train=1500, banks=banks, mixing=("gabr",))
    parse = build_curves_parser().parse_args
    base = ["--dataset", "mnist", "--train-sizes", "100"]
    assert [_mixing(parse(base + extra).mixing) for extra in ([], ["--mixing"], ["--mixing", "random,gabor"])] == [
        False, True, ("random", "gabor")]
    assert parse(base + ["--mixing", "--batch-norm"]).batch_norm  # a bare --mixing before another option


def test_normalised_mixing_arms_are_compared_with_a_learned_network_normalised_the_same_way(digits):
    pytest.importorskip("torch")
    from skconvfeat.study._curve_report import curve_document
    from skconvfeat.study._document import to_text

    X, y = digits
    plan = plan_curves([150], n_train=1500, depths=(1,), banks=("gabor",), seeds=1, mixing=True, batch_norm=True)
    assert [(arm.name, arm.batch_norm) for arm in plan.arms if arm.kind in ("learned", "mixing")] == [
        ("learned-d1", False), ("learned-bn-d1", True), ("mixing-gabor-bn-d1", True)]
    plan.arms = [arm for arm in plan.arms if arm.kind in ("raw", "fixed", "learned", "mixing")]
    results = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY)
    [comparison] = [c for c in results["comparisons"] if c["role"] == "mixing"]
    assert (comparison["arm"], comparison["reference"]) == ("mixing-gabor-bn-d1", "learned-bn-d1")
    [verdict] = [v for v in results["verdicts"] if v["claim"] == "mixing"]
    assert verdict["text"].startswith("Depth 1, the question of the wiring: with a learned 1x1 mixing and a batch "
                                      "normalisation after each layer, frozen gabor spatial kernels are ")
    assert "learned kernels with the same normalisation" in verdict["text"]
    assert "Learned (random init, BN), 1 layer" in to_text(curve_document(results, "t"))
    # Claim (b) is asked again against the normalised learned network, the stronger baseline.
    roles = {c["role"]: (c["arm"], c["reference"]) for c in results["comparisons"]}
    assert roles["b-bn"][1] == "learned-bn-d1" and roles["b"][1] == "learned-d1"
    [verdict] = [v for v in results["verdicts"] if v["claim"] == "bn"]
    assert verdict["text"].startswith("Depth 1, against the learned network given a batch normalisation after each "
                                      "layer (the fixed and frozen arms have none): frozen random kernels are ")
    assert "; the best fixed arm (chosen on validation, the frozen network among them) is " in verdict["text"]
    with pytest.raises(ValueError, match="'batch_norm' parameter of curve_arms normalises the mixing arms"):
        plan_curves([150], n_train=1500, batch_norm=True)


def test_a_replaced_refit_is_named_in_the_report(digits, tmp_path, monkeypatch):
    """A record whose refit diverged (see refit_network) is a NOTE of the curves' document."""
    from skconvfeat.study._curve_report import curve_document
    from skconvfeat.study._document import to_text

    X, y = digits
    plan = plan_curves([100], n_train=1500, depths=(1,), banks=("random",), seeds=1)
    plan.arms = [arm for arm in plan.arms if arm.kind == "raw"]
    real = _curves.run_one

    def diverging(*args, **kwargs):
        return {**real(*args, **kwargs), "refit": "diverged (a non-finite training loss): the cross-validation "
                                                  "model of fold 2 kept"}

    monkeypatch.setattr(_curves, "run_one", diverging)
    results = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY)
    text = to_text(curve_document(results, "t"))
    assert ("NOTE: refit replaced: Raw pixels (no conv) at 100 images, seed 0: diverged (a non-finite training "
            "loss): the cross-validation model of fold 2 kept.") in text


def _fake_arm(label, kind, depth, accuracy):
    entry = {"accuracy": accuracy, "low": accuracy - 0.01, "high": accuracy + 0.01, "converged": True, "fit_wall": 1.0}
    return {"label": label, "kind": kind, "depth": depth, "sizes": {"100": entry, "300": dict(entry, fit_wall=2.0)}}


def test_curve_figure_has_a_panel_per_depth_with_the_references_and_distinct_colours():
    # One panel crowded with every depth's arms repeated colours (the learned arms of both depths were one
    # red), so a reader could not tell depths or arms apart.
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex

    from skconvfeat.study._curve_report import figure_curves

    arms = {"raw": _fake_arm("Raw pixels (no conv)", "raw", 0, 0.7),
            "preset": _fake_arm("Preset p (ridge head)", "preset", 1, 0.9)}
    for depth in (1, 2):
        suffix = f", {depth} layer{'s' if depth > 1 else ''}"
        arms[f"fixed-random-d{depth}"] = _fake_arm(f"Random, fixed{suffix}", "fixed", depth, 0.8)
        arms[f"fixed-gabor-d{depth}"] = _fake_arm(f"Gabor, fixed{suffix}", "fixed", depth, 0.81)
        arms[f"learned-d{depth}"] = _fake_arm(f"Learned (random init){suffix}", "learned", depth, 0.82)
    axes = figure_curves({"arms": arms}).axes
    assert [a.get_title() for a in axes] == ["1 layer", "2 layers"]
    colour_of = {}
    for axis in axes:
        lines = {line.get_label(): to_hex(line.get_color()) for line in axis.get_lines()}
        assert set(lines) == {"Raw pixels (no conv)", "Preset p (ridge head)", "Random, fixed", "Gabor, fixed",
                              "Learned (random init)"}
        assert len(set(lines.values())) == len(lines), lines  # no two arms of a panel share a colour
        for label, colour in lines.items():
            assert colour_of.setdefault(label, colour) == colour  # an arm keeps its colour across panels


def test_transfer_figure_gives_two_arms_of_one_kind_two_colours():
    pytest.importorskip("matplotlib")
    from skconvfeat.study._curve_report import figure_curves

    arms = {"fine-tuned": _fake_arm("Fine-tuned", "learned", 2, 0.5), "scratch": _fake_arm("Scratch", "learned", 2, 0.6),
            "frozen": _fake_arm("Frozen", "fixed", 2, 0.55), "random": _fake_arm("Random", "fixed", 2, 0.52)}
    (axis,) = figure_curves({"arms": arms}).axes
    assert len({str(line.get_color()) for line in axis.get_lines()}) == 4


def test_augmented_networks_train_on_augmented_batches_and_get_their_own_verdict(digits, monkeypatch):
    # Without augmentation the learned CIFAR-10 network over-fits within a few hundred steps; the
    # augmented pair asks the question again with the same augmentation for frozen and learned kernels.
    pytest.importorskip("torch")
    from skconvfeat.learned import LearnedConvClassifier

    X, y = digits
    plan = plan_curves([150], n_train=1500, depths=(1,), banks=("random",), seeds=1, augment="crops")
    assert [a.name for a in plan.arms if a.augment != "none"] == ["frozen-crops-d1", "learned-crops-d1"]
    plan.arms = [arm for arm in plan.arms if arm.kind in ("fixed", "learned") or arm.augment != "none"]
    seen = []
    fit = LearnedConvClassifier.fit
    monkeypatch.setattr(LearnedConvClassifier, "fit", lambda self, *a, **k: seen.append(self.augment) or fit(self, *a, **k))
    results = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY)
    assert {"horizontal_flip": False} in seen and False in seen  # augmented and plain networks both trained
    assert results["arms"]["learned-crops-d1"]["augment"] == "crops"
    roles = {c["role"]: (c["arm"], c["reference"]) for c in results["comparisons"]}
    assert roles["kernels-augmented"] == ("frozen-crops-d1", "learned-crops-d1")
    assert roles["b-augmented"][1] == "learned-crops-d1"
    # Claim (b)'s best fixed arm is never an augmented one: its reference, the learned network, is not augmented.
    assert "crops" not in roles["b"][0]
    [verdict] = [v for v in results["verdicts"] if v["claim"] == "augmented"]
    assert verdict["text"].startswith("Depth 1, both networks trained on augmented batches (crops): frozen random "
                                      "kernels are ")


def test_mlp_head_networks_get_the_mlp_head_and_their_own_verdict(digits, monkeypatch):
    # Every arm can have every head: the frozen and the learned network once more with an MLP head, compared
    # with each other; claim (b)'s best fixed arm stays among the linear heads, as its learned reference.
    pytest.importorskip("torch")
    from skconvfeat.learned import LearnedConvClassifier

    X, y = digits
    plan = plan_curves([150], n_train=1500, depths=(1,), banks=("random",), seeds=1, head="mlp")
    assert [a.name for a in plan.arms if a.head == "mlp"] == ["frozen-mlp-d1", "learned-mlp-d1"]
    assert all(a.augment == "none" for a in plan.arms)
    seen = []
    fit = LearnedConvClassifier.fit
    monkeypatch.setattr(LearnedConvClassifier, "fit", lambda self, *a, **k: seen.append(self.head) or fit(self, *a, **k))
    results = run_curves(X[:1500], y[:1500], X[1500:], y[1500:], plan, TINY)
    assert {"mlp", "linear"} <= set(seen)
    assert results["arms"]["learned-mlp-d1"]["head"] == "mlp"
    roles = {c["role"]: (c["arm"], c["reference"]) for c in results["comparisons"]}
    assert roles["kernels-mlp"] == ("frozen-mlp-d1", "learned-mlp-d1")
    assert roles["b-mlp"][1] == "learned-mlp-d1"
    assert "mlp" not in roles["b"][0] and roles["kernels"] == ("frozen-d1", "learned-d1")
    [verdict] = [v for v in results["verdicts"] if v["claim"] == "mlp"]
    assert verdict["text"].startswith("Depth 1, both networks with an MLP head (one hidden layer of 100 ReLU units): "
                                      "frozen random kernels are ")


def test_curve_arms_refuse_an_unknown_head():
    with pytest.raises(ValueError, match=r"'head' parameter of curve_arms must be one of \['linear', 'mlp'\]. "
                                         r"Got 'rbf' instead"):
        plan_curves([100], n_train=1000, head="rbf")


def test_curve_arms_refuse_an_unknown_augmentation():
    with pytest.raises(ValueError, match=r"'augment' parameter of curve_arms must be one of .*Got 'flip' instead"):
        plan_curves([100], n_train=1000, augment="flip")


def test_min_improvement_sets_the_kept_check_and_leaves_earlier_records_valid():
    curve = [0.50, 0.60, 0.601, 0.6015, 0.59]
    assert CurveProtocol().best_check(curve) == int(np.argmax(curve)) == 3
    assert CurveProtocol(min_improvement=0.002).best_check(curve) == 1  # rises of 0.1 and 0.15 points are noise
    # The recorded curves' protocol keeps its digest; using the rule makes another protocol.
    assert CurveProtocol().digest() == "8ce804815574"
    assert CurveProtocol(min_improvement=0.002).digest() != CurveProtocol().digest()
    with pytest.raises(ValueError, match="min_improvement"):
        CurveProtocol(min_improvement=-0.1).check()


def test_train_to_plateau_stops_when_no_rise_beats_min_improvement(digits):
    X, y = digits
    fit, valid = np.arange(0, 300), np.arange(300, 400)
    # No rise can beat 99 points: the first check is kept, and the run stops `patience` checks later.
    protocol = CurveProtocol(check_steps=5, patience=3, min_budget_steps=400, min_budget_epochs=1, min_improvement=0.99)
    best, curve, converged, _ = train_to_plateau(_network(), X[fit], y[fit], X[valid], y[valid], protocol)
    assert converged and len(curve) == protocol.patience + 1
    assert best.score(X[valid], y[valid]) == pytest.approx(curve[0])
