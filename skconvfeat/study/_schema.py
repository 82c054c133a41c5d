"""The schema of a study's ``results.json``, as :func:`~skconvfeat.study.read_results` checks it.

A report folder may come from anywhere (a colleague, an old run, a hostile
file): every value the comparison reads is checked for its type, its range and
its size before any of it is drawn or written, so a bad file is one line naming
the file and the field, never a traceback, a NaN shown as an accuracy, or a
page a megabyte label blows up. The fields are those of docs/results-schema.md;
keys this module does not list are left alone (the comparison does not read them).

Each check is a function ``check(value, field)`` that raises :class:`SchemaError`.
"""

import math
import numbers

# Sizes a real study stays far below: a study has a few dozen arms, 25 splits or a few seeds.
MAX_TEXT = 200  # names and labels
MAX_SENTENCE = 5_000  # verdict sentences, interval and test descriptions
MAX_ITEMS = 1_000  # arms, verdicts, scores per arm
MAX_FILE_BYTES = 16 * 2**20


class SchemaError(ValueError):
    """A value of ``results.json`` that breaks the schema: ``field`` names it (``arms[2].mean``)."""

    def __init__(self, field, problem):
        super().__init__(f"{field} {problem}" if field else problem)


def _shown(value):
    """A short form of a bad value for the error line (a megabyte label is not echoed)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def text(limit=MAX_TEXT):
    def check(value, field):
        if not isinstance(value, str):
            raise SchemaError(field, f"must be a string; got {_shown(value)}")
        if len(value) > limit:
            raise SchemaError(field, f"must be at most {limit} characters; got {len(value):,}")

    return check


def one_of(*choices):
    def check(value, field):
        if value not in choices:
            raise SchemaError(field, f"must be one of {list(choices)}; got {_shown(value)}")

    return check


def number(low=0.0, high=math.inf):
    """A finite JSON number (not a boolean) in ``[low, high]``."""

    def check(value, field):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise SchemaError(field, f"must be a number; got {_shown(value)}")
        if not math.isfinite(value) or not low <= value <= high:
            raise SchemaError(field, f"must be a finite number in [{low:g}, {high:g}]; got {_shown(value)}")

    return check


def count(value, field):
    """A non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(field, f"must be a non-negative integer; got {_shown(value)}")


def boolean(value, field):
    if not isinstance(value, bool):
        raise SchemaError(field, f"must be true or false; got {_shown(value)}")


def optional(check):
    def check_optional(value, field):
        if value is not None:
            check(value, field)

    return check_optional


def list_of(item, limit=MAX_ITEMS, at_least=0):
    def check(value, field):
        if not isinstance(value, list):
            raise SchemaError(field, f"must be a list; got {_shown(value)}")
        if not at_least <= len(value) <= limit:
            raise SchemaError(field, f"must hold {at_least} to {limit} items; got {len(value):,}")
        for index, entry in enumerate(value):
            item(entry, f"{field}[{index}]")

    return check


def record(fields, optional_fields=None):
    """A JSON object holding every key of ``fields`` (and maybe those of ``optional_fields``), each checked."""

    def check(value, field):
        if not isinstance(value, dict):
            raise SchemaError(field, f"must be an object; got {_shown(value)}")
        missing = [key for key in fields if key not in value]
        if missing:
            raise SchemaError(field, f"lacks {', '.join(missing)}")
        for key, check_key in {**fields, **(optional_fields or {})}.items():
            if key in value:
                check_key(value[key], f"{field}.{key}" if field else key)

    return check


_FRACTION = number(0.0, 1.0)
_SECONDS = number()

ARM = record(
    {"name": text(), "label": text(), "kind": one_of("fixed", "learned", "raw", "transfer"),
     "scores": list_of(_FRACTION, at_least=1), "mean": _FRACTION, "ci_low": _FRACTION, "ci_high": _FRACTION},
    {"n_features": optional(count), "fit_time": list_of(optional(_SECONDS)),
     "converged": optional(list_of(optional(boolean)))},
)  # fmt: skip

_EVALUATION = {
    "cv": record({"design": one_of("cv"), "n_splits": count, "n_repeats": count, "n_train": count,
                  "n_test": count, "interval": text(MAX_SENTENCE)}),
    "holdout": record({"design": one_of("holdout"), "n_seeds": count, "n_train": count, "n_test": count,
                       "interval": text(MAX_SENTENCE)}),
}  # fmt: skip


def _evaluation(value, field):
    design = value.get("design") if isinstance(value, dict) else None
    _EVALUATION.get(design, record({"design": one_of(*_EVALUATION)}))(value, field)


# What the comparison and the study sentence read (the keys a results.json must hold).
RESULTS = record(
    {"dataset": text(), "n_samples": count, "n_classes": count, "image_shape": list_of(count, limit=4, at_least=1),
     "classifier": text(), "evaluation": _evaluation,
     "learned_training": record({"device": text(), "augmentation": text()}),
     "margin": _FRACTION, "arms": list_of(ARM, at_least=1), "reference": text(), "best_fixed": text(),
     "baseline": optional(record({"label": text(), "accuracy": _FRACTION, "floor": _FRACTION, "reached": boolean})),
     "verdicts": list_of(record({"claim": text(MAX_SENTENCE), "verdict": text(), "sentence": text(MAX_SENTENCE)})),
     "elapsed_s": _SECONDS},
)  # fmt: skip


def check_results(results):
    """Check a results dict read from JSON against :data:`RESULTS` and its cross-references.

    Raises
    ------
    SchemaError
        Naming the first field that breaks the schema.
    """
    RESULTS(results, "")
    names = {arm["name"] for arm in results["arms"]}
    for key in ("reference", "best_fixed"):
        if results[key] not in names:
            raise SchemaError(key, f"must name one of the arms; got {_shown(results[key])}")
