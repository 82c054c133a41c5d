"""run_study on tiny configurations: the results schema, paired splits, verdict logic."""

import dataclasses
import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skconvfeat import make_bank
from skconvfeat.study import StudySettings, _design, _evaluate, _format, _study, _transfer, _verdicts
from skconvfeat.study import run_study, run_transfer
from skconvfeat.study._stats import wilson_interval

TOP_KEYS = {
    "dataset", "n_samples", "n_classes", "image_shape", "classifier", "evaluation", "learned_training", "margin",
    "alpha", "arms", "best_fixed", "best_fixed_chosen_on", "reference", "comparisons", "baseline", "verdicts",
    "skipped_arms",
    "elapsed_s", "versions",
}
COMPARISON_KEYS = {
    "arm", "reference", "mean_diff", "ci_low", "ci_high", "statistic", "p_value", "equivalence_p_value", "margin",
    "test", "df", "p_holm", "equivalence_p_holm", "equivalent", "outcome",
}
ARM_KEYS = {
    "name", "label", "kind", "bank", "depth", "n_features", "scores", "fit_time", "transform_time", "converged",
    "mean", "ci_low", "ci_high",
}
TINY = {"n_splits": 2, "n_repeats": 2, "random_state": 0}


def study(images, target, return_extras=False, n_jobs=None, test_images=None, test_target=None, transfer=None,
          **settings):
    """run_study with ``settings`` given as StudySettings fields."""
    return run_study(images, target, StudySettings(**settings), test_images=test_images, test_target=test_target,
                     transfer=transfer, n_jobs=n_jobs, return_extras=return_extras)


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.images, data.target


@pytest.fixture(scope="module")
def fixed_only(digits):
    return study(*digits, banks=("gabor", "identity"), learned=False, return_extras=True, **TINY)


def test_fixed_only_results_match_schema(fixed_only):
    results, _ = fixed_only
    assert set(results) == TOP_KEYS
    json.dumps(results)  # JSON-serialisable as is
    assert results["n_samples"] == 1797 and results["n_classes"] == 10
    assert results["image_shape"] == [8, 8, 1]
    assert results["evaluation"]["design"] == "cv"
    assert results["evaluation"]["n_train"] + results["evaluation"]["n_test"] == 1797
    assert results["learned_training"]["augmentation"] == "none"
    assert results["margin"] == 0.01
    assert [a["name"] for a in results["arms"]] == ["gabor", "identity"]
    for arm in results["arms"]:
        assert set(arm) - {"validation_accuracy"} == ARM_KEYS
        assert len(arm["scores"]) == len(arm["fit_time"]) == len(arm["transform_time"]) == 4
        assert 0 <= arm["ci_low"] <= arm["mean"] <= arm["ci_high"] <= 1
    kinds = {a["name"]: (a["kind"], a["n_features"]) for a in results["arms"]}
    assert kinds == {"gabor": ("fixed", 16 * 4 * 4), "identity": ("raw", 64)}
    assert {s["name"] for s in results["skipped_arms"]} == {*_design.LEARNED_ARMS}
    # no learned arm: the reference is the best fixed bank
    assert results["best_fixed"] == results["reference"] == "gabor"
    assert [c["reference"] for c in results["comparisons"]] == ["gabor"]
    assert set(results["comparisons"][0]) == COMPARISON_KEYS
    assert results["baseline"] is None  # no accuracy floor known for digits
    assert [v["verdict"] for v in results["verdicts"]][1:] == ["inconclusive", "inconclusive"]


def test_fixed_only_extras(fixed_only):
    _, extras = fixed_only
    assert extras["banks"]["Gabor, fixed"].shape == (16, 1, 3, 3)
    assert extras["feature_maps"]["Gabor, fixed"].shape == (16, 8, 8)
    assert extras["feature_maps"]["Raw pixels (no conv)"].shape == (1, 8, 8)
    np.testing.assert_allclose(extras["feature_maps"]["Raw pixels (no conv)"][0], extras["sample_image"][..., 0])
    assert extras["confusion"]["arm"] == "Gabor, fixed"
    assert extras["confusion"]["matrix"].shape == (10, 10)
    assert extras["learned_before"] is None and extras["learned_after"] is None


