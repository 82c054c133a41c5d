"""The one place that turns the study's numbers into text.

The verdict sentences (:mod:`._verdicts`), the document model that the
command line, ``summary.md`` and ``report.html`` share (:mod:`._document`)
and the comparison page (:mod:`._compare`) all format accuracies,
differences, p-values and times with these functions, and build their tables
from the same rows, so a number reads the same everywhere.
"""

import math

import numpy as np

from ._stats import is_judged

__all__ = [
    "COMPARISON_HEADER",
    "SUMMARY_HEADER",
    "TRANSFER_HEADER",
    "accuracy",
    "accuracy_cell",
    "caveats",
    "comparison_rows",
    "difference",
    "margin",
    "outcome",
    "p_value",
    "percent",
    "seconds",
    "study_line",
    "summary_rows",
    "text_table",
    "transfer_rows",
]

SUMMARY_HEADER = ("Arm", "Kind", "Features", "Accuracy (95% CI)", "Fit time (mean)")
COMPARISON_HEADER = ("Arm", "Reference", "Difference (95% CI)", "Holm p", "Outcome")
TRANSFER_HEADER = ("Arm", "Training images", "Accuracy (95% CI)", "Fit time (mean)")


def duration(seconds):
    """``seconds`` as ``1h02m``, ``3m05s`` or ``42s`` (``?`` when unknown)."""
    if not np.isfinite(seconds):
        return "?"
    if seconds < 0:  # a time saved can be negative
        return "-" + duration(-seconds)
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def percent(fraction):
    """``0.9473`` -> ``"94.7%"``; ``None`` -> ``"n/a"``."""
    return "n/a" if fraction is None else f"{100 * fraction:.1f}%"


def p_value(p):
    """Three decimals, ``"< 0.001"`` below that, ``"n/a"`` when missing or not finite."""
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def seconds(values):
    """Mean of the measured times, e.g. ``"0.157 s"`` (``None`` entries were not measured)."""
    values = [value for value in values or () if value is not None]
    return f"{np.mean(values):.3g} s" if values else "n/a"


def accuracy(entry):
    """``"94.7% [95% CI 93.4% to 96.1%]"`` from a dict with ``mean``, ``ci_low``, ``ci_high``."""
    return f"{percent(entry['mean'])} [95% CI {percent(entry['ci_low'])} to {percent(entry['ci_high'])}]"


def accuracy_cell(entry):
    """The table form of :func:`accuracy`, under a header that says "95% CI": ``"94.7% (93.4% to 96.1%)"``."""
    return f"{percent(entry['mean'])} ({percent(entry['ci_low'])} to {percent(entry['ci_high'])})"


def _points(fraction):
    """``0.012`` -> ``"+1.2"``; a difference that rounds to zero reads ``"+0.0"``, never ``"-0.0"``."""
    return f"{round(100 * fraction, 1) + 0.0:+.1f}"


def margin(fraction):
    """The equivalence margin in words: ``0.01`` -> ``"±1 point"``, ``0.005`` -> ``"±0.5 points"``."""
    points = f"{100 * fraction:.3g}"
    return f"±{points} point{'' if points == '1' else 's'}"


def outcome(comparison):
    """The outcome in words: ``"lower"``, ``"equal within ±1 point"``, ...

    A significant difference smaller than the margin says so too.
    """
    within = margin(comparison["margin"])
    word = comparison["outcome"]
    if word == "equivalent":
        return f"equal within {within}"
    if word in ("higher", "lower") and comparison["equivalent"]:
        return f"{word}, but within {within}"
    return word


def _p_clause(p):
    """``"= 0.840"`` or ``"< 0.001"``, to follow the letter p."""
    text = p_value(p)
    return text if text.startswith("<") else f"= {text}"


def difference(comparison):
    """``"-0.2 points [95% CI -1.9 to +1.6; Holm p = 0.840]: equal within ±1 point"``."""
    return (
        f"{_points(comparison['mean_diff'])} points [95% CI {_points(comparison['ci_low'])} to "
        f"{_points(comparison['ci_high'])}; Holm p {_p_clause(comparison['p_holm'])}]: {outcome(comparison)}"
    )


