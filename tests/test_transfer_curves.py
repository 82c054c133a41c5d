"""Transfer across datasets under the curve protocol: conversions, the exact seed test, caching."""

import itertools
import json
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skconvfeat import FixedConvTransformer
from skconvfeat.study import _curves, _transfer_curves
from skconvfeat.study._curves import CurveProtocol
from skconvfeat.study._stats import sign_flip_test
from skconvfeat.study._transfer_curves import (
    TRANSFER_ARMS,
    TransferData,
    adapt_kernels,
    restrict_classes,
    run_transfer,
    to_grey,
)

pytest.importorskip("torch")


# -- conversions ---------------------------------------------------------------------------------


def test_to_grey_is_the_channel_mean_and_keeps_grey_images():
    rgb = np.array([[[[0, 30, 60], [255, 0, 0]]]], dtype=np.uint8)  # one 1x2 colour image
    grey = to_grey(rgb)
    assert grey.shape == (1, 1, 2) and grey.dtype == np.float32
    np.testing.assert_allclose(grey, [[[30.0, 85.0]]])
    already = np.zeros((3, 4, 4))
    assert to_grey(already) is already
    with pytest.raises(ValueError, match="shaped"):
        to_grey(np.zeros((4, 4)))


def test_restrict_classes_keeps_only_those_classes_and_their_labels():
    images, target = np.arange(6)[:, None, None] * np.ones((6, 2, 2)), np.array([0, 1, 2, 0, 1, 2])
    kept, labels = restrict_classes(images, target, (0, 2))
    np.testing.assert_array_equal(labels, [0, 2, 0, 2])
    np.testing.assert_array_equal(kept[:, 0, 0], [0, 2, 3, 5])
    assert restrict_classes(images, target, None)[1] is target
    with pytest.raises(ValueError, match=r"Classes \[7\]"):
        restrict_classes(images, target, (0, 7))


def test_one_channel_kernels_on_grey_equal_the_adapted_kernels_on_colour():
    rng = np.random.default_rng(0)
    kernels = [rng.normal(size=(4, 1, 3, 3)), rng.normal(size=(5, 4, 3, 3))]
    images = rng.uniform(0, 255, size=(6, 8, 8, 3))
    adapted = adapt_kernels(kernels, 3)
    assert adapted[1] is kernels[1]  # deeper layers see maps, not the image's channels
    layer = dict(padding="same", pooling="avg", pool_size=2, dtype="float64")
    on_grey = FixedConvTransformer(kernels[0], **layer).fit(to_grey(images))
    on_colour = FixedConvTransformer(adapted[0], **layer).fit(images)
    # The replication rule: each channel gets the kernel divided by the number of channels.
    np.testing.assert_allclose(on_colour.filters_, np.repeat(kernels[0], 3, axis=1) / 3)
    np.testing.assert_allclose(on_colour.transform(images), on_grey.transform(to_grey(images)), rtol=1e-10,
                               atol=1e-8)
    assert adapt_kernels(kernels, 1)[0] is kernels[0]
    with pytest.raises(ValueError, match="cannot be applied"):
        adapt_kernels([rng.normal(size=(4, 3, 3, 3))], 1)


# -- the exact sign-flip test -------------------------------------------------------------------


