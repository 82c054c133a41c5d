"""Write a study's results to a folder: JSON, CSV, Markdown and one HTML page.

:func:`write_report` takes the ``results`` dict and the ``extras`` arrays of
``skconvfeat.study.run_study`` (see ``docs/results-schema.md``) and writes

* ``results.json`` -- the dict itself (non-finite floats become ``null``);
* ``results.csv`` -- one row per arm per split (tidy, for pandas or R);
* ``transfer.json`` and ``transfer.csv`` -- the transfer experiment's own
  results (:func:`skconvfeat.study.run_transfer`), and one row per transfer
  arm, training-set size and repeat, only when that experiment ran;
* ``summary.md`` -- table, comparisons, transfer, verdicts and skipped arms
  (the document of ``._document``, as the command line prints it);
* ``report.html`` -- one self-contained page: the same text plus figures
  embedded as base64 SVG, no scripts and no external URLs, so it can be
  mailed or attached to a CI run and opened offline.

The whole folder is written as a temporary sibling folder and swapped in
whole (the old folder renamed aside, the new one renamed into place, the old
one removed), so an interruption or an error never leaves files of two runs
together: ``out_dir`` holds either the earlier report or the new one. The data
files are written before the HTML is rendered: when rendering fails (e.g. no
matplotlib), the folder is swapped in without ``report.html`` before the
error is raised, so a long study's numbers are never lost.
"""

import base64
import csv
import html
import io
import json
import math
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from ._document import study_document, to_markdown

__all__ = ["REPORT_FILES", "SCHEMA_VERSION", "check_out_dir", "document_page", "html_caveats", "html_figure", "html_page",
           "new_figure", "write_folder", "write_report"]

# Figures are SVG, sharp at any zoom (a projector, a slide). Raster parts (kernels,
# feature maps, the confusion matrix) are embedded at their own pixel size and drawn unsmoothed; this
# resolution only sets the pixel size of the figures' layout computations.
_DPI = 100
# Arm labels wrap onto lines of at most this many characters beside a figure's
# rows, and every row is tall enough for its lines: labels never overlap.
_LABEL_WIDTH = 26
# Width of the per-arm figures (accuracy, time) on a study's own page.
_PAGE_INCHES = 7.5
# One colour per arm kind, shared by every per-arm figure so they read together.
_KIND_COLOURS = {"fixed": "C0", "learned": "C3", "raw": "C7", "transfer": "C2"}
# Rows of kernels or feature maps beyond this many images get too small to see.
_MAX_IMAGES_PER_ROW = 16
# Above this many classes the numbers in the confusion matrix overlap, and
# above the second every class name no longer fits along its axes.
_MAX_ANNOTATED_CLASSES = 15
_MAX_LABELLED_CLASSES = 30
_KNOWN_VERDICTS = ("supported", "refuted", "inconclusive")

_RESULTS_CSV_HEADER = ("arm", "label", "kind", "split", "accuracy", "fit_time", "transform_time")
_TRANSFER_CSV_HEADER = ("arm", "label", "train_size", "repeat", "accuracy", "fit_time")


# Every file a report folder may hold: a folder holding anything else is not
# replaced, so a mistyped report folder (".", a home folder) never loses other files.
REPORT_FILES = ("results.json", "results.csv", "transfer.json", "transfer.csv", "summary.md", "report.html")
# Version of the layout of results.json, written into it as "schema_version".
# Raise it when a key that readers (``skconvfeat report``) use changes meaning
# or goes away; readers refuse other versions rather than misread them.
SCHEMA_VERSION = 1


