"""The learning curves as a reader sees them: a document (text, Markdown, HTML) and two figures.

:func:`curve_document` decides what is shown and in which order -- what was run and under which
protocol, accuracy per arm and size, the comparisons at each size, the verdicts naming the sizes at
which they hold -- and :mod:`._document` lays it out, as for the single-size study.
"""

import re

import numpy as np

from . import _format as fmt
from ._curves import CURVE_KINDS
from ._document import Document, Section, Table
from ._environment import environment_text
from ._report import new_figure

__all__ = ["CURVE_FILES", "curve_document", "figure_cost", "figure_curves", "transfer_document", "write_curves"]

# Line style by kind; colour by arm, a kind's own colour for its first arm and the next free one after.
_KIND_STYLE = {"raw": ("C7", ":"), "fixed": ("C0", "-"), "frozen": ("C2", "--"), "learned": ("C3", "-"),
               "preset": ("C1", "-."), "mixing": ("C5", "--")}
_SPARE_COLOURS = ("C0", "C4", "C9", "C8", "C5", "C6", "C1", "C2", "C3", "C7")
# Reference arms without a depth of their own to compare: drawn in every depth's panel.
_REFERENCE_KINDS = ("raw", "preset")


def _percent(value):
    return f"{100 * value:.1f}%"


def _size_key(sizes, size):
    """Sizes are ints in memory and strings once read back from JSON."""
    return size if size in sizes else str(size)


def _accuracy_rows(results):
    rows = []
    for name, arm in results["arms"].items():
        cells = []
        for size in results["sizes"]:
            entry = arm["sizes"].get(_size_key(arm["sizes"], size))
            if entry is None:
                cells.append("-")
                continue
            flag = "" if entry["converged"] else " (not converged)"
            cells.append(f"{_percent(entry['accuracy'])} [{_percent(entry['low'])}, {_percent(entry['high'])}]{flag}")
        rows.append((arm["label"], arm["kind"], *cells))
    return tuple(rows)


def _setting_text(settings):
    return "; ".join(", ".join(f"{k}={v:g}" for k, v in s.items()) for s in settings)


def _settings_rows(results):
    rows = []
    for name, arm in results["arms"].items():
        for size in results["sizes"]:
            entry = arm["sizes"].get(_size_key(arm["sizes"], size))
            if entry is None:
                continue
            steps = [s for s in entry["steps"] if s is not None]
            budget = [b for b in entry["budget_steps"] if b is not None]
            rows.append((arm["label"], f"{size:,}", str(entry["seeds"]), _setting_text(entry["settings"]),
                         f"{entry['at_grid_edge']} of {entry['seeds']}" + _extra_text(entry),
                         f"{int(np.mean(steps)):,} of {int(np.mean(budget)):,}" if steps else "-",
                         f"{entry['fit_wall']:.3g} s / {entry['fit_cpu']:.3g} s"))
    return tuple(rows)


def _extra_text(entry):
    extra = entry.get("extra_candidates", 0)
    return f" ({extra} tried past an end)" if extra else ""


def outcome_cell(c):
    """A comparison's outcome as a table shows it, saying when it rests on an unconverged network."""
    if not c["judged"]:
        return "not judged (a network had not converged)"
    if c.get("a_fortiori"):
        return f"{c['outcome']} (a fortiori: the side ahead had not converged)"
    return c["outcome"]


def _comparison_rows(results):
    """One row per test: a pair that two claims share (e.g. random kernels, also the best fixed arm, against
    the learned network) is one test, counted once by Holm, and shown once."""
    labels = {name: arm["label"] for name, arm in results["arms"].items()}
    rows = {}
    for c in results["comparisons"]:
        rows.setdefault((c["size"], c["arm"], c["reference"]), (
            f"{c['size']:,}", labels[c["arm"]], labels[c["reference"]],
            f"{100 * c['mean_diff']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]",
            f"{c['holm_p']:.2g}", outcome_cell(c)))
    return tuple(rows.values())


