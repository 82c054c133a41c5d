"""run_study on tiny configurations: the results schema, paired splits, verdict logic."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skconvfeat.study import _study
from skconvfeat.study import run_study

TOP_KEYS = {
    "dataset", "n_samples", "n_classes", "image_shape", "classifier", "cv", "arms", "comparisons",
    "transfer", "verdicts", "skipped_arms", "elapsed_s", "versions",
}
ARM_KEYS = {
    "name", "label", "kind", "bank", "n_features", "scores", "fit_time", "transform_time",
    "mean", "ci_low", "ci_high",
}
TINY = {"n_splits": 2, "n_repeats": 2, "random_state": 0}


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.images, data.target


@pytest.fixture(scope="module")
def fixed_only(digits):
    return run_study(*digits, banks=("gabor", "identity"), learned=False, transfer=False,
                     return_extras=True, **TINY)


def test_fixed_only_results_match_schema(fixed_only):
    results, _ = fixed_only
    assert set(results) == TOP_KEYS
    json.dumps(results)  # JSON-serialisable as is
    assert results["n_samples"] == 1797 and results["n_classes"] == 10
    assert results["image_shape"] == [8, 8, 1]
    assert results["cv"]["n_train"] + results["cv"]["n_test"] == 1797
    assert [a["name"] for a in results["arms"]] == ["gabor", "identity"]
    for arm in results["arms"]:
        assert set(arm) == ARM_KEYS
        assert len(arm["scores"]) == len(arm["fit_time"]) == len(arm["transform_time"]) == 4
        assert arm["ci_low"] <= arm["mean"] <= arm["ci_high"]
    kinds = {a["name"]: (a["kind"], a["n_features"]) for a in results["arms"]}
    assert kinds == {"gabor": ("fixed", 16 * 4 * 4), "identity": ("raw", 64)}
    assert results["transfer"] is None
    assert {s["name"] for s in results["skipped_arms"]} == {*_study.LEARNED_ARMS, "transfer"}
    # no learned arm: the reference is the best fixed bank
    assert [c["reference"] for c in results["comparisons"]] == ["gabor"]
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
    evaluate = _study._evaluate

    def recording(arm, images, target, train, test, keep_model=False):
        seen.setdefault(arm.name, []).append((train.tolist(), test.tolist()))
        return evaluate(arm, images, target, train, test, keep_model)

    monkeypatch.setattr(_study, "_evaluate", recording)  # n_jobs=None runs in this process
    run_study(*digits, banks=("random", "sharpen", "identity"), learned=False, transfer=False, **TINY)
    splits = list(seen.values())
    assert len(splits) == 3 and len(splits[0]) == 4
    assert all(sorted(s) == sorted(splits[0]) for s in splits)


def test_train_size_subsamples_every_training_fold(digits):
    results = run_study(*digits, banks=("identity",), learned=False, transfer=False, train_size=100, **TINY)
    assert results["cv"]["n_train"] == 100


def test_learned_arms_and_transfer(digits, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setitem(_study.LEARNED, "max_epochs", 3)  # wiring, not accuracy
    monkeypatch.setattr(_study, "TRANSFER_SIZES", (20, 50))
    images, target = digits
    results, extras = run_study(images[:600], target[:600], banks=("random", "identity"),
                                return_extras=True, n_jobs=2, **TINY)
    json.dumps(results)
    names = [a["name"] for a in results["arms"]]
    assert names == ["random", "identity", "learned", "gabor_learned", "random_adam"]
    learned = results["arms"][2]
    assert learned["kind"] == "learned" and learned["transform_time"] == [None] * 4
    assert learned["n_features"] == 256
    assert {c["reference"] for c in results["comparisons"]} == {"learned"}
    assert len(results["comparisons"]) == 4
    transfer = results["transfer"]
    assert transfer["source_classes"] == [0, 1, 2, 3, 4] and transfer["train_sizes"] == [20, 50]
    for arm in transfer["arms"].values():
        assert np.shape(arm["scores"]) == np.shape(arm["fit_time"]) == (2, _study.TRANSFER_SEEDS)
    assert results["skipped_arms"] == []
    assert extras["learned_before"].shape == extras["learned_after"].shape == (16, 1, 3, 3)
    assert not np.allclose(extras["learned_before"], extras["learned_after"])
    assert all(v["verdict"] in ("supported", "refuted", "inconclusive") for v in results["verdicts"])


def _results(scores, kinds=None, transfer=None):
    """A minimal results dict holding arms with the given per-split scores."""
    kinds = kinds or {}
    arms = []
    for name, values in scores.items():
        mean = float(np.mean(values))
        arms.append({"name": name, "label": name, "kind": kinds.get(name, "fixed"), "scores": list(values),
                     "mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01})
    return {"arms": arms, "n_classes": 10, "cv": {"n_train": 80, "n_test": 20}, "transfer": transfer}


NOISE = np.array([0.01, -0.01, 0.005, -0.005, 0.0, 0.01, -0.01, 0.005, -0.005, 0.0])


@pytest.mark.parametrize(
    "random_gap, expected",
    [(-0.10, "supported"), (0.10, "refuted"), (0.0, "inconclusive")],
)
def test_verdict_random_vs_raw_pixels(random_gap, expected):
    raw = 0.9 + NOISE
    random = raw + random_gap + NOISE[::-1]  # noisy difference: the interval has width
    verdicts = _study._verdicts(_results({"random": random, "identity": raw}, {"identity": "raw"}))
    assert verdicts[0]["verdict"] == expected
    assert "raw pixels" in verdicts[0]["sentence"]


@pytest.mark.parametrize("gap, expected", [(-0.05, "supported"), (0.05, "refuted"), (0.0, "inconclusive")])
def test_verdict_best_fixed_vs_learned(gap, expected):
    learned = 0.95 + NOISE
    scores = {"gabor": learned + gap + NOISE[::-1], "sharpen": learned - 0.3, "learned": learned}
    verdict = _study._verdicts(_results(scores, {"learned": "learned"}))[1]
    assert verdict["verdict"] == expected
    assert verdict["sentence"].startswith("The best fixed bank (gabor)")


def test_verdict_transfer_uses_the_smallest_sizes():
    seeds = np.array([0.0, 0.01, -0.01, 0.02, -0.02])

    def arm(small_mean, large_mean):
        return {"scores": [list(small_mean + seeds), list(small_mean + seeds[::-1]), list(large_mean + seeds)],
                "fit_time": [[0.01] * 5, [0.01] * 5, [0.02] * 5]}

    transfer = {"source_classes": [0, 1], "target_classes": [2, 3], "train_sizes": [20, 50, 300], "n_seeds": 5,
                "source_fit_time": [1.0] * 5,
                "arms": {"transfer": arm(0.9, 0.95), "scratch": arm(0.8, 0.99), "random": arm(0.85, 0.97)}}
    verdict = _study._verdicts(_results({}, transfer=transfer))[2]
    assert verdict["verdict"] == "supported"  # +10 points at 20 and 50, whatever happens at 300
    assert "1.0x faster" in verdict["sentence"]
    transfer["arms"]["scratch"] = arm(0.9, 0.99)
    assert _study._verdicts(_results({}, transfer=transfer))[2]["verdict"] == "inconclusive"


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="Did you mean 'gabor'"):
        run_study(*digits, banks=("gabr",))
    with pytest.raises(ValueError, match="classifier"):
        run_study(*digits, classifier="svm")
