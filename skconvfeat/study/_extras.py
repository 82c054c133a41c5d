"""The arrays behind the report's figures (kernels, feature maps, curves, confusion), from the first split."""


import numpy as np
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import Pipeline

__all__ = ["extras"]


def extras(arms, first_runs, best, reference, images, target, test):
    """Arrays for the report's figures, from the first split or seed.

    Kernels and feature maps of the one-layer fixed arms; the first learned
    arm's first-layer kernels before and after training; every PyTorch arm's
    per-epoch history; the confusion matrix of ``best`` and the per-class
    accuracy of ``reference`` and ``best`` (summarised arm dicts).
    """
    fixed = [arm for arm in arms if isinstance(arm.estimator, Pipeline) and arm.depth == 1]
    sample = images[test[0]]
    arrays = {
        "banks": {arm.label: first_runs[arm.name]["model"][0].filters_ for arm in fixed},
        "learned_arm": None,
        "learned_before": None,
        "learned_after": None,
        # The fixed arms trained in PyTorch ("random_adam") too: their curves show the head alone learning.
        "learning_curves": {arm.label: list(first_runs[arm.name]["model"].history_)
                            for arm in arms if hasattr(first_runs[arm.name]["model"], "history_")},
        "sample_image": sample,
        "feature_maps": {arm.label: _feature_maps(first_runs[arm.name]["model"][0], sample) for arm in fixed},
        "confusion": None,
        "per_class": None,
    }
    learned = next((arm for arm in arms if arm.kind == "learned"), None)  # depth 1 first: the smallest kernels
    if learned is not None:
        model = first_runs[learned.name]["model"]
        arrays["learned_arm"] = learned.label
        arrays["learned_before"] = model.initial_filters_[0]
        arrays["learned_after"] = model.filters_[0]
    if best is not None:
        labels = np.unique(target)
        matrix = confusion_matrix(target[test], first_runs[best["name"]]["pred"], labels=labels)
        arrays["confusion"] = {"arm": best["label"], "labels": labels.tolist(), "matrix": matrix}
        tested = np.unique(target[test])  # a class without test images has no accuracy
        arrays["per_class"] = {
            "labels": tested.tolist(),
            "accuracy": {arm["label"]: _per_class_accuracy(target[test], first_runs[arm["name"]]["pred"], tested)
                         for arm in (reference, best)},  # one entry when they are the same arm
        }
    return arrays


def _per_class_accuracy(true, pred, labels):
    """Recall of each class in ``labels``: the fraction of its test images predicted right."""
    matrix = confusion_matrix(true, pred, labels=labels)
    return np.diag(matrix) / matrix.sum(axis=1)


def _feature_maps(conv, image):
    """``image`` through the fitted ``conv`` before pooling, shaped ``(n_maps, H', W')``.

    A copy of the fitted layer, not a refit: a data-derived bank refitted on
    one image would be another bank.
    """
    layer = conv.layer_.unpooled()
    flat = layer.forward(np.asarray(image).reshape(1, *layer.image_shape))[0]  # map-major: map, row, column
    return flat.reshape(-1, *layer.map_shape)