def protocol_sentence(results):
    """What every arm went through, in one paragraph."""
    p = results["protocol"]
    seeds = ", ".join(f"{n} at {int(s):,}" for s, n in results["seeds"].items())
    return (f"Every arm trains on the same class-balanced subsets (seeds: {seeds}) and has {p['n_candidates']} "
            f"candidate settings{_growth_clause(results)}, chosen on images held out of its subset: a stratified {p['validation_fraction']:g} "
            f"from {p['cv_below']:,} images on, {p['cv_folds']}-fold cross-validation below (the choice then refitted "
            f"on the whole subset). Networks train with Adam at a constant rate, checked every {p['check_steps']} "
            f"steps, stopping after {p['patience']} checks without a better validation accuracy"
            f"{_improvement_clause(p)}, within a budget of "
            f"max({p['min_budget_steps']:,} steps, {p['min_budget_epochs']} epochs); one that reaches its budget "
            f"still improving is 'not converged': a comparison resting on it is judged only when that network is "
            f"already significantly ahead (more training keeps its best check, so it holds a fortiori), else 'not "
            f"judged'. The official test set is scored once "
            f"per final model: {results['test_evaluations']} test evaluations in all. Protocol {p['digest']}.")


def _growth_clause(results):
    """How far the grids may grow past their ends (absent from results of fixed grids: nothing)."""
    extensions = results["protocol"].get("grid_extensions", 0)
    if not extensions:
        return ""
    return (f" and up to {extensions} more, one step past an end of its grid at a time while the end wins "
            f"(the same rule for every grid; {results.get('extra_candidates', 0)} extra candidates tried in all)")


def _improvement_clause(protocol):
    """How much better "better" is (absent from results recorded before the rule existed: any rise)."""
    points = 100 * protocol.get("min_improvement", 0.0)
    return f" (better by more than {points:g} points)" if points else ""


def curve_document(results, title):
    """The document of :func:`~skconvfeat.study.run_curves`'s ``results``."""
    sizes = [f"{int(s):,}" for s in results["sizes"]]
    kinds = "; ".join(f"{kind}: {text}" for kind, text in CURVE_KINDS.items())
    sections = (
        Section("curves", "Test accuracy per arm and training-set size (95% CI)",
                Table(("Arm", "Kind", *sizes), _accuracy_rows(results)), note=kinds),
        Section("comparisons", "Comparisons at each size: paired test over the test images, Holm-adjusted per size; "
                f"'equivalent' means within ±{100 * results['margin']:g} points, even when significant",
                Table(("Images", "Arm", "Reference", "Difference, points (95% CI)", "Holm p", "Outcome"),
                      _comparison_rows(results))),
        Section("settings", "Settings chosen on validation, training steps and cost",
                Table(("Arm", "Images", "Seeds", "Chosen settings (per seed)", "At a grid edge", "Steps to the best check, of budget",
                       "Fit wall / CPU (mean)"), _settings_rows(results))),
        Section("verdicts", "Verdicts, by data size",
                items=tuple((f"({v['claim']})", None, v["text"]) for v in results["verdicts"])),
    )
    unconverged = [f"{arm['label']} at {int(s):,}" for arm in results["arms"].values()
                   for s, e in arm["sizes"].items() if not e["converged"]]
    caveats = tuple(f"NOTE: not converged within its budget: {name}." for name in unconverged) + _refit_caveats(results)
    return Document(title=title, caveats=caveats, summary=protocol_sentence(results), sections=sections,
                    closing=_cost_sentence(results))


def transfer_document(results, title):
    """The document of :func:`~skconvfeat.study.run_transfer_pair`'s ``results`` (claim (c) across datasets)."""
    sizes = [f"{int(s):,}" for s in results["sizes"]]
    pair = results.get("pair") or {}
    sections = (
        Section("sources", f"Source networks ({results['depth']} layers, trained end to end on the source)",
                Table(("Seed", "Images", "Chosen setting", "Validation", "Converged", "Steps to the best check, of "
                       "budget", "Fit wall", "Source test accuracy"), _source_rows(results["sources"]))),
        Section("curves", "Target test accuracy per arm and training-set size (95% CI)",
                Table(("Arm", "Kind", *sizes), _accuracy_rows(results))),
        Section("comparisons", "Transferred frozen kernels minus each reference: paired test over the test images "
                "(decides the outcome) and exact sign-flip test over seeds, each Holm-adjusted per size; "
                f"'equivalent' means within ±{100 * results['margin']:g} points",
                Table(("Images", "Reference", "Difference, points (95% CI)", "Holm p (images)",
                       "Sign-flip Holm p over seeds (least possible)", "Seeds +/-", "Outcome"),
                      _transfer_comparison_rows(results))),
        Section("times", "Fit time saved by reusing frozen kernels (wall, mean per model)",
                Table(("Images", "Frozen transferred", "Saved vs fine-tuned", "Saved vs scratch"),
                      _saved_rows(results["times"])),
                note=f"{results['times']['note']} Source fit: {fmt.duration(results['times']['source_fit_mean']['fit_wall'])} "
                     "a network (wall, mean)."),
        Section("settings", "Settings chosen on validation, training steps and cost",
                Table(("Arm", "Images", "Seeds", "Chosen settings (per seed)", "At a grid edge",
                       "Steps to the best check, of budget", "Fit wall / CPU (mean)"), _settings_rows(results))),
        Section("verdicts", "Verdict", items=(("(c)", None, results["verdict"]["text"]),)),
    )
    caveats = tuple(f"NOTE: not converged within its budget: {arm['label']} at {int(s):,}."
                    for arm in results["arms"].values() for s, e in arm["sizes"].items() if not e["converged"])
    caveats += _refit_caveats(results)
    summary = f"{pair.get('description', 'Transfer')}. " + protocol_sentence(results)
    return Document(title=title, caveats=caveats, summary=summary, sections=sections, closing=_cost_sentence(results))