def test_all_arms_see_the_same_splits(digits, monkeypatch):
    seen = {}
    evaluate = _study.evaluate

    validation = {}

    def recording(arm, images, target, train, test, **keep):
        # The study's splits pass keep_model/keep_pred; the choice of the best fixed arm passes neither.
        (seen if keep else validation).setdefault(arm.name, []).append((train.tolist(), test.tolist()))
        return evaluate(arm, images, target, train, test, **keep)

    monkeypatch.setattr(_study, "evaluate", recording)  # n_jobs=None runs in this process
    study(*digits, banks=("random", "sharpen", "identity"), learned=False, **TINY)
    splits = list(seen.values())
    assert len(splits) == 3 and len(splits[0]) == 4
    assert all(sorted(s) == sorted(splits[0]) for s in splits)
    # The fixed candidates are also scored once on images held out of the first split's training images.
    assert set(validation) == {"random", "sharpen"}
    first_train = set(seen["random"][0][0])
    for [(fit, valid)] in validation.values():
        assert set(fit) | set(valid) == first_train and not set(fit) & set(valid)


def test_train_size_subsamples_every_training_fold(digits):
    results = study(*digits, banks=("identity",), learned=False, train_size=100, **TINY)
    assert results["evaluation"]["n_train"] == 100


def test_learned_arms_and_transfer(digits):
    pytest.importorskip("torch")
    settings = StudySettings(banks=("random", "identity"), small_recipe={**_design.LEARNED, "max_epochs": 3},
                             transfer_sizes=(20, 50), **TINY)  # max_epochs: wiring, not accuracy
    images, target = digits
    transfer = run_transfer(images[:600], target[:600], settings, n_jobs=2)
    results, extras = run_study(images[:600], target[:600], settings, transfer=transfer, return_extras=True,
                                n_jobs=2)
    json.dumps(results)
    names = [a["name"] for a in results["arms"]]
    assert names == ["random", "identity", "learned", "gabor_learned", "random_adam"]
    learned = results["arms"][2]
    assert learned["kind"] == "learned" and learned["transform_time"] == [None] * 4
    assert learned["n_features"] == 256
    assert {c["reference"] for c in results["comparisons"]} == {"learned"}
    assert len(results["comparisons"]) == 4
    json.dumps(transfer)
    assert transfer["skipped"] is None
    assert transfer["source_classes"] == [0, 1, 2, 3, 4] and transfer["train_sizes"] == [20, 50]
    for arm in transfer["arms"].values():
        assert np.shape(arm["scores"]) == np.shape(arm["fit_time"]) == (2, settings.transfer_seeds)
    assert len(results["verdicts"][2]["tests"]) == 2  # claim (c) judged from the transfer results
    assert results["skipped_arms"] == []
    assert extras["learned_before"].shape == extras["learned_after"].shape == (16, 1, 3, 3)
    assert not np.allclose(extras["learned_before"], extras["learned_after"])
    assert all(v["verdict"] in ("supported", "refuted", "inconclusive") for v in results["verdicts"])


