"""run_preset (``skconvfeat preset``) streams exactly the model a user would fit in one go."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skconvfeat import GramRidgeClassifier, make_preset
from skconvfeat.study import run_preset
from reference import reference_rotate, reference_shift


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X.reshape(-1, 8, 8), y


def test_streamed_run_equals_the_model_fitted_in_one_go(digits):
    X, y = digits
    train, test = np.arange(600), np.arange(1500, 1797)
    results = run_preset("coates-digits", X[train], y[train], X[test], y[test], alphas=[0.01], chunk=128,
                         random_state=3, n_patches=5_000)
    # The same preset (same seed, same image order) and head, fitted on the whole feature matrix at once.
    order = np.random.RandomState(3).permutation(len(train))
    transformer = make_preset("coates-digits", random_state=3, n_patches=5_000).fit(X[train][order])
    head = GramRidgeClassifier(alphas=[0.01], standardize=True).fit(transformer.transform(X[train][order]),
                                                                   y[train][order])
    expected = np.mean(head.predict(transformer.transform(X[test])) == y[test])
    assert results["test_accuracy"] == pytest.approx(expected) and results["test_accuracy"] > 0.9
    assert results["validation_scores"] == [] and results["test_evaluations"] == 1
    assert set(results["seconds"]) == {"transformer_fit", "training_rows", "refit", "test"}


def test_penalty_is_chosen_on_a_tenth_of_the_training_rows_and_mirrors_double_them(digits):
    X, y = digits
    results = run_preset("coates-digits", X[:500], y[:500], X[1500:], y[1500:], alphas=[1e-4, 10.0], flip=True,
                         chunk=200, random_state=0, n_patches=5_000)
    assert len(results["validation_scores"]) == 2 and results["alpha"] in (1e-4, 10.0)
    assert results["flip"] and results["n_train"] == 500 and "penalty" in results["seconds"]
    assert results["test_accuracy"] > 0.8  # mirrored digits are other symbols: flips are for natural images


def test_shifted_copies_are_the_images_moved_one_pixel_each_way(digits):
    X, y = digits
    train, test = np.arange(300), np.arange(1500, 1797)
    results = run_preset("coates-digits", X[train], y[train], X[test], y[test], alphas=[0.01], shift=1, chunk=128,
                         random_state=3, n_patches=5_000)
    assert results["shift"] == 1 and results["n_views"] == 5 and results["n_train"] == 300
    # The same model on the images and their four moved copies, built pixel by pixel.
    order = np.random.RandomState(3).permutation(len(train))
    images, labels = X[train][order], y[train][order]
    moved = [np.array([reference_shift(image, *move) for image in images])
             for move in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    transformer = make_preset("coates-digits", random_state=3, n_patches=5_000).fit(images)
    head = GramRidgeClassifier(alphas=[0.01], standardize=True).fit(
        transformer.transform(np.concatenate([images, *moved])), np.tile(labels, 5))
    expected = np.mean(head.predict(transformer.transform(X[test])) == y[test])
    assert results["test_accuracy"] == pytest.approx(expected) and results["test_accuracy"] > 0.9


def test_turned_copies_are_the_images_rotated_each_way_beside_the_moved_ones(digits):
    X, y = digits
    train, test = np.arange(300), np.arange(1500, 1797)
    results = run_preset("coates-digits", X[train], y[train], X[test], y[test], alphas=[0.01], shift=1, rotate=12.5,
                         chunk=128, random_state=3, n_patches=5_000)
    assert results["rotate"] == 12.5 and results["n_views"] == 7
    # The same model on the images, their four moved copies and two turned ones, built pixel by pixel.
    order = np.random.RandomState(3).permutation(len(train))
    images, labels = X[train][order], y[train][order]
    copies = [np.array([reference_shift(image, *move) for image in images])
              for move in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    copies += [np.array([reference_rotate(image, degrees) for image in images]) for degrees in (12.5, -12.5)]
    transformer = make_preset("coates-digits", random_state=3, n_patches=5_000).fit(images)
    head = GramRidgeClassifier(alphas=[0.01], standardize=True).fit(
        transformer.transform(np.concatenate([images, *copies])), np.tile(labels, 7))
    expected = np.mean(head.predict(transformer.transform(X[test])) == y[test])
    assert results["test_accuracy"] == pytest.approx(expected) and results["test_accuracy"] > 0.9


def test_a_shift_as_large_as_the_image_is_refused(digits):
    X, y = digits
    with pytest.raises(ValueError, match="shift=8 must be smaller than the images' height and width, 8 x 8"):
        run_preset("coates-digits", X[:50], y[:50], X[50:60], y[50:60], shift=8, n_patches=5_000)


@pytest.mark.parametrize("params, message", [
    (dict(preset="coates-digit"), "The 'preset' parameter of run_preset must be a str among"),
    (dict(chunk=0), "The 'chunk' parameter of run_preset must be an int in the range \\[1, inf\\)"),
    (dict(flip="yes"), "The 'flip' parameter of run_preset must be an instance of 'bool'"),
    (dict(shift=-1), "The 'shift' parameter of run_preset must be an int in the range \\[0, inf\\)"),
    (dict(rotate=60), "The 'rotate' parameter of run_preset must be a float in the range \\[0.0, 45.0\\]. Got 60"),
])
def test_bad_arguments_are_refused_naming_the_parameter(params, message, digits):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = digits
    args = {"preset": "coates-digits", **params}
    preset = args.pop("preset")
    with pytest.raises(InvalidParameterError, match=message):
        run_preset(preset, X[:50], y[:50], X[50:60], y[50:60], **args)


# -- checkpoint: an interrupted run goes on from its saved sums -------------------------------------------

CHECKPOINTED = dict(alphas=[1e-3, 1e-2], chunk=100, random_state=0, n_patches=5_000, shift=1)


def _interrupted(digits, directory, after_saves=2, **changes):
    """run_preset stopped (as by Ctrl-C) right after its ``after_saves``-th checkpoint save."""
    X, y = digits
    saves = []

    def progress(text):
        if text.startswith("checkpoint:") and "saved" in text:
            saves.append(text)
            if len(saves) == after_saves:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_preset("coates-digits", X[:600], y[:600], X[1500:], y[1500:], progress=progress, checkpoint=directory,
                   checkpoint_every=0, **{**CHECKPOINTED, **changes})
    return saves


def test_an_interrupted_run_goes_on_from_its_checkpoint_to_the_same_result(digits, tmp_path):
    X, y = digits
    whole = run_preset("coates-digits", X[:600], y[:600], X[1500:], y[1500:], **CHECKPOINTED)
    saves = _interrupted(digits, tmp_path / "ck")
    assert saves[-1].startswith("checkpoint: 200 of 540 training images saved")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["head.npz", "probe.npy", "run.json"]
    said = []
    again = run_preset("coates-digits", X[:600], y[:600], X[1500:], y[1500:], progress=said.append,
                       checkpoint=tmp_path / "ck", **CHECKPOINTED)
    assert "checkpoint: 200 of 540 training images read from" in said[1] and again["resumed_images"] == 200
    assert again["validation_scores"] == whole["validation_scores"] and again["alpha"] == whole["alpha"]
    assert again["test_accuracy"] == whole["test_accuracy"] and whole["resumed_images"] == 0
    assert not (tmp_path / "ck").exists()  # a finished run leaves nothing behind
    assert whole["environment"]["numpy"] == np.__version__ and whole["environment"]["blas"]


@pytest.mark.parametrize("changes, differ", [
    (dict(shift=0), "\\['shift'\\]"), (dict(chunk=50), "\\['chunk'\\]"), (dict(flip=True), "\\['flip'\\]"),
    (dict(n_patches=4_000), "\\['preset_params'\\]"), (dict(rotate=5.0), "\\['rotate'\\]"),
])
def test_a_checkpoint_of_another_run_is_refused(digits, tmp_path, changes, differ):
    X, y = digits
    _interrupted(digits, tmp_path / "ck")
    with pytest.raises(ValueError, match=f"was saved by another run \\(it differs in {differ}\\)"):
        run_preset("coates-digits", X[:600], y[:600], X[1500:], y[1500:], checkpoint=tmp_path / "ck",
                   **{**CHECKPOINTED, **changes})
    other_labels = y[:600].copy()
    other_labels[0] = (other_labels[0] + 1) % 10
    with pytest.raises(ValueError, match="differs in \\['images'\\]"):
        run_preset("coates-digits", X[:600], other_labels, X[1500:], y[1500:], checkpoint=tmp_path / "ck",
                   **CHECKPOINTED)


def test_a_checkpoint_whose_features_differ_or_that_is_damaged_is_refused(digits, tmp_path):
    X, y = digits
    _interrupted(digits, tmp_path / "ck")
    probe = np.load(tmp_path / "ck" / "probe.npy")
    np.save(tmp_path / "ck" / "probe.npy", probe * 1.01)  # as if k-means had found other centroids
    run = dict(checkpoint=tmp_path / "ck", **CHECKPOINTED)
    with pytest.raises(ValueError, match="computes different ones"):
        run_preset("coates-digits", X[:600], y[:600], X[1500:], y[1500:], **run)
    np.save(tmp_path / "ck" / "probe.npy", probe)
    (tmp_path / "ck" / "head.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="head.npz is not a GramRidgeClassifier stream file"):
        run_preset("coates-digits", X[:600], y[:600], X[1500:], y[1500:], **run)
    (tmp_path / "ck" / "run.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="cannot be read"):
        run_preset("coates-digits", X[:600], y[:600], X[1500:], y[1500:], **run)
    (tmp_path / "ck" / "run.json").unlink()
    _interrupted(digits, tmp_path / "ck2")
    odd = np.random.RandomState(0).rand(7, probe.shape[1])
    GramRidgeClassifier().partial_fit(odd, np.arange(7), classes=range(10)).save_stream(tmp_path / "ck2" / "head.npz")
    with pytest.raises(ValueError, match="holds 7 rows, which is no whole number of 100-image chunks of 5 copies"):
        run_preset("coates-digits", X[:600], y[:600], X[1500:], y[1500:], checkpoint=tmp_path / "ck2", **CHECKPOINTED)
    # Sums without the run.json that names their run are never resumed: a fresh run starts over them.
    assert (tmp_path / "ck" / "head.npz").exists() and not (tmp_path / "ck" / "run.json").exists()
    fresh = run_preset("coates-digits", X[:600], y[:600], X[1500:], y[1500:], checkpoint=tmp_path / "ck", **CHECKPOINTED)
    assert fresh["resumed_images"] == 0 and not (tmp_path / "ck").exists()