def _refit_caveats(results):
    """One line per refitted network that diverged and was replaced (see ``refit_network``)."""
    return tuple(f"NOTE: refit replaced: {arm['label']} at {int(s):,} images, {note}."
                 for arm in results["arms"].values() for s, e in arm["sizes"].items() for note in e.get("refits", ()))


def _source_rows(sources):
    return tuple((str(s["seed"]), f"{s['size']:,}", _setting_text([s["setting"]]), _percent(s["validation_accuracy"]),
                  "yes" if s["converged"] else "no (budget reached)", f"{s['steps']:,} of {s['budget_steps']:,}",
                  fmt.duration(s["fit_wall"]), "-" if s.get("test_accuracy") is None else _percent(s["test_accuracy"]))
                 for s in sources)


def _transfer_comparison_rows(results):
    labels = {name: arm["label"] for name, arm in results["arms"].items()}
    return tuple((f"{c['size']:,}", labels[c["reference"]],
                  f"{100 * c['mean_diff']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]",
                  f"{c['holm_p']:.2g}", f"{c['seed_holm_p']:.2g} ({c['seed_min_p_value']:.2g})",
                  f"{c['seeds_positive']}/{c['seeds_negative']}",
                  outcome_cell(c))
                 for c in results["comparisons"])


def _saved_rows(times):
    rows = []
    for size, entry in times["by_size"].items():
        rows.append((f"{int(size):,}", fmt.duration(entry["fit"]["transfer-frozen"]["fit_wall"]),
                     fmt.duration(entry["saved_vs_fine-tuned"]["fit_wall"]),
                     fmt.duration(entry["saved_vs_scratch"]["fit_wall"])))
    return tuple(rows)


def _cost_sentence(results):
    """What the curves cost: every model's fit (models reused from a cache included), and this run."""
    fits = sum(entry["fit_wall"] * entry["seeds"] for arm in results["arms"].values() for entry in arm["sizes"].values())
    cost = (f"The {results['test_evaluations']} models took {fmt.duration(fits)} of fitting in all (wall clock, "
            f"models reused from the cache included); this run took {fmt.duration(results['wall_seconds'])}.")
    return " ".join(filter(None, (cost, environment_text(results.get("environments", ())))))


def _panels(arms):
    """``[(depth or None, arms)]``: one panel per network depth, raw pixels and the preset in each."""
    arms = list(arms.values())
    depths = sorted({arm["depth"] for arm in arms if arm["kind"] not in _REFERENCE_KINDS})
    if len(depths) <= 1:
        return [(None, arms)]
    references = [arm for arm in arms if arm["kind"] in _REFERENCE_KINDS]
    return [(depth, references + [arm for arm in arms if arm["depth"] == depth and arm["kind"] not in _REFERENCE_KINDS])
            for depth in depths]


def _legend_label(arm):
    """The arm's label without its depth, which the panel's title gives."""
    return re.sub(r", \d+ layers?$", "", arm["label"])


def _colours(arms):
    """A colour per legend label, distinct within a figure: the kind's own colour for its first arm."""
    colours = {}
    for arm in arms.values():
        label = _legend_label(arm)
        if label in colours:
            continue
        preferred = _KIND_STYLE.get(arm["kind"], ("C4", "-"))[0]
        taken = set(colours.values())
        colours[label] = preferred if preferred not in taken else next(
            (c for c in _SPARE_COLOURS if c not in taken), preferred)
    return colours