def check_out_dir(out_dir, files=REPORT_FILES):
    """Raise OSError unless ``out_dir`` can receive a report, without creating anything.

    It must be a new folder whose nearest existing parent is a writable
    folder, or an existing folder in a writable parent holding only ``files``
    of an earlier report (it is swapped out whole).

    Parameters
    ----------
    out_dir : str or os.PathLike
    files : tuple of str, default=REPORT_FILES
        The names an earlier report of this kind may have left there.

    A symlink is followed: the report is written through it, into the folder
    it points to, and the link stays a link.

    Returns
    -------
    out_dir : pathlib.Path
        The absolute path (the link's target when ``out_dir`` is a symlink).
    """
    out_dir = _followed(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise NotADirectoryError(f"{out_dir} is a file, not a folder")
        others = sorted(path.name for path in out_dir.iterdir() if path.name not in files)
        if others:
            raise FileExistsError(
                f"{out_dir} holds files that are not part of a report ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}); give a new or empty folder"
            )
    parent = out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{parent} is a file, so {out_dir} cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot create or replace {out_dir}: {parent} is not writable")
    return out_dir


def write_report(results, extras, out_dir, *, transfer=None):
    """Write the results of a study and its report into the folder ``out_dir``.

    Parameters
    ----------
    results : dict
        The JSON-serialisable results of :func:`skconvfeat.study.run_study`,
        as described in ``docs/results-schema.md``.
    extras : dict
        The arrays that travel beside ``results`` (filter banks, learned
        kernels, sample image, feature maps, confusion matrix). Missing
        entries only drop the figures that need them.
    out_dir : str or os.PathLike
        The report folder; created with its parents if needed. An earlier
        report there is replaced whole; a folder holding other files is
        refused (see :func:`check_out_dir`).
    transfer : dict, default=None
        The results of :func:`skconvfeat.study.run_transfer`, written to
        ``transfer.json`` and ``transfer.csv`` and shown in the summary and
        the page; ``None`` when it did not run.

    Returns
    -------
    paths : dict of str to pathlib.Path
        The files written, keyed by file name.

    Raises
    ------
    OSError
        If ``out_dir`` cannot receive a report; nothing is written.
    ImportError
        If matplotlib is not installed. The folder then holds the data
        files and ``summary.md`` of this study, and no ``report.html``.

    Examples
    --------
    >>> from skconvfeat.study import write_report
    >>> results, extras = ..., ...  # from skconvfeat.study.run_study  # doctest: +SKIP
    >>> write_report(results, extras, "digits-report")["report.html"]  # doctest: +SKIP
    PosixPath('digits-report/report.html')
    """
    out_dir = check_out_dir(out_dir)
    # The numbers are complete once results.json is there: keep them when only the page failed.
    names = write_folder(out_dir, lambda folder: _write_files(results, extras, transfer, folder),
                         keep_partial=lambda folder: (folder / "results.json").exists())
    return {name: out_dir / name for name in names}


def write_folder(out_dir, write, keep_partial=lambda folder: False):
    """Call ``write(folder)`` on a temporary sibling of ``out_dir``, then swap it in whole; return its result.

    When ``write`` fails, ``out_dir`` is left as it was, unless
    ``keep_partial(folder)`` says the part written is worth keeping; that part
    is then swapped in before the error goes on. An interruption
    (``KeyboardInterrupt``, ``SystemExit``) always leaves ``out_dir`` as it was:
    the user stopped the run, so a complete earlier report is not traded for a
    partial one. A run killed outright (SIGKILL, or SIGTERM, whose default
    skips Python's cleanup) leaves hidden siblings, ``.OUT.new-*`` and
    ``.OUT.old-*``; the next write to ``out_dir`` removes them, putting back first
    an earlier report that was renamed aside when the run died. A symlink
    ``out_dir`` is written through (see :func:`check_out_dir`).
    """
    out_dir = _followed(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _clear_debris(out_dir)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f"{_debris_prefix(out_dir)}new-"))
    try:
        try:
            written = write(staging)
        except Exception:
            if keep_partial(staging):
                _swap_in(staging, out_dir)
            raise
        _swap_in(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone once swapped in
    return written


def _write_files(results, extras, transfer, folder):
    """Write every file of the report into ``folder``: data files first, then the page."""
    document = study_document(results, transfer)
    texts = {
        "results.json": _json_text({"schema_version": SCHEMA_VERSION, **results}),
        "results.csv": _results_csv(results),
        "summary.md": to_markdown(document),
    }
    if transfer is not None:
        texts["transfer.json"] = _json_text({"schema_version": SCHEMA_VERSION, **transfer})
        if not transfer.get("skipped"):
            texts["transfer.csv"] = _transfer_csv(transfer)
    # results.json last: its presence says the data files are complete.
    for name in sorted(texts, key=lambda name: name == "results.json"):
        write_text(folder / name, texts[name])
    write_text(folder / "report.html", _report_html(results, extras, transfer, document))
    return [*texts, "report.html"]


def _json_text(value):
    """Strict JSON (non-finite floats as null), indented, with a final line end."""
    return json.dumps(_strict_json(value), indent=2, allow_nan=False) + "\n"


def _swap_in(staging, out_dir):
    """Replace ``out_dir`` by the folder ``staging`` (a sibling), never mixing the two.

    A folder cannot be ``os.replace``-d over a non-empty one, so the old one is
    renamed aside first; an interruption between the two renames leaves the
    old report in the ``.old-`` folder and the new one in ``staging``.
    """
    os.chmod(staging, 0o755)  # mkdtemp makes it private; a report is meant to be shared
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f"{_debris_prefix(out_dir)}old-"))
    try:
        os.rename(out_dir, old / out_dir.name)
        try:
            os.rename(staging, out_dir)
        except BaseException:
            os.rename(old / out_dir.name, out_dir)  # put the earlier report back
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _debris_prefix(out_dir):  # one spelling for the hidden siblings made and cleared
    return f".{out_dir.name}."