def _brute_force_sign_flip(differences):
    """Every sign pattern enumerated in exact arithmetic."""
    observed = abs(sum(differences))
    patterns = list(itertools.product((-1, 1), repeat=len(differences)))
    extreme = sum(abs(sum(s * d for s, d in zip(signs, differences))) >= observed for signs in patterns)
    return Fraction(extreme, len(patterns))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_sign_flip_test_matches_brute_force_enumeration(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        # Accuracy differences are multiples of 1 / n_test; small integers make ties and zeros common.
        counts = rng.integers(-4, 5, size=n)
        exact = _brute_force_sign_flip([Fraction(int(c), 1000) for c in counts])
        result = sign_flip_test(counts / 1000)
        assert result["p_value"] == pytest.approx(float(exact), abs=1e-12)
        assert result["min_p_value"] == 2 / 2**n and result["n"] == n


def test_sign_flip_test_floor_and_bad_input():
    assert sign_flip_test([0.05, 0.01, 0.02, 0.03, 0.04])["p_value"] == 2 / 32  # all one sign: the floor
    assert sign_flip_test([0.0, 0.0])["p_value"] == 1.0
    for bad in ([], np.zeros(17), [0.1, np.nan], [[0.1, 0.2]]):
        with pytest.raises(ValueError, match="sign_flip_test"):
            sign_flip_test(bad)


# -- a tiny end-to-end run: digits 0-4 -> digits 5-9 -------------------------------------------------

TINY = CurveProtocol(logistic_C=(0.1, 1.0), learning_rates=(1e-2, 3e-2), ridge_alphas=(1e-2, 1e-1), cv_folds=2,
                     check_steps=4, patience=2, min_budget_steps=8, min_budget_epochs=1, batch_size=32)


@pytest.fixture(scope="module")
def digits_pair():
    X, y = load_digits(return_X_y=True)
    images = X.reshape(-1, 8, 8)
    source = y < 5
    target_train, target_test = ~source & (np.arange(y.size) % 3 != 0), ~source & (np.arange(y.size) % 3 == 0)
    return TransferData(images[source], y[source], images[target_train], y[target_train],
                        images[target_test], y[target_test])


@pytest.fixture
def fits(monkeypatch):
    """Names of the arms fitted (source networks are the arm "source")."""
    fitted, fit_arm = [], _curves.fit_arm

    def counting(arm, *args, **kwargs):
        fitted.append(arm.name)
        return fit_arm(arm, *args, **kwargs)

    monkeypatch.setattr(_curves, "fit_arm", counting)
    monkeypatch.setattr(_transfer_curves, "fit_arm", counting)
    return fitted


def _run(data, cache_dir, **settings):
    settings = {"sizes": (20, 30), "source_size": 60, "n_sources": 2, "max_seeds": 2, "margin": 0.05, **settings}
    return run_transfer(data, protocol=TINY, cache_dir=cache_dir, **settings)


class _Stop(Exception):
    pass


def test_tiny_transfer_run_resumes_from_its_cache(digits_pair, tmp_path, fits):
    def stop_after_seven(done, total, label):
        if done == 7:
            raise _Stop(label)

    with pytest.raises(_Stop):
        _run(digits_pair, tmp_path, progress=stop_after_seven)
    assert len(fits) == 7  # 2 source networks, then 5 target records, each saved as it finished
    kernels = np.load(tmp_path / "sources" / "seed0.npz")
    assert kernels["layer0"].shape == (32, 1, 5, 5) and kernels["layer1"].shape == (64, 32, 3, 3)

    del fits[:]
    results = _run(digits_pair, tmp_path)
    assert len(fits) == 4 * 2 * 2 - 5 and "source" not in fits  # only what the stopped run had not finished
    del fits[:]
    again = _run(digits_pair, tmp_path)
    assert fits == []  # everything read back
    assert json.dumps(again["arms"], default=str) == json.dumps(results["arms"], default=str)

    assert set(results["arms"]) == set(TRANSFER_ARMS) and results["sizes"] == [20, 30]
    for arm in results["arms"].values():
        for size in (20, 30):
            cell = arm["sizes"][size]
            assert cell["seeds"] == 2 and 0 <= cell["low"] <= cell["accuracy"] <= cell["high"] <= 1
            assert len(cell["settings"]) == 2 and isinstance(cell["converged"], bool)
    assert len(results["comparisons"]) == 3 * 2
    for c in results["comparisons"]:
        assert c["seed_min_p_value"] == 0.5 and c["seed_p_value"] >= 0.5  # 2 seeds: the floor is 2/4
        assert c["holm_p"] >= c["p_value"] and c["outcome"] in ("higher", "lower", "equivalent", "inconclusive")
    assert [s["seed"] for s in results["sources"]] == [0, 1]
    assert all(0 < s["validation_accuracy"] <= 1 for s in results["sources"])
    assert results["times"]["by_size"][20]["saved_vs_scratch"]["fit_wall"] == pytest.approx(
        results["arms"]["scratch"]["sizes"][20]["fit_wall"] - results["arms"]["transfer-frozen"]["sizes"][20]["fit_wall"])
    assert results["verdict"]["text"].startswith("Transferred frozen kernels beat random fixed kernels ")
    assert set(results["verdict"]["parts"]) == {"beats-random", "matches-fine-tuned", "beats-scratch"}

    # Other source settings: new source networks and transferred arms; the others are reused.
    del fits[:]
    _run(digits_pair, tmp_path, source_size=70, sizes=(20,))
    assert sorted(set(fits)) == ["fine-tuned", "source", "transfer-frozen"] and len(fits) == 2 + 2 * 2


def test_transfer_report_shows_sources_comparisons_and_time_saved(digits_pair, tmp_path):
    pytest.importorskip("matplotlib")
    from skconvfeat.study._curve_report import transfer_document, write_curves
    from skconvfeat.study._document import to_markdown

    results = _run(digits_pair, None, n_sources=1, max_seeds=2, sizes=(20,))
    text = to_markdown(transfer_document(results, "digits 0-4 -> 5-9"))
    for heading in ("## Source networks", "## Target test accuracy", "## Transferred frozen kernels minus",
                    "## Fit time saved", "## Verdict"):
        assert heading in text
    c = results["comparisons"][0]
    assert f"{c['seed_holm_p']:.2g} ({c['seed_min_p_value']:.2g})" in text  # the least p two seeds allow: 0.5
    assert results["verdict"]["text"] in text
    paths = write_curves(results, tmp_path / "out", "transfer")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    assert json.loads((tmp_path / "out" / "curves.json").read_text())["kind"] == "transfer_curves"
    assert '<section id="sources">' in (tmp_path / "out" / "report.html").read_text()


def test_transfer_command_refuses_bad_options_before_any_work(capsys):
    from skconvfeat.study._cli import main

    assert main(["transfer", "--pair", "mnist-to-svhn"]) == 2
    assert "invalid choice: 'mnist-to-svhn'" in capsys.readouterr().err
    assert main(["transfer", "--pair", "cifar10-to-mnist", "--sizes", "20,lots"]) == 2
    assert "--sizes: expected integers, got '20,lots'" in capsys.readouterr().err
    assert main(["transfer", "--pair", "cifar10-to-mnist", "--sources", "0"]) == 2


def test_transfer_command_hands_the_protocol_options_to_the_run(monkeypatch, capsys):
    from skconvfeat.study import _transfer_curves
    from skconvfeat.study._cli import main

    seen = {}

    def fake_run(name, data_home, cache_dir, **settings):
        seen.update(settings)
        raise OSError("stop here")

    monkeypatch.setattr(_transfer_curves, "run_transfer_pair", fake_run)
    assert main(["transfer", "--pair", "cifar10-to-mnist", "--min-improvement", "0.2", "--budget-steps", "6000"]) == 1
    assert seen["protocol"] == CurveProtocol(min_improvement=0.002, min_budget_steps=6000)
    assert main(["transfer", "--pair", "cifar10-to-mnist", "--grid-extensions", "2"]) == 1
    assert seen["protocol"] == CurveProtocol(grid_extensions=2)
    assert main(["transfer", "--pair", "cifar10-to-mnist"]) == 1
    assert seen["protocol"].digest() == CurveProtocol().digest()  # the defaults are the recorded runs' protocol


def test_transfer_verdict_names_only_the_outcomes_that_occurred():
    from skconvfeat.study._transfer_curves import transfer_verdict

    def comparison(role, size, outcome, judged=True):
        return {"role": role, "size": size, "outcome": outcome, "judged": judged}

    comparisons = [comparison("beats-random", 20, "equivalent"), comparison("beats-random", 100, "higher"),
                   comparison("matches-fine-tuned", 20, "higher"), comparison("matches-fine-tuned", 100, "lower", False),
                   comparison("beats-scratch", 20, "higher"), comparison("beats-scratch", 100, "higher")]
    text = transfer_verdict(comparisons, [{"seed": 0, "converged": True}], 0.01)["text"]
    assert text.startswith(
        "Transferred frozen kernels beat random fixed kernels at 100 images (frozen transferred kernels are above "
        "random fixed kernels at 100 images; equal to random fixed kernels within ±1 points at 20 images); "
        "match the fine-tuned network at 20 images (frozen transferred kernels are above the fine-tuned network at "
        "20 images; not judged against the fine-tuned network at 100 images (a network had not converged)); ")
    assert "no size" not in text and "below" not in text


def test_a_grown_transfer_run_counts_the_extra_candidates_of_sources_and_targets(digits_pair):
    from skconvfeat.study._curve_report import transfer_document
    from skconvfeat.study._document import to_markdown

    # C of 1e-5 and 1e-4 on standardised features starve the logistic heads: their grid grows upwards.
    grown = replace(TINY, logistic_C=(1e-5, 1e-4), grid_extensions=2)
    results = run_transfer(digits_pair, protocol=grown, sizes=(30,), source_size=60, n_sources=1, max_seeds=1,
                           margin=0.05)
    targets = sum(arm["sizes"][30]["extra_candidates"] for arm in results["arms"].values())
    sources = sum(s["extra_candidates"] for s in results["sources"])
    assert results["extra_candidates"] == targets + sources and targets >= 2  # both logistic arms grew
    assert f"{targets + sources} extra candidates tried in all" in to_markdown(transfer_document(results, "t"))


def test_a_larger_budget_grows_the_sources_and_targets_of_a_smaller_ones_cache(digits_pair, tmp_path, monkeypatch):
    # Every grid of TINY has two values, so every choice is an end: under a budget of 1 each source and
    # target grows on from the budget-0 cache by one candidate, and the result is a fresh budget-1 run's.
    trained = []
    real = _curves.train_to_plateau
    monkeypatch.setattr(_curves, "train_to_plateau", lambda *a, **k: trained.append(1) or real(*a, **k))
    settings = {"sizes": (30,), "source_size": 60, "n_sources": 1, "max_seeds": 1, "margin": 0.05}
    run_transfer(digits_pair, protocol=TINY, cache_dir=tmp_path / "grown", **settings)
    grown_protocol = replace(TINY, grid_extensions=1)
    del trained[:]
    grown = run_transfer(digits_pair, protocol=grown_protocol, cache_dir=tmp_path / "grown", **settings)
    n_grown = len(trained)
    del trained[:]
    fresh = run_transfer(digits_pair, protocol=grown_protocol, cache_dir=tmp_path / "fresh", **settings)
    assert 0 < n_grown < len(trained)  # only the candidates past the smaller budget's were trained
    for key in ("setting", "validation_accuracy", "test_accuracy", "extra_candidates"):
        assert grown["sources"][0][key] == fresh["sources"][0][key]
    for name, arm in fresh["arms"].items():
        assert grown["arms"][name]["sizes"][30]["accuracy"] == arm["sizes"][30]["accuracy"]
        assert grown["arms"][name]["sizes"][30]["extra_candidates"] == arm["sizes"][30]["extra_candidates"] == 1
    del trained[:]
    again = run_transfer(digits_pair, protocol=grown_protocol, cache_dir=tmp_path / "grown", **settings)
    assert trained == [] and again["arms"] == grown["arms"]