def _plot_arms(results, x_of, xlabel, height, band=False):
    """One panel per depth, one line per arm over its sizes: accuracy against ``x_of(size, entry)``.

    Raw pixels and the wide preset appear in every panel; an arm keeps its colour across panels, and one
    legend below names them. ``band`` adds each arm's 95% interval and marks with an x the points where a
    network had not converged.
    """
    panels = _panels(results["arms"])
    colours = _colours(results["arms"])
    figure, axes = new_figure(max(7.5, 4.2 * len(panels)), height, sharey=True, ncols=len(panels))
    handles = {}
    for axis, (depth, arms) in zip(axes[0], panels):
        for arm in arms:
            points = sorted((int(s), e) for s, e in arm["sizes"].items())
            if not points:
                continue
            x = np.array([x_of(s, e) for s, e in points])
            label = _legend_label(arm) if depth is not None else arm["label"]
            style = _KIND_STYLE.get(arm["kind"], ("C4", "-"))[1]
            (line,) = axis.plot(x, [e["accuracy"] for _, e in points], style, marker="o", markersize=3,
                                linewidth=2.0 if arm["kind"] == "learned" else 1.2, label=label,
                                color=colours[_legend_label(arm)])
            handles.setdefault(label, line)
            if band:
                axis.fill_between(x, [e["low"] for _, e in points], [e["high"] for _, e in points],
                                  color=line.get_color(), alpha=0.15, linewidth=0)
                unconverged = [(xi, e["accuracy"]) for xi, (_, e) in zip(x, points) if not e["converged"]]
                if unconverged:
                    axis.scatter(*zip(*unconverged), marker="x", color="black", zorder=4)
        if depth is not None:
            axis.set_title(f"{depth} layer{'s' if depth > 1 else ''}", fontsize=9)
        axis.set_xscale("log")
        axis.set_xlabel(xlabel, fontsize=8)
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy")
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(3, len(panels) + 1),
                  fontsize=7)
    return figure


def figure_curves(results):
    """Test accuracy against training-set size, one line per arm with its 95% interval."""
    return _plot_arms(results, lambda size, entry: size, "training images (class-balanced;\nx: a network had not "
                      "converged)", 5.0, band=True)


def figure_cost(results):
    """Test accuracy against fit time (selection included), every arm at every size."""
    return _plot_arms(results, lambda size, entry: entry["fit_wall"], "fit time per model, seconds (wall,\n"
                      "selection included; points: sizes, left to right)", 5.0)

CURVE_FILES = ("curves.json", "summary.md", "report.html", "curves.svg", "cost.svg")


_CURVES_CAPTION = ("Mean test accuracy over seeds with its 95% interval, per arm, against the number of training "
                   "images (log scale).")
_COST_CAPTION = "Mean test accuracy against the wall time of one model's fit, settings selection included."


def write_curves(results, out_dir, title):
    """Write ``results`` to ``out_dir`` whole or not at all: JSON, the Markdown summary and both figures.

    Returns the paths written. Needs matplotlib (``pip install 'skconvfeat[report]'``) for the figures.
    """
    import json
    from pathlib import Path

    import matplotlib

    from ._document import to_markdown
    from ._report import document_page, html_figure, write_folder

    document = (transfer_document if results["kind"] == "transfer_curves" else curve_document)(results, title)

    def write(folder):
        (folder / "curves.json").write_text(json.dumps(results, indent=1, default=str))
        (folder / "summary.md").write_text(to_markdown(document))
        with matplotlib.rc_context({"svg.hashsalt": "skconvfeat", "svg.fonttype": "path"}):
            curves, cost = figure_curves(results), figure_cost(results)
            curves.savefig(folder / "curves.svg", format="svg", metadata={"Date": None})
            cost.savefig(folder / "cost.svg", format="svg", metadata={"Date": None})
            beside = {
                "curves": [html_figure("fig-curves", "Accuracy against training-set size", _CURVES_CAPTION, curves)],
                "settings": [html_figure("fig-cost", "Accuracy against fit time", _COST_CAPTION, cost)],
            }
            (folder / "report.html").write_text(document_page(document, beside))
        return [Path(out_dir) / name for name in CURVE_FILES]

    return write_folder(Path(out_dir), write)