def _clear_debris(out_dir):
    """Remove the hidden siblings a killed write left; first put back an earlier report left aside.

    A run killed between :func:`_swap_in`'s two renames leaves no ``out_dir``
    and the earlier report in ``.OUT.old-*/OUT``: that one is restored, so a
    failure of this run cannot lose it.
    """
    prefix = _debris_prefix(out_dir)
    debris = [path for path in out_dir.parent.iterdir()
              if path.name.startswith((f"{prefix}new-", f"{prefix}old-")) and path.is_dir() and not path.is_symlink()]
    for path in debris:
        aside = path / out_dir.name
        if path.name.startswith(f"{prefix}old-") and aside.is_dir() and not out_dir.exists():
            os.rename(aside, out_dir)
        shutil.rmtree(path, ignore_errors=True)


def _followed(out_dir):
    """``out_dir`` as an absolute path, a symlink replaced by the folder it points to."""
    out_dir = Path(out_dir).absolute()
    if not out_dir.is_symlink():
        return out_dir
    try:
        return out_dir.resolve(strict=False)
    except RuntimeError as exc:  # a loop of links (Python < 3.13; later versions raise OSError)
        raise OSError(f"{out_dir} is a loop of symbolic links") from exc


# --------------------------------------------------------------------------- files


def write_text(path, text):
    """Write ``text`` to ``path`` with "\n" line ends, readable by everyone."""
    # newline="" keeps the "\n" the writers chose on every platform.
    with open(path, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    os.chmod(path, 0o644)
    return path


def _strict_json(value):
    """Return ``value`` with NaN and infinities replaced by ``None``.

    ``json.dumps`` would write them as the bare words ``NaN``/``Infinity``,
    which strict parsers (browsers, ``jq``) reject; a p-value is NaN when two
    arms score identically on every split.
    """
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_text(header, rows):
    """Render ``rows`` under ``header`` as CSV text with "\\n" line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _results_csv(results):
    """One row per arm and split; an empty cell where a time was not measured."""
    rows = []
    for arm in results["arms"]:
        n_splits = len(arm["scores"])
        fit_times = arm.get("fit_time") or [None] * n_splits
        transform_times = arm.get("transform_time") or [None] * n_splits
        for split, (score, fit, transform) in enumerate(zip(arm["scores"], fit_times, transform_times)):
            rows.append((arm["name"], arm["label"], arm["kind"], split, score, _blank(fit), _blank(transform)))
    return _csv_text(_RESULTS_CSV_HEADER, rows)


def _transfer_csv(transfer):
    """One row per transfer arm, training-set size and repeat."""
    rows = []
    for name, arm in transfer["arms"].items():
        fit_times = arm.get("fit_time") or [[None] * len(scores) for scores in arm["scores"]]
        for size, scores, fits in zip(transfer["train_sizes"], arm["scores"], fit_times):
            for repeat, (score, fit) in enumerate(zip(scores, fits)):
                rows.append((name, arm.get("label", name), size, repeat, score, _blank(fit)))
    return _csv_text(_TRANSFER_CSV_HEADER, rows)


def _blank(value):
    """CSV has no null: write a missing number as an empty cell."""
    return "" if value is None else value


# --------------------------------------------------------------------------- figures


def new_figure(width, height, layout="constrained", **subplots):
    """Return a matplotlib figure and its axes, without touching pyplot.

    A bare :class:`matplotlib.figure.Figure` renders through the canvas of
    the format it is saved in (SVG here), so no display is needed and the backend of the
    caller's session (a notebook, a GUI) is left as it was -- unlike
    ``matplotlib.use("Agg")``. Nothing is registered with pyplot either, so
    the figures are freed with their last reference. ``subplots`` go to
    :meth:`~matplotlib.figure.Figure.subplots`.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("the report needs matplotlib: pip install 'skconvfeat[report]'") from exc
    figure = Figure(figsize=(width, height), dpi=_DPI, layout=layout)
    return figure, figure.subplots(squeeze=False, **subplots)


def _data_uri(figure):
    """Encode ``figure`` as a ``data:image/svg+xml;base64,...`` URI.

    An ``<img>`` rather than inline ``<svg>``: each figure's element ids
    (markers, glyphs, clip paths) stay private to it, where inline figures
    could collide. Text is drawn as paths, so labels look as laid out
    whatever fonts the reader's browser has.
    """
    import matplotlib

    buffer = io.BytesIO()
    # A fixed salt: the same study gives the same file, byte for byte.
    with matplotlib.rc_context({"svg.hashsalt": "skconvfeat", "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _arm_colours(arms):
    return [_KIND_COLOURS.get(arm["kind"], "C1") for arm in arms]


def _kind_legend(axes, arms):
    """Add one legend entry per arm kind present, coloured as in the figures, outside the axes."""
    from matplotlib.patches import Patch

    kinds = dict.fromkeys(arm["kind"] for arm in arms)
    axes.legend(handles=[Patch(color=_KIND_COLOURS.get(kind, "C1"), label=kind) for kind in kinds], fontsize=8,
                loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _wrap(label, width=_LABEL_WIDTH):
    """``label`` broken into lines of at most ``width`` characters (its own line breaks kept), as plain text.

    Every label drawn passes here: a ``$`` is escaped, since matplotlib reads
    the text between two as mathtext (a label read from a foreign file could
    otherwise render as formulas, or fail to parse and take the figure down).
    """
    lines = (textwrap.fill(line, width) or line for line in str(label).split("\n"))
    return "\n".join(lines).replace("$", r"\$")


def _arm_rows(arms, width):
    """A figure with one row per arm, its wrapped label beside it, first arm on top.

    Every row is as tall as the label with the most lines needs, so labels
    cannot overlap however many arms there are.

    Returns
    -------
    figure, axes, positions
        ``positions[i]`` is the y of ``arms[i]``.
    """
    labels = [_wrap(arm["label"]) for arm in arms]
    lines = max(label.count("\n") + 1 for label in labels)
    figure, axes = new_figure(width, 1.1 + len(arms) * (0.12 + 0.15 * lines))
    axes = axes[0, 0]
    positions = np.arange(len(arms))[::-1]
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_ylim(-0.6, len(arms) - 0.4)
    return figure, axes, positions


def figure_accuracy(results, width=_PAGE_INCHES):
    """Accuracy of every arm: mean with its 95% CI, and the per-split scores; ``width`` in inches."""
    arms = results["arms"]
    figure, axes, positions = _arm_rows(arms, width)
    means = np.array([arm["mean"] for arm in arms])
    errors = np.array([[arm["mean"] - arm["ci_low"], arm["ci_high"] - arm["mean"]] for arm in arms]).T
    for position, arm, colour in zip(positions, arms, _arm_colours(arms)):
        # Split scores jittered vertically so overlapping points stay visible.
        jitter = np.linspace(-0.15, 0.15, len(arm["scores"]))
        axes.scatter(arm["scores"], position + jitter, s=10, color=colour, alpha=0.5, linewidths=0)
    axes.errorbar(means, positions, xerr=errors, fmt="none", ecolor="black", capsize=3)
    axes.scatter(means, positions, c=_arm_colours(arms), s=30, zorder=3, edgecolors="black", linewidths=0.5)
    axes.set_xlabel("accuracy (mean, 95% CI; dots: single splits or seeds)")
    axes.grid(axis="x", alpha=0.3)
    _kind_legend(axes, arms)
    return figure


def _figure_transfer(transfer):
    """Accuracy against training-set size for each transfer arm, mean and 95% CI over repeats."""
    figure, axes = new_figure(6.0, 3.6)
    axes = axes[0, 0]
    sizes = np.asarray(transfer["train_sizes"])
    for name, arm in transfer["arms"].items():
        (line,) = axes.plot(sizes, arm["mean"], marker="o", label=_wrap(arm.get("label", name)))
        axes.fill_between(sizes, arm["ci_low"], arm["ci_high"], color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_xscale("log")
    axes.set_xticks(sizes, [str(size) for size in sizes])
    axes.minorticks_off()
    axes.set_xlabel("training images of the target classes")
    axes.set_ylabel("accuracy")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def _figure_time(results):
    """Mean fit time of every arm (log scale), the range over splits or seeds as a line, rows as in accuracy."""
    arms = [arm for arm in results["arms"] if any(t is not None for t in arm.get("fit_time") or ())]
    if not arms:
        return None
    figure, axes, positions = _arm_rows(arms, _PAGE_INCHES)
    times = [np.array([t for t in arm["fit_time"] if t is not None]) for arm in arms]
    axes.hlines(positions, [t.min() for t in times], [t.max() for t in times], color="grey", linewidth=1)
    axes.scatter([t.mean() for t in times], positions, c=_arm_colours(arms), s=30, zorder=3, edgecolors="black",
                 linewidths=0.5)
    axes.set_xscale("log")
    axes.set_xlabel("fit time per split or seed (s, log scale; dot: mean, line: range)")
    axes.grid(axis="x", alpha=0.3)
    _kind_legend(axes, arms)
    return figure


def _figure_image_rows(rows):
    """Draw labelled rows of small images, each normalised on its own.

    Parameters
    ----------
    rows : list of (str, list of ndarray, str)
        Row label, images (``(h, w)`` or ``(h, w, 3)``) and how to scale
        them: ``"signed"`` maps zero to white (kernels, whose sign
        matters), ``"grey"`` stretches each image to its own range.

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    n_columns = max(len(images) for _, images, _ in rows)
    width, height, label_width = 0.55 * n_columns + 1.6, 0.7 * len(rows) + 0.2, 1.5
    # A fixed layout: constrained layout takes most of a second on ~80 image axes.
    margins = {"left": label_width / width, "right": 0.99, "bottom": 0.1 / height, "top": 1 - 0.1 / height}
    figure, axes = new_figure(
        width, height, layout=None, nrows=len(rows), ncols=n_columns, gridspec_kw={**margins, "wspace": 0.1, "hspace": 0.15}
    )
    for row_axes, (label, images, scaling) in zip(axes, rows):
        for column, ax in enumerate(row_axes):
            ax.set_xticks([])
            ax.set_yticks([])
            if column >= len(images):
                ax.set_axis_off()
                continue
            image, style = _scaled_image(images[column], scaling)
            ax.imshow(image, interpolation="none", **style)
        row_axes[0].set_ylabel(_wrap(label, 20), rotation=0, ha="right", va="center", fontsize=7)
    return figure


def _scaled_image(image, scaling):
    """Return ``image`` ready for ``imshow`` and the keyword arguments to draw it with."""
    image = np.asarray(image, dtype=float)
    if image.ndim == 3:
        # Colour images: stretch to [0, 1] as a whole so hues keep their balance.
        low, high = image.min(), image.max()
        return ((image - low) / (high - low) if high > low else np.zeros_like(image)), {}
    if scaling == "signed":
        bound = np.abs(image).max() or 1.0
        return image, {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound}
    return image, {"cmap": "gray"}


def _kernel_images(kernels):
    """Turn kernels ``(F, C, kh, kw)`` into at most a row of displayable images.

    Three-channel kernels are shown in colour; other channel counts as their
    channel mean, which is what a flat (grey) input sees.
    """
    kernels = np.asarray(kernels, dtype=float)[:_MAX_IMAGES_PER_ROW]
    if kernels.shape[1] == 3:
        return list(np.moveaxis(kernels, 1, -1))
    return list(kernels.mean(axis=1))


def _row_label(label, total):
    """Label a row, saying when only the first images of it are shown."""
    shown = min(total, _MAX_IMAGES_PER_ROW)
    return f"{label}\n({total})" if shown == total else f"{label}\n(first {shown} of {total})"


def _figure_filters(extras):
    """Each fixed bank's kernels (the learned ones have a figure of their own)."""
    banks = extras.get("banks") or {}
    if not banks:
        return None
    return _figure_image_rows(
        [(_row_label(label, len(kernels)), _kernel_images(kernels), "signed") for label, kernels in banks.items()]
    )


def _figure_feature_maps(extras):
    """The sample image, then its feature maps through each fixed bank."""
    maps = extras.get("feature_maps") or {}
    image = extras.get("sample_image")
    if image is None or not maps:
        return None
    image = np.asarray(image)
    # A single channel is shown as a plain grey image.
    rows = [("Input image", [image[..., 0] if image.shape[-1] == 1 else image], "grey")]
    for label, stack in maps.items():
        rows.append((_row_label(label, len(stack)), list(stack[:_MAX_IMAGES_PER_ROW]), "grey"))
    return _figure_image_rows(rows)


def _figure_confusion(extras):
    """Confusion matrix of the best fixed arm, counts written in the cells."""
    confusion = extras.get("confusion")
    if not confusion:
        return None
    matrix = np.asarray(confusion["matrix"])
    labels = [_wrap(label) for label in confusion["labels"]]  # class names: a folder's, maybe
    # Capped: CIFAR-100 would otherwise give a 36-inch figure.
    size = min(1.2 + 0.35 * len(labels), 7.0)
    figure, axes = new_figure(size + 0.8, size)
    axes = axes[0, 0]
    image = axes.imshow(matrix, cmap="Blues", interpolation="none")
    figure.colorbar(image, ax=axes, shrink=0.8)
    if len(labels) <= _MAX_LABELLED_CLASSES:
        ticks = np.arange(len(labels))
        axes.set_xticks(ticks, labels, fontsize=7)
        axes.set_yticks(ticks, labels, fontsize=7)
    # With too many classes the default ticks count classes in label order.
    axes.set_xlabel("predicted" if len(labels) <= _MAX_LABELLED_CLASSES else "predicted (class index)")
    axes.set_ylabel("true" if len(labels) <= _MAX_LABELLED_CLASSES else "true (class index)")
    axes.set_title(_wrap(confusion["arm"]), fontsize=9)
    if len(labels) <= _MAX_ANNOTATED_CLASSES:
        threshold = matrix.max() / 2
        for (row, column), count in np.ndenumerate(matrix):
            colour = "white" if count > threshold else "black"
            axes.text(column, row, f"{count:g}", ha="center", va="center", fontsize=6, color=colour)
    return figure


def _relative_change(before, after):
    """``||after - before|| / ||before||`` (Frobenius norms over every kernel), or None when ``before`` is zero."""
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    norm = np.linalg.norm(before)
    return float(np.linalg.norm(after - before) / norm) if norm > 0 else None


def _figure_learned_kernels(extras):
    """The learned arm's first-layer kernels before and after training, and their difference.

    All three rows share one symmetric colour scale (zero is white, or grey
    for colour kernels), so a kernel that moved shows it: scaling each image
    on its own made kernels that moved by a third look identical. Under each
    difference: that kernel's relative change.
    """
    before, after = extras.get("learned_before"), extras.get("learned_after")
    if before is None or after is None:
        return None
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    rows = [_kernel_images(before), _kernel_images(after), _kernel_images(after - before)]
    bound = max(np.abs(image).max() for row in rows for image in row) or 1.0
    n_columns = len(rows[0])
    width, height = 0.6 * n_columns + 2.6, 3 * 0.75 + 0.9
    margins = {"left": 1.3 / width, "right": 1 - 1.1 / width, "bottom": 0.35 / height, "top": 1 - 0.55 / height}
    figure, axes = new_figure(width, height, layout=None, nrows=3, ncols=n_columns,
                               gridspec_kw={**margins, "wspace": 0.1, "hspace": 0.35})
    colour = rows[0][0].ndim == 3
    for row_axes, images, label in zip(axes, rows, ("before", "after", "after - before")):
        for ax, image in zip(row_axes, images):
            ax.set_xticks([])
            ax.set_yticks([])
            if colour:  # one scale for the three channels: grey is zero
                drawn = ax.imshow(np.clip(0.5 + 0.5 * image / bound, 0, 1), interpolation="none")
            else:
                drawn = ax.imshow(image, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="none")
        row_axes[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    for ax, kernel_before, kernel_after in zip(axes[2], before, after):
        change = _relative_change(kernel_before, kernel_after)
        ax.set_xlabel("n/a" if change is None else f"{change:.0%}", fontsize=7)
    if not colour:
        bottom, top = margins["bottom"], margins["top"]
        colorbar_axes = figure.add_axes((1 - 0.9 / width, bottom, 0.12 / width, top - bottom))
        figure.colorbar(drawn, cax=colorbar_axes).ax.tick_params(labelsize=7)
    change = _relative_change(before, after)
    shown = "" if n_columns == len(before) else f", first {n_columns} of {len(before)} shown"
    figure.suptitle(f"{extras.get('learned_arm') or 'Learned arm'}: ||after - before|| / ||before|| = "
                    f"{'n/a' if change is None else f'{change:.1%}'} (all {len(before)} kernels{shown})", fontsize=9)
    return figure


def _figure_learning_curves(extras):
    """Training and validation loss, and validation accuracy, per epoch of every arm trained in PyTorch."""
    curves = {label: history for label, history in (extras.get("learning_curves") or {}).items() if history}
    if not curves:
        return None
    figure, axes = new_figure(9.0, 3.6, ncols=2)
    loss_axes, accuracy_axes = axes[0]
    for index, (label, history) in enumerate(curves.items()):
        colour = f"C{index % 10}"
        epochs = [entry["epoch"] for entry in history]
        loss_axes.plot(epochs, [entry["train_loss"] for entry in history], color=colour, label=_wrap(label))
        valid = [(entry["epoch"], entry["valid_loss"], entry["valid_accuracy"]) for entry in history
                 if entry.get("valid_accuracy") is not None]
        if valid:
            epoch, loss, accuracy = map(list, zip(*valid))
            loss_axes.plot(epoch, loss, color=colour, linestyle="--")
            accuracy_axes.plot(epoch, accuracy, color=colour, marker=".", label=_wrap(label))
            # Early stopping keeps the weights of the best validation epoch (the first, on ties).
            best = int(np.argmax(accuracy))
            accuracy_axes.scatter([epoch[best]], [accuracy[best]], s=60, facecolors="none", edgecolors=colour,
                                  zorder=3)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("cross-entropy (solid: training, dashed: validation)", fontsize=8)
    loss_axes.set_yscale("log")
    accuracy_axes.set_xlabel("epoch")
    accuracy_axes.set_ylabel("validation accuracy (circle: epoch kept)", fontsize=8)
    for ax in (loss_axes, accuracy_axes):
        ax.grid(alpha=0.3)
    figure.legend(*loss_axes.get_legend_handles_labels(), loc="outside lower center", ncols=min(len(curves), 3),
                  fontsize=8)
    return figure


def _figure_per_class(extras):
    """Per-class accuracy (recall) of the reference and the best fixed arm, grouped bars by class."""
    per_class = extras.get("per_class")
    if not per_class or not per_class.get("accuracy"):
        return None
    labels = [_wrap(label) for label in per_class["labels"]]
    arms = per_class["accuracy"]
    width = min(max(4.0, 1.5 + 0.45 * len(labels)), 12.0)
    figure, axes = new_figure(width, 3.6)
    axes = axes[0, 0]
    positions = np.arange(len(labels))
    bar = 0.8 / len(arms)
    for index, (label, accuracy) in enumerate(arms.items()):
        axes.bar(positions - 0.4 + bar * (index + 0.5), accuracy, width=bar, color=f"C{index}", label=_wrap(label, 40))
    if len(labels) <= _MAX_LABELLED_CLASSES:
        long_names = max(len(label) for label in labels) > 3
        axes.set_xticks(positions, labels, fontsize=7, rotation=45 if long_names else 0,
                        ha="right" if long_names else "center")
        axes.set_xlabel("class")
    else:
        axes.set_xlabel("class (index)")
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy on the class's test images")
    axes.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=len(arms), fontsize=8)
    return figure


# --------------------------------------------------------------------------- HTML

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; }
figure { margin: 1em 0; }
figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; }
.supported { color: #1a7f37; font-weight: bold; }
.refuted { color: #cf222e; font-weight: bold; }
.inconclusive { color: #9a6700; font-weight: bold; }
"""


def html_table(header, rows):
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_section(section_id, title, body):
    return f'<section id="{section_id}"><h2>{html.escape(title)}</h2>{body}</section>'


def html_figure(section_id, title, caption, figure):
    """A section holding ``figure`` as an embedded SVG image, or a note when there is none."""
    if figure is None:
        body = "<p>Not available for this study.</p>"
    else:
        body = (
            f'<figure><img src="{_data_uri(figure)}" alt="{html.escape(title)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return html_section(section_id, title, body)


def verdict_class(word):
    """The CSS class of a verdict word: the word itself when it is one we style, else none."""
    return word if word in _KNOWN_VERDICTS else ""


def _html_item(lead, word, text):
    """One verdict (claim, styled verdict word, sentence) or one skipped arm (name, None, reason)."""
    if word is None:
        return f"<li>{html.escape(lead)}: {html.escape(text)}</li>"
    return (f"<li><strong>{html.escape(lead)}</strong>: "
            f'<span class="{verdict_class(word)}">{html.escape(word)}</span>. {html.escape(text)}</li>')


def html_verdicts(results):
    """A study's verdicts as a list (the comparison page shows them per study)."""
    items = [_html_item(v["claim"], v["verdict"], v["sentence"]) for v in results.get("verdicts", [])]
    return f"<ul>{''.join(items)}</ul>" if items else "<p>No verdicts.</p>"


def _html_document_section(section):
    """A section of the document model (``._document``) in HTML."""
    body = ""
    if section.table is not None:
        body += html_table(section.table.header, section.table.rows)
    if section.note:
        body += f"<p>{html.escape(section.note)}</p>"
    if section.items:
        body += f"<ul>{''.join(_html_item(*item) for item in section.items)}</ul>"
    return html_section(section.key, section.title, body)


def _html_versions(results):
    return html_table(("Package / machine", "Version"), list((results.get("versions") or {}).items()))


def _learned_caption(extras):
    before, after = extras.get("learned_before"), extras.get("learned_after")
    change = None if before is None or after is None else _relative_change(before, after)
    moved = "" if change is None else f" The kernels moved by {change:.1%} of their initial norm."
    return ("First-layer kernels at initialisation, after training, and the difference, all on one colour scale "
            "symmetric about zero (grey input: channel mean; three channels: in colour, grey is zero); under each "
            f"difference, that kernel's ||after - before|| / ||before||.{moved}")


def _report_html(results, extras, transfer, document):
    """Render the whole report page as one self-contained HTML string: the document, figures beside it."""
    beside = {
        "summary": [
            html_figure(
                "fig-accuracy",
                "Accuracy per arm (figure)",
                f"Mean accuracy with its 95% interval ({results['evaluation']['interval']}); dots: single splits or "
                "seeds.",
                figure_accuracy(results),
            ),
            html_figure(
                "fig-time",
                "Fit time per arm",
                "Fit time of the whole pipeline per split or seed, arms in the order of the accuracy figure.",
                _figure_time(results),
            ),
        ],
    }
    if transfer is not None and not transfer.get("skipped"):
        caption = (
            f"Kernels learned on classes {transfer.get('source_classes')}, then fixed, against training from "
            f"scratch on classes {transfer.get('target_classes')}; mean and 95% CI over repeats."
        )
        beside["transfer"] = [html_figure("fig-transfer", "Data efficiency", caption, _figure_transfer(transfer))]
    after = [
        html_figure(
            "fig-filters",
            "Filters",
            "Kernels of each fixed bank, each scaled on its own: red positive, blue negative "
            "(grey input: channel mean; three channels: shown in colour).",
            _figure_filters(extras),
        ),
        html_figure(
            "fig-learned-kernels",
            "Learned kernels before and after training",
            _learned_caption(extras),
            _figure_learned_kernels(extras),
        ),
        html_figure(
            "fig-curves",
            "Training and validation curves",
            "Every arm trained in PyTorch, on the first split or seed: loss per epoch on its training images and on "
            "its held-out validation images, and validation accuracy; early stopping keeps the circled epoch.",
            _figure_learning_curves(extras),
        ),
        html_figure(
            "fig-feature-maps",
            "Feature maps",
            "One test image through each fixed bank, before pooling; each map scaled on its own.",
            _figure_feature_maps(extras),
        ),
        html_figure(
            "fig-confusion",
            "Confusion matrix of the best fixed arm",
            "The best fixed arm, chosen on held-out training images (the one verdict (b) uses), on the first split "
            "or seed. "
            "Rows: true class; columns: predicted class; cells: counts.",
            _figure_confusion(extras),
        ),
        html_figure(
            "fig-per-class",
            "Per-class accuracy",
            "Fraction of each class's test images classified right, on the first split or seed, by the reference "
            "and the best fixed arm.",
            _figure_per_class(extras),
        ),
        html_section("versions", "Versions", _html_versions(results)),
    ]
    return document_page(document, beside, after)


def document_page(document, beside=None, after=()):
    """A document model (``._document``) as one self-contained HTML page.

    ``beside`` maps a section's key to HTML (figures) shown right after that section; ``after`` is
    HTML shown after the last section.
    """
    sections = []
    for section in document.sections:
        sections += [_html_document_section(section), *(beside or {}).get(section.key, ())]
    body = (html_caveats(document.caveats) + f"<p>{html.escape(document.summary)}</p>" + "".join(sections)
            + "".join(after) + f"<p>{html.escape(document.closing)}</p>")
    return html_page(document.title, body)


def html_page(title, body, css=CSS):
    """A whole HTML page: ``title`` as its title and heading, then ``body``."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{css}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def html_caveats(lines):
    """Caveat lines (``_format.caveats``), each a paragraph styled as a refuted verdict."""
    return "".join(f'<p class="refuted">{html.escape(line)}</p>' for line in lines)