def _results(scores, kinds=None, transfer=None, dataset="digits"):
    """A minimal results dict holding arms with the given per-split scores, and its CV design (80/20)."""
    kinds = kinds or {}
    arms = []
    for name, values in scores.items():
        mean = float(np.mean(values))
        arms.append({"name": name, "label": name, "kind": kinds.get(name, "fixed"), "depth": 1, "scores": list(values),
                     "mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01, "validation_accuracy": mean})
    results = {"arms": arms, "n_classes": 10, "margin": 0.01, "dataset": dataset}
    best = _verdicts.best_fixed_arm(arms)
    results["best_fixed"] = best and best["name"]
    results["reference"] = "learned" if "learned" in scores else results["best_fixed"]
    results["baseline"] = _verdicts.baseline(results, "learned")
    n_splits = len(next(iter(scores.values()), []))
    evaluation = _evaluate.Evaluation("cv", [(np.arange(80), np.arange(80, 100))] * max(n_splits, 1), None, 0.01)
    return results, evaluation, transfer


def judged(*args, **kwargs):
    return _verdicts.verdicts(*_results(*args, **kwargs), alpha=0.05, small_sizes=2)


NOISE = np.array([0.01, -0.01, 0.005, -0.005, 0.0, 0.01, -0.01, 0.005, -0.005, 0.0])


@pytest.mark.parametrize(
    "random_gap, noise, expected",
    [
        (-0.10, 1, "supported"),
        (0.10, 1, "refuted"),
        (0.0, 1, "refuted"),  # equal within +-1 point: not "very poorly"
        (0.0, 4, "inconclusive"),  # too noisy to tell either way
    ],
)
def test_verdict_random_vs_raw_pixels(random_gap, noise, expected):
    raw = 0.9 + NOISE
    random = raw + random_gap + noise * NOISE[::-1]  # noisy difference: the interval has width
    verdicts = judged({"random": random, "identity": raw}, {"identity": "raw"})
    assert verdicts[0]["verdict"] == expected
    assert "raw pixels" in verdicts[0]["sentence"]
    if random_gap == 0 and noise == 1:
        assert "equal within ±1 point" in verdicts[0]["sentence"]


@pytest.mark.parametrize("gap, expected", [(-0.05, "supported"), (0.05, "refuted"), (0.0, "refuted")])
def test_verdict_best_fixed_vs_learned(gap, expected):
    learned = 0.95 + NOISE
    scores = {"gabor": learned + gap + NOISE[::-1], "sharpen": learned - 0.3, "learned": learned}
    verdict = judged(scores, {"learned": "learned"})[1]
    assert verdict["verdict"] == expected
    assert verdict["sentence"].startswith("The best fixed arm (gabor)")


def test_verdict_tests_are_one_holm_family():
    learned = 0.95 + NOISE
    scores = {"random": learned - 0.02 + 2 * NOISE[::-1], "identity": learned - 0.1 + NOISE[::-1],
              "learned": learned, "random_adam": learned - 0.03 + NOISE[::-1]}
    verdicts = judged(scores, {"identity": "raw", "learned": "learned"})
    cited = [t for v in verdicts for t in v["tests"]]
    assert len(cited) == 4  # random vs raw, random (the best fixed arm) vs learned twice, learned vs frozen
    raw = [t["p_value"] for t in cited]
    assert all(t["p_holm"] >= p for t, p in zip(cited, raw))
    assert min(t["p_holm"] for t in cited) == pytest.approx(min(min(raw) * 3, 1))  # 3 distinct tests


def test_unfair_learned_baseline_is_not_judged():
    learned = 0.45 + NOISE  # far below what a plain CNN reaches on CIFAR-10
    scores = {"gabor": learned + 0.05 + NOISE[::-1], "learned": learned}
    results, evaluation, _ = _results(scores, {"learned": "learned"}, dataset="cifar10-jpeg")
    assert results["baseline"] == {"arm": "learned", "label": "learned", "accuracy": pytest.approx(0.45),
                                   "floor": 0.74, "reached": False}
    verdict = _verdicts.verdicts(results, evaluation, None, alpha=0.05, small_sizes=2)[1]
    assert verdict["verdict"] == "inconclusive"  # would be "refuted" (fixed is better) if judged
    assert verdict["sentence"].startswith("Not judged: the learned baseline reached 45.0%, below the 74.0%")
    assert _format.caveats(results)[0].startswith("WARNING: the learned baseline (learned) reached 45.0%")
    results["arms"][1]["mean"] = 0.80
    assert _verdicts.baseline(results, "learned")["reached"] is True


def test_unconverged_learned_baseline_is_not_judged():
    learned = 0.90 + NOISE
    scores = {"gabor": learned + 0.05 + NOISE[::-1], "learned": learned}
    results, evaluation, _ = _results(scores, {"learned": "learned"})
    assert _verdicts.verdicts(results, evaluation, None, alpha=0.05, small_sizes=2)[1]["verdict"] == "refuted"
    results["arms"][1]["converged"] = [True] * 7 + [False] * 3
    verdict = _verdicts.verdicts(results, evaluation, None, alpha=0.05, small_sizes=2)[1]
    assert verdict["verdict"] == "inconclusive"  # "refuted" if judged: never on a network still improving
    assert verdict["sentence"].startswith("Not judged: the learned baseline had not converged: learned (3 of 10 fits)")


@pytest.mark.parametrize("gap, judged", [(0.05, False), (-0.05, True)])
def test_random_kernels_against_an_unconverged_network_are_judged_only_where_the_network_wins(gap, judged):
    # The curves' rule in the main job: a network still improving at its cap can only gain, so random
    # kernels ahead of it are not judged (verdict (a)'s clause and the comparisons table say so), while
    # the network ahead of them holds a fortiori. Verdict (a) itself rests on raw pixels and stands.
    learned = 0.90 + NOISE
    scores = {"random": learned + gap + NOISE[::-1], "identity": learned - 0.2 + NOISE[::-1], "learned": learned}
    results, evaluation, _ = _results(scores, {"identity": "raw", "learned": "learned"})
    results["arms"][2]["converged"] = [True] * 7 + [False] * 3
    results["comparisons"] = _verdicts.comparisons(results["arms"], "learned", evaluation, 0.05)
    verdict = _verdicts.verdicts(results, evaluation, None, alpha=0.05, small_sizes=2)[0]
    assert verdict["verdict"] == "refuted"
    assert ("not judged (learned had not converged)" in verdict["sentence"]) is not judged
    cells = {row[0]: row[-1] for row in _format.comparison_rows(results)}
    assert cells["random"] == ("lower" if judged else "not judged (learned had not converged)")
    assert cells["identity"] == "lower"  # raw pixels below a network still improving: a fortiori


def test_verdict_transfer_uses_the_smallest_sizes():
    seeds = np.array([0.0, 0.01, -0.01, 0.02, -0.02])

    def arm(small_mean, large_mean):
        scores = [list(small_mean + seeds), list(small_mean + seeds[::-1]), list(large_mean + seeds)]
        return {"scores": scores, "fit_time": [[0.01] * 5, [0.01] * 5, [0.02] * 5],
                **_transfer.transfer_curve(scores, n_test=100)}

    transfer = {"source_classes": [0, 1], "target_classes": [2, 3], "train_sizes": [20, 50, 300], "n_seeds": 5,
                "source_fit_time": [1.0] * 5,
                "arms": {"transfer": arm(0.9, 0.95), "scratch": arm(0.8, 0.99), "random": arm(0.85, 0.97)}}
    verdict = judged({}, transfer=transfer)[2]
    assert verdict["verdict"] == "supported"  # +10 points at 20 and 50, whatever happens at 300
    assert "1.0x faster" in verdict["sentence"]
    transfer["arms"]["scratch"] = arm(0.9, 0.99)
    assert judged({}, transfer=transfer)[2]["verdict"] == "refuted"  # equal within +-1 point
    transfer["arms"]["scratch"]["scores"][0] = list(0.9 + 5 * seeds)
    assert judged({}, transfer=transfer)[2]["verdict"] == "inconclusive"


def test_best_fixed_arm_is_chosen_on_validation_among_the_fixed_arms_of_the_deepest_network():
    # "a" has the better test mean, "b" the better validation accuracy: validation decides, never the test.
    arms = [{"name": "raw", "kind": "raw", "mean": 0.99, "validation_accuracy": 0.99},
            {"name": "a", "kind": "fixed", "mean": 0.96, "validation_accuracy": 0.90},
            {"name": "b", "kind": "fixed", "mean": 0.95, "validation_accuracy": 0.93},
            {"name": "l", "kind": "learned", "mean": 0.97}]
    assert _verdicts.best_fixed_arm(arms)["name"] == "b"
    assert _verdicts.best_fixed_arm(arms[:1])["name"] == "raw"  # no fixed arm: the best of the rest
    assert _verdicts.best_fixed_arm([]) is None
    deep = [{"name": "a@2", "kind": "fixed", "mean": 0.8, "depth": 2, "validation_accuracy": 0.8},
            {"name": "l@2", "kind": "learned", "mean": 0.9, "depth": 2}]
    assert _verdicts.best_fixed_arm(arms + deep)["name"] == "a@2"  # the learned reference is two layers deep


def test_run_study_scores_the_best_fixed_candidates_on_held_out_training_images(fixed_only):
    results, _ = fixed_only
    arms = {arm["name"]: arm for arm in results["arms"]}
    assert {name for name, arm in arms.items() if "validation_accuracy" in arm} == {"gabor"}  # the fixed candidates
    assert results["best_fixed"] == "gabor" and "held out of the first split's" in results["best_fixed_chosen_on"]
    assert 0.5 < arms["gabor"]["validation_accuracy"] <= 1


def test_confusion_matrix_and_verdict_use_the_same_best_arm(digits, monkeypatch):
    # On the first split "sharpen" wins; over all splits "gabor" does. The old code
    # drew the confusion matrix of the first split's winner and judged the other.
    evaluate = _study.evaluate

    def rigged(arm, images, target, train, test, keep_model=False, keep_pred=False):
        result = evaluate(arm, images, target, train, test, keep_model, keep_pred)
        if arm.name == "sharpen":  # keep_model: the first split
            result["score"] = 0.99 if keep_model else 0.5
        return result

    monkeypatch.setattr(_study, "evaluate", rigged)
    results, extras = study(*digits, banks=("gabor", "sharpen"), learned=False, train_size=100,
                            return_extras=True, **TINY)
    assert results["best_fixed"] == "gabor"
    assert extras["confusion"]["arm"] == "Gabor, fixed"


def test_holdout_design_scores_every_arm_on_the_same_test_images(digits):
    images, target = digits
    results = study(images[:1200], target[:1200], test_images=images[1200:], test_target=target[1200:],
                    banks=("gabor", "identity"), learned=False, n_seeds=2, train_size=400)
    evaluation = results["evaluation"]
    assert evaluation["design"] == "holdout" and evaluation["n_seeds"] == 2
    assert (evaluation["n_train"], evaluation["n_test"]) == (400, 597)
    assert "Wilson" in evaluation["interval"] and evaluation["test"].startswith("paired t-test over test images")
    for arm in results["arms"]:
        assert len(arm["scores"]) == 2
        low, high = wilson_interval(arm["mean"] * 597, 597)
        assert (arm["ci_low"], arm["ci_high"]) == pytest.approx((low, high))
    (comparison,) = results["comparisons"]
    assert comparison["arm"] == "identity" and comparison["reference"] == "gabor"
    assert 0 <= comparison["p_holm"] <= 1 and comparison["outcome"] in ("higher", "lower", "equivalent", "inconclusive")
    one_seed = study(images[:1200], target[:1200], test_images=images[1200:], test_target=target[1200:],
                     banks=("gabor", "identity"), learned=False, train_size=300)
    assert one_seed["evaluation"]["n_train"] == 300
    assert one_seed["comparisons"][0]["test"].startswith("McNemar's exact test")


def test_holdout_refuses_unseen_test_classes(digits):
    images, target = digits
    keep = target < 5
    with pytest.raises(ValueError, match=r"classes that no training image has: \[5, 6, 7, 8, 9\]"):
        study(images[keep], target[keep], test_images=images[:50], test_target=target[:50], learned=False)
    with pytest.raises(ValueError, match="both test_images and test_target"):
        run_study(images, target, test_images=images[:50])


def test_device_reaches_the_learned_arms_and_cuda_fails_clearly(digits):
    torch = pytest.importorskip("torch")
    learner_cls, _ = _design.load_learner()
    arms = _design.make_arms(("gabor",), [1, 2], "logistic", learner_cls, _design.LEARNED, 0, "cuda")
    assert {arm.estimator.device for arm in arms if arm.kind != "fixed" or arm.name == "random_adam"} == {"cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'device' parameter of StudySettings is 'cuda' but PyTorch sees no CUDA"):
            StudySettings(device="cuda", **TINY)


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="'banks' parameter of StudySettings .* Did you mean 'gabor'"):
        StudySettings(banks=("gabr",))
    with pytest.raises(ValueError, match="'classifier' parameter of StudySettings"):
        StudySettings(classifier="svm")
    with pytest.raises(ValueError, match="'margin' parameter of StudySettings must be a float in the range"):
        StudySettings(margin=0)
    with pytest.raises(ValueError, match="'device' parameter of StudySettings"):
        StudySettings(device="gpu")
    with pytest.raises(ValueError, match="'depths' parameter of StudySettings must hold depths among"):
        StudySettings(depths=(4,))
    with pytest.raises(ValueError, match="'transfer_seeds' parameter of StudySettings"):
        StudySettings(transfer_seeds=1)
    with pytest.raises(ValueError, match="'settings' parameter of run_study"):
        run_study(*digits, {"banks": ("gabor",)})
    with pytest.raises(ValueError, match="no arm to run: depth 2 builds arms for the banks"):
        study(*digits, banks=("identity",), depths=(2,), learned=False)


def test_settings_are_frozen_copies_and_replace_checks_again():
    recipe = {**_design.LEARNED, "max_epochs": 3}
    settings = StudySettings(small_recipe=recipe, depths=[2, 1, 2])
    recipe["max_epochs"] = 99  # the caller's dict changes later; the settings keep their copy
    assert settings.small_recipe["max_epochs"] == 3 and settings.depths == (1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.margin = 0.02
    with pytest.raises(ValueError, match="'margin' parameter of StudySettings"):
        dataclasses.replace(settings, margin=2)


def test_transfer_says_why_it_cannot_run(digits):
    images, target = digits
    assert run_transfer(images[:60], target[:60] % 3) == {"skipped": "needs at least 4 classes (2 source, 2 target)"}


def test_every_arm_of_a_depth_shares_one_description():
    learner_cls, unavailable = _design.load_learner()
    if unavailable:
        pytest.skip(unavailable)
    arms = {arm.name: arm for arm in _design.make_arms(("gabor", "random", "kmeans", "identity"), [1, 2],
                                                        "logistic", learner_cls, _design.LEARNED, 0, "cpu")}
    assert list(arms) == ["gabor", "random", "kmeans", "identity", "learned", "gabor_learned", "random_adam",
                          "gabor@2", "random@2", "kmeans@2", "learned@2", "random_adam@2"]
    net = arms["random@2"].estimator[0]
    assert [layer.get_params()["bank_params"] for _, layer in net.layers] == [{"n_filters": 32}, {"n_filters": 64}]
    # the learned and frozen arms train exactly the random arm's fixed network
    for name in ("learned@2", "random_adam@2"):
        assert [repr(layer) for _, layer in arms[name].estimator.conv.layers] == [repr(layer) for _, layer in net.layers]
    assert arms["random_adam@2"].estimator.freeze_kernels and not arms["learned@2"].estimator.freeze_kernels
    assert repr(arms["learned"].estimator.conv) == repr(arms["random"].estimator[0])
    gabor = [layer for _, layer in arms["gabor@2"].estimator[0].layers]
    widths = [make_bank("gabor", kernel_size=3, **layer.bank_params).shape[0] for layer in gabor]
    assert widths == [32, 64]  # as wide as the random and k-means layers


def test_two_layer_arms_reference_and_transfer(digits):
    pytest.importorskip("torch")
    settings = StudySettings(banks=("random", "kmeans", "identity"), depths=(2,), n_splits=2, n_repeats=1,
                             small_recipe={**_design.LEARNED, "max_epochs": 2},  # wiring, not accuracy
                             transfer_sizes=(20,), transfer_seeds=2)
    images, target = digits
    transfer = run_transfer(images[:400], target[:400], settings)
    results = run_study(images[:400], target[:400], settings, transfer=transfer)
    assert [a["name"] for a in results["arms"]] == ["random@2", "kmeans@2", "learned@2", "random_adam@2"]
    assert {a["depth"] for a in results["arms"]} == {2}
    assert results["reference"] == "learned@2" and results["best_fixed"] in ("random@2", "kmeans@2", "random_adam@2")
    assert results["arms"][0]["n_features"] == 64 * 2 * 2  # 8x8 -> 4x4 -> 2x2 maps of 64 kernels
    assert transfer["depth"] == 2
    learned = results["arms"][2]
    assert learned["converged"] == [False, False]  # two epochs: stopped at max_epochs, and the results say so
    assert any(line.startswith("NOTE: Learned (random init), 2 layers: 2 of 2 fits") for line in
               _format.caveats(results))
    (verdict_b,) = [v for v in results["verdicts"] if v["claim"].startswith("(b)")]
    assert "for Learned (random init), 2 layers" in verdict_b["sentence"]