def study_line(results):
    """One sentence saying what was run, at the top of the table and of both reports."""
    evaluation = results["evaluation"]
    shape = "x".join(str(size) for size in results["image_shape"])
    if evaluation["design"] == "cv":
        design = (
            f"{evaluation['n_repeats']} x {evaluation['n_splits']}-fold cross-validation "
            f"({evaluation['n_train']} train / {evaluation['n_test']} test images per split)"
        )
    else:
        seeds = evaluation["n_seeds"]
        design = (
            f"official train/test split ({evaluation['n_train']} train / {evaluation['n_test']} test images), "
            f"{seeds} seed{'s' if seeds != 1 else ''}"
        )
    training = results["learned_training"]
    return (
        f"Dataset {results['dataset']} ({results['n_samples']} images of {shape}, {results['n_classes']} "
        f"classes); head: {results['classifier']}; {design}; learned arms on {training['device']}, "
        f"augmentation: {training['augmentation']}; equivalence margin {margin(results['margin'])}; "
        f"{results['elapsed_s']:.0f} s in all."
    )


def caveats(results):
    """Lines a reader must see before any verdict: an unfair learned baseline, learned fits that did not converge."""
    lines = []
    baseline = results.get("baseline")
    if baseline and not baseline["reached"]:
        lines.append(
            f"WARNING: the learned baseline ({baseline['label']}) reached {percent(baseline['accuracy'])}, below "
            f"the {percent(baseline['floor'])} a plain two-layer CNN reaches on {results['dataset']}; its "
            "comparisons are not a fair test of fixed against learned kernels."
        )
    for arm in results["arms"]:
        stopped = stopped_early(arm)
        if stopped:
            lines.append(
                f"NOTE: {arm['label']}: {stopped} of {len(arm['converged'])} fits stopped at max_epochs "
                "before converging."
            )
    return lines


def summary_rows(results):
    """Rows of the per-arm table (:data:`SUMMARY_HEADER`)."""
    return [
        (arm["label"], arm["kind"], str(arm["n_features"]), accuracy_cell(arm), seconds(arm["fit_time"]))
        for arm in results["arms"]
    ]


def stopped_early(arm):
    """How many of ``arm``'s fits stopped at their epoch cap still improving (0 for arms without a stop rule)."""
    return sum(converged is False for converged in arm.get("converged") or ())


def unjudged_networks(comparison, arms):
    """The networks (labels joined by "and") that stopped still improving and leave ``comparison`` not judged
    by the curves' rule (``_stats.is_judged``: judged only where such a network is already significantly
    ahead); "" when it is judged."""
    arm, reference = arms[comparison["arm"]], arms[comparison["reference"]]
    if is_judged(comparison["outcome"], not stopped_early(arm), not stopped_early(reference)):
        return ""
    return " and ".join(a["label"] for a in (arm, reference) if stopped_early(a))


def judged_outcome(comparison, arms):
    """:func:`outcome`, or "not judged (... had not converged)" (:func:`unjudged_networks`)."""
    unconverged = unjudged_networks(comparison, arms)
    return f"not judged ({unconverged} had not converged)" if unconverged else outcome(comparison)


def comparison_rows(results):
    """Rows of the comparisons with the reference (:data:`COMPARISON_HEADER`)."""
    arms = {arm["name"]: arm for arm in results["arms"]}
    return [
        (
            arms[c["arm"]]["label"],
            arms[c["reference"]]["label"],
            f"{_points(c['mean_diff'])} pp ({_points(c['ci_low'])} to {_points(c['ci_high'])})",
            p_value(c["p_holm"]),
            judged_outcome(c, arms),
        )
        for c in results["comparisons"]
    ]


def transfer_rows(transfer):
    """Rows of the transfer curve (:data:`TRANSFER_HEADER`), one per arm and size."""
    rows = []
    for arm in transfer["arms"].values():
        for i, size in enumerate(transfer["train_sizes"]):
            entry = {key: arm[key][i] for key in ("mean", "ci_low", "ci_high")}
            rows.append((arm["label"], str(size), accuracy_cell(entry), seconds(arm["fit_time"][i])))
    return rows


def text_table(header, rows):
    """A fixed-width plain-text table, columns padded to their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in (header, *rows))
