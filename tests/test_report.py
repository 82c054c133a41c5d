"""The study report: files, their content, and that the HTML renders in a browser."""

import base64
import html
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
Image = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")

from skconvfeat.study import _report  # noqa: E402
from skconvfeat.study import write_report  # noqa: E402
from skconvfeat.study._stats import accuracy_interval, judge  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
FIGURE_SECTIONS = ("fig-accuracy", "fig-transfer", "fig-time", "fig-filters", "fig-learned-kernels", "fig-curves",
                   "fig-feature-maps", "fig-confusion", "fig-per-class")
# The figures that need extras (all but accuracy, transfer and time).
EXTRAS_FIGURES = 6
N_SPLITS = 10  # 5 repeats x 2 folds
# A label that would break the page if it reached the HTML unescaped.
HOSTILE_LABEL = "Sharpen <script>alert(1)</script> | fixed"


def make_study(seed=0):
    """Build schema-valid ``results`` and ``extras`` shaped like a digits study.

    8x8 grey images, three fixed banks, the raw-pixel arm and a learned arm as
    reference (the transfer experiment's results: :func:`make_transfer`).
    """
    rng = np.random.default_rng(seed)
    arm_specs = [  # name, label, kind, bank, n_filters, kernel size, true accuracy
        ("gaussian", "Gaussian, fixed", "fixed", "gaussian", 4, 3, 0.93),
        ("gabor", "Gabor, fixed", "fixed", "gabor", 8, 5, 0.96),
        ("random", "Random, fixed", "fixed", "random", 20, 3, 0.95),
        ("identity", "Raw pixels", "raw", "identity", 1, 1, 0.96),
        ("learned", "Learned kernels", "learned", None, 8, 3, 0.975),
    ]
    arms, banks, maps = [], {}, {}
    for name, label, kind, bank, n_filters, size, accuracy in arm_specs:
        scores = np.clip(accuracy + rng.normal(0, 0.008, N_SPLITS), 0, 1)
        half = 2.26 * scores.std(ddof=1) / np.sqrt(N_SPLITS)
        arms.append(
            {
                "name": name, "label": label, "kind": kind, "bank": bank, "n_features": n_filters * 16,
                "scores": scores.round(4).tolist(),
                "fit_time": (rng.uniform(0.1, 0.5, N_SPLITS) * (30 if kind == "learned" else 1)).round(3).tolist(),
                "transform_time": None if kind == "learned" else rng.uniform(0.01, 0.03, N_SPLITS).round(4).tolist(),
                "mean": float(scores.mean()), "ci_low": float(scores.mean() - half), "ci_high": float(scores.mean() + half),
            }
        )  # fmt: skip
        if kind == "fixed":
            banks[label] = rng.normal(size=(n_filters, 1, size, size))
            maps[label] = rng.random((n_filters, 8, 8))
    reference = arms[-1]
    comparisons = judge([
        {
            "arm": arm["name"], "reference": "learned", "mean_diff": arm["mean"] - reference["mean"],
            "ci_low": arm["mean"] - reference["mean"] - 0.01, "ci_high": arm["mean"] - reference["mean"] + 0.01,
            "p_value": 0.003 if arm["name"] != "gabor" else 0.4, "equivalence_p_value": 0.6, "margin": 0.01,
            "test": "corrected repeated k-fold t-test (Bouckaert & Frank 2004)",
        }
        for arm in arms[:-1]
    ])  # fmt: skip
    comparisons[1]["p_holm"] = float("nan")  # as strict JSON cannot hold it
    results = {
        "dataset": "digits", "n_samples": 1797, "n_classes": 10, "image_shape": [8, 8, 1], "classifier": "logistic",
        "evaluation": {"design": "cv", "n_splits": 2, "n_repeats": 5, "random_state": 0, "n_train": 898,
                       "n_test": 899, "interval": "t-interval on the logit scale",
                       "test": "corrected repeated k-fold t-test (Bouckaert & Frank 2004)"},
        "learned_training": {"device": "cpu", "augmentation": "none", "max_epochs": 30},
        "margin": 0.01, "alpha": 0.05, "best_fixed": "gabor", "reference": "learned", "baseline": None,
        "arms": arms,
        "comparisons": comparisons,
        "verdicts": [
            {"claim": "Random fixed kernels work very poorly", "verdict": "refuted",
             "sentence": "Random fixed kernels reached 95.0% (95% CI 94.4-95.6%), 2.5 points below learned ones."},
            {"claim": "Fixed Gabor kernels match learned ones", "verdict": "inconclusive",
             "sentence": "Gabor kernels scored 1.5 points lower (95% CI -3.1 to +0.1), an interval that crosses zero."},
        ],
        "skipped_arms": [{"name": "sharpen", "reason": f"{HOSTILE_LABEL} needs an odd kernel size & got 4"}],
        "elapsed_s": 42.0,
        "versions": {"skconvfeat": "0.1.0", "scikit-learn": "1.6.1", "torch": "2.4.0", "machine": "x86_64, 2 cores"},
    }  # fmt: skip
    matrix = np.diag(rng.integers(160, 180, 10)) + rng.integers(0, 3, (10, 10))
    before = rng.normal(0, 0.1, (8, 1, 3, 3))
    extras = {
        "banks": banks,
        "learned_arm": "Learned kernels",
        "learned_before": before,
        "learned_after": before + rng.normal(0, 0.03, before.shape),
        "learning_curves": {"Learned kernels": _history(rng, 12), "Random, fixed (Adam head)": _history(rng, 7)},
        "sample_image": rng.random((8, 8, 1)) * 16,
        "feature_maps": maps,
        "confusion": {"arm": "Gabor, fixed", "labels": list(range(10)), "matrix": matrix},
        "per_class": {"labels": list(range(10)),
                      "accuracy": {"Learned kernels": rng.uniform(0.9, 1, 10), "Gabor, fixed": rng.uniform(0.85, 1, 10)}},
    }
    return results, extras


def _history(rng, n_epochs):
    """A ``LearnedConvClassifier.history_`` of ``n_epochs`` epochs."""
    loss = 2.3 * np.exp(-np.arange(n_epochs) / 3) + 0.05
    return [{"epoch": i + 1, "train_loss": loss[i], "valid_loss": loss[i] * 1.2 + 0.02,
             "valid_accuracy": min(1.0, 0.5 + 0.05 * i + rng.uniform(0, 0.02)), "learning_rate": 0.01, "seconds": 0.1}
            for i in range(n_epochs)]


def make_transfer(seed=0):
    """Build schema-valid results of the transfer experiment (``run_transfer``)."""
    rng = np.random.default_rng(seed)
    sizes, n_repeats = [20, 50, 100, 300], 3
    arms = {}
    for name, label, top in (("transfer", "Transferred kernels, fixed", 0.95), ("scratch", "Learned from scratch", 0.9),
                             ("random", "Random kernels, fixed", 0.88)):
        curve = top - 0.4 / np.sqrt(sizes)[:, None]
        scores = np.clip(curve + rng.normal(0, 0.01, (len(sizes), n_repeats)), 0, 1).round(4).tolist()
        mean, low, high = zip(*(accuracy_interval(per_size, n_test=100) for per_size in scores))
        arms[name] = {
            "label": label, "scores": scores,
            "fit_time": rng.uniform(0.05, 0.4, (len(sizes), n_repeats)).round(3).tolist(),
            "mean": list(mean), "ci_low": list(low), "ci_high": list(high),
        }  # fmt: skip
    return {"skipped": None, "source_classes": [0, 1, 2, 3, 4], "target_classes": [5, 6, 7, 8, 9],
            "train_sizes": sizes, "n_seeds": n_repeats, "n_test": 100, "depth": 1, "source_fit_time": [1.0] * n_repeats,
            "arms": arms, "elapsed_s": 3.0}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """A report written once for the read-only tests of this module."""
    out_dir = tmp_path_factory.mktemp("report") / "nested" / "out"
    results, extras = make_study()
    write_report(results, extras, out_dir, transfer=make_transfer())
    return out_dir


def test_writes_every_file(report_dir):
    names = {path.name for path in report_dir.iterdir()}
    assert names == {"results.json", "results.csv", "transfer.json", "transfer.csv", "summary.md", "report.html"}


def test_transfer_json_holds_the_transfer_results_apart(report_dir):
    assert json.loads((report_dir / "transfer.json").read_text()) == {"schema_version": _report.SCHEMA_VERSION,
                                                                        **make_transfer()}
    assert "transfer" not in json.loads((report_dir / "results.json").read_text())


def test_json_round_trips_with_nan_as_null(report_dir):
    results, _ = make_study()
    # The gabor comparison's p-value is NaN, which strict JSON spells null.
    expected = json.loads(json.dumps(results).replace("NaN", "null"))
    assert json.loads((report_dir / "results.json").read_text()) == {"schema_version": _report.SCHEMA_VERSION,
                                                                       **expected}


def test_results_csv_has_one_row_per_arm_and_split(report_dir):
    results, _ = make_study()
    table = pd.read_csv(report_dir / "results.csv")
    assert list(table.columns) == ["arm", "label", "kind", "split", "accuracy", "fit_time", "transform_time"]
    assert len(table) == len(results["arms"]) * N_SPLITS
    gabor = table[table.arm == "gabor"].sort_values("split")
    np.testing.assert_allclose(gabor.accuracy, results["arms"][1]["scores"])
    # The learned arm has no separate transform step: empty cells, read back as NaN.
    assert table[table.kind == "learned"].transform_time.isna().all()
    assert table[table.kind != "learned"].transform_time.notna().all()


def test_transfer_csv_has_one_row_per_arm_size_and_repeat(report_dir):
    table = pd.read_csv(report_dir / "transfer.csv")
    assert list(table.columns) == ["arm", "label", "train_size", "repeat", "accuracy", "fit_time"]
    assert len(table) == 3 * 4 * 3
    assert sorted(table.train_size.unique()) == [20, 50, 100, 300]


def test_summary_markdown_has_table_comparisons_verdicts_and_skipped(report_dir):
    results, _ = make_study()
    text = (report_dir / "summary.md").read_text()
    for arm in results["arms"]:
        assert f"| {arm['label']} | {arm['kind']} | {arm['n_features']} |" in text
    for verdict in results["verdicts"]:
        assert verdict["sentence"] in text
        assert f"**{verdict['claim']}**: {verdict['verdict']}" in text
    assert "| Gabor, fixed | Learned kernels |" in text
    assert "| n/a |" in text  # the NaN p-value
    assert "| Gaussian, fixed | Learned kernels | -4.0 pp (-5.0 to -3.0) | 0.012 | lower |" in text
    assert "augmentation: none" in text and "equivalence margin ±1 point" in text
    assert "needs an odd kernel size" in text


def test_html_is_self_contained_with_every_figure(report_dir):
    results, _ = make_study()
    page = (report_dir / "report.html").read_text()
    for section in FIGURE_SECTIONS:
        match = re.search(rf'<section id="{section}">.*?</section>', page, re.S)
        assert match, section
        assert_svg_figure(match.group(0), section)
    for section in ("summary", "comparisons", "verdicts", "skipped", "versions"):
        assert f'<section id="{section}">' in page
    assert "http" not in page.lower()
    assert "<script" not in page.lower()  # the hostile label is escaped, and the page needs no JS
    assert "Sharpen &lt;script&gt;alert(1)&lt;/script&gt;" in page
    for verdict in results["verdicts"]:
        assert html.escape(verdict["sentence"]) in page
    assert "x86_64, 2 cores" in page
    assert len(page.encode()) < 2_000_000


def assert_svg_figure(fragment, name):
    """``fragment`` embeds one SVG figure (parsed as XML) of a reasonable size; return its root element."""
    encoded = re.search(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', fragment)
    assert encoded, f"{name} has no embedded SVG"
    root = ElementTree.fromstring(base64.b64decode(encoded.group(1)))
    assert root.tag == "{http://www.w3.org/2000/svg}svg", name
    assert float(root.get("width").removesuffix("pt")) >= 250, name
    return root


def _text_boxes(figure, texts):
    figure.draw_without_rendering()
    return [text.get_window_extent() for text in texts if text.get_text()]


def _assert_apart(boxes, what):
    """No two boxes overlap, and every one lies inside the figure (x and y >= 0)."""
    for box in boxes:
        assert box.x0 >= 0 and box.y0 >= 0, f"{what} cut off at the figure's edge: {box}"
    ordered = sorted(boxes, key=lambda box: box.y0)
    for lower, upper in zip(ordered, ordered[1:]):
        assert lower.y1 <= upper.y0 or lower.x1 <= upper.x0 or upper.x1 <= lower.x0, f"{what} overlap"


@pytest.mark.parametrize("n_arms", [2, 20, 60])
def test_arm_labels_never_overlap(n_arms):
    results, _ = make_study()
    long_label = "K-means, fixed (data-derived), 2 layers, whitened patches"
    results["arms"] = [
        {**results["arms"][i % 5], "name": f"arm{i}", "label": long_label if i % 3 else f"Arm {i}"}
        for i in range(n_arms)
    ]  # fmt: skip
    for figure_function in (_report.figure_accuracy, _report._figure_time):
        figure = figure_function(results)
        axes = figure.axes[0]
        boxes = _text_boxes(figure, axes.get_yticklabels())
        assert len(boxes) == n_arms
        _assert_apart(boxes, f"{figure_function.__name__}: arm labels")
        # Every row gets its height: the figure grows with the arms.
        assert figure.get_figheight() >= 0.4 * n_arms


def test_learned_kernels_share_one_symmetric_scale_and_state_their_change():
    _, extras = make_study()
    before, after = extras["learned_before"], extras["learned_after"]
    figure = _report._figure_learned_kernels(extras)
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert len(images) == 3 * len(before)  # before, after, difference of every kernel
    bound = max(np.abs(before).max(), np.abs(after).max(), np.abs(after - before).max())
    for image in images:
        assert image.get_clim() == pytest.approx((-bound, bound))
    # The relative change, computed here independently over all kernels, is printed.
    change = np.sqrt(((after - before) ** 2).sum() / (before**2).sum())
    assert f"= {change:.1%}" in figure.get_suptitle()
    first = np.sqrt(((after[0] - before[0]) ** 2).sum() / (before[0] ** 2).sum())
    difference_axes = [ax for ax in figure.axes if ax.images][2 * len(before)]
    assert difference_axes.get_xlabel() == f"{first:.0%}"


def test_learned_colour_kernels_are_drawn_in_colour_with_grey_zero():
    rng = np.random.default_rng(0)
    before = rng.normal(size=(4, 3, 3, 3))
    figure = _report._figure_learned_kernels({"learned_before": before, "learned_after": before})
    difference = [ax.images[0].get_array() for ax in figure.axes if ax.images][-1]
    assert difference.shape == (3, 3, 3)
    np.testing.assert_allclose(difference, 0.5)  # no change: mid grey


def test_learning_curves_draw_training_and_validation_of_every_arm():
    _, extras = make_study()
    figure = _report._figure_learning_curves(extras)
    loss_axes, accuracy_axes = figure.axes
    assert len(loss_axes.lines) == 2 * 2  # training and validation loss of both arms
    assert len(accuracy_axes.lines) == 2
    np.testing.assert_allclose(loss_axes.lines[0].get_ydata(),
                               [h["train_loss"] for h in extras["learning_curves"]["Learned kernels"]])
    assert _report._figure_learning_curves({"learning_curves": {"x": []}}) is None


def test_per_class_accuracy_shows_both_arms_for_every_class():
    _, extras = make_study()
    figure = _report._figure_per_class(extras)
    axes = figure.axes[0]
    heights = [patch.get_height() for patch in axes.patches]
    expected = np.concatenate(list(extras["per_class"]["accuracy"].values()))
    np.testing.assert_allclose(heights, expected)
    assert [label.get_text() for label in axes.get_xticklabels()] == [str(c) for c in range(10)]


def test_html_leaves_out_transfer_and_stale_csv_without_transfer(tmp_path):
    write_report(*make_study(), tmp_path, transfer=make_transfer())
    write_report(*make_study(), tmp_path)
    assert not (tmp_path / "transfer.csv").exists() and not (tmp_path / "transfer.json").exists()
    page = (tmp_path / "report.html").read_text()
    assert 'id="fig-transfer"' not in page
    assert 'id="fig-accuracy"' in page


def test_missing_extras_only_drop_their_figures(tmp_path):
    results, _ = make_study()
    write_report(results, {}, tmp_path, transfer=make_transfer())
    page = (tmp_path / "report.html").read_text()
    assert page.count("Not available for this study.") == EXTRAS_FIGURES
    assert page.count("data:image/svg+xml;base64,") == 3  # accuracy, transfer, time


def test_error_while_rendering_leaves_new_data_and_no_html(tmp_path, monkeypatch):
    write_report(*make_study(seed=0), tmp_path)

    def broken(results):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(_report, "_figure_time", broken)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_report(*make_study(seed=1), tmp_path)
    # The old page would contradict the new results.json.
    assert not (tmp_path / "report.html").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]
    # The data files of the second study were written before its HTML was attempted.
    scores = json.loads((tmp_path / "results.json").read_text())["arms"][0]["scores"]
    assert scores == make_study(seed=1)[0]["arms"][0]["scores"]


def _snapshot(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_interruption_while_writing_keeps_the_earlier_report_whole(tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_report(*make_study(seed=0), out)
    before = _snapshot(out)

    def interrupted(results):
        raise KeyboardInterrupt

    # results.csv is written after summary.md and before results.json: the old code
    # had replaced some files of the old report by then and left the others.
    monkeypatch.setattr(_report, "_results_csv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(*make_study(seed=1), out)
    assert _snapshot(out) == before
    assert [path.name for path in tmp_path.iterdir()] == ["report"]  # no staging folder left behind


def test_interruption_while_the_page_is_written_keeps_the_earlier_report_whole(tmp_path, monkeypatch):
    # By then results.json is written: a failure keeps those numbers, but Ctrl-C must not trade a
    # complete report for one without report.html.
    out = tmp_path / "report"
    write_report(*make_study(seed=0), out)
    before = _snapshot(out)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_report, "_report_html", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(*make_study(seed=1), out)
    assert _snapshot(out) == before
    assert [path.name for path in tmp_path.iterdir()] == ["report"]


def test_debris_of_a_killed_run_is_removed_by_the_next(tmp_path):
    out = tmp_path / "report"
    write_report(*make_study(seed=0), out)
    # SIGKILL while writing (a staging folder), and between the two renames (the old report aside).
    (tmp_path / ".report.new-abc123").mkdir()
    (tmp_path / ".report.new-abc123" / "results.csv").write_text("partial")
    (tmp_path / ".report.old-def456").mkdir()
    out.rename(tmp_path / ".report.old-def456" / "report")
    unrelated = tmp_path / ".other.new-1"
    unrelated.mkdir()
    write_report(*make_study(seed=1), out)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".other.new-1", "report"]
    assert _snapshot(out) == _snapshot_of_study(tmp_path / "fresh", seed=1)


def test_debris_cleanup_restores_the_report_left_aside_when_the_next_run_fails(tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_report(*make_study(seed=0), out)
    before = _snapshot(out)
    (tmp_path / ".report.old-def456").mkdir()
    out.rename(tmp_path / ".report.old-def456" / "report")

    def interrupted(results):
        raise KeyboardInterrupt

    monkeypatch.setattr(_report, "_results_csv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(*make_study(seed=1), out)
    assert _snapshot(out) == before
    assert [path.name for path in tmp_path.iterdir()] == ["report"]


def _snapshot_of_study(folder, seed):
    write_report(*make_study(seed=seed), folder)
    return _snapshot(folder)


def test_a_symlinked_out_is_written_through(tmp_path):
    target = tmp_path / "reports" / "digits"
    write_report(*make_study(seed=0), target)
    link = tmp_path / "latest"
    link.symlink_to(target, target_is_directory=True)
    write_report(*make_study(seed=1), link)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert _snapshot(target) == _snapshot_of_study(tmp_path / "fresh", seed=1)
    assert sorted(path.name for path in target.parent.iterdir()) == ["digits"]


def test_failed_swap_puts_the_earlier_report_back(tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_report(*make_study(seed=0), out)
    before = _snapshot(out)
    rename, calls = os.rename, []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the old folder is aside, the new one not yet in place
            raise OSError("disk full")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", second_rename_fails)
    with pytest.raises(OSError, match="disk full"):
        write_report(*make_study(seed=1), out)
    assert _snapshot(out) == before
    assert [path.name for path in tmp_path.iterdir()] == ["report"]


def test_a_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("not a report")
    with pytest.raises(FileExistsError, match="holds files that are not part of a report"):
        write_report(*make_study(), tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["thesis.tex"]
    with pytest.raises(NotADirectoryError, match="is a file"):
        write_report(*make_study(), tmp_path / "thesis.tex")


def test_unfair_baseline_warning_heads_both_reports(tmp_path):
    results, extras = make_study()
    results["dataset"] = "cifar10-jpeg"
    results["baseline"] = {"arm": "learned", "label": "Learned kernels", "accuracy": 0.5, "floor": 0.74,
                           "reached": False}
    write_report(results, extras, tmp_path)
    warning = "WARNING: the learned baseline (Learned kernels) reached 50.0%, below the 74.0%"
    assert warning in (tmp_path / "summary.md").read_text().split("\n\n")[1]
    assert warning in (tmp_path / "report.html").read_text()


def test_missing_matplotlib_gives_install_hint(tmp_path, monkeypatch):
    # None in sys.modules makes the import fail as if matplotlib were not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'skconvfeat\[report\]'"):
        write_report(*make_study(), tmp_path)
    assert (tmp_path / "results.json").exists() and not (tmp_path / "report.html").exists()


# --------------------------------------------------------------------------- browser
#
# Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
# commands on fd 3, replies and events on fd 4, NUL-separated JSON) rather than by
# grepping its stderr log: the log is full of unrelated dbus errors, and it reports
# neither failed resource loads nor the level of a console message. Over the
# protocol, console errors, uncaught exceptions, failed loads and every request the
# page makes arrive as structured events.

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (CI installs it with .ci/install-chromium.sh)"
)


class _DevTools:
    """A minimal DevTools-protocol client for a headless Chromium it starts."""

    def __init__(self, user_data_dir, timeout=30.0):
        self.timeout = timeout
        self.events, self._buffer, self._next_id = [], b"", 0
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes():
            # Duplicate first: the pipe ends may already be numbered 3 or 4, and
            # dup2 onto the same number would keep them close-on-exec.
            read_end, write_end = os.dup(to_browser_read), os.dup(from_browser_write)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [
                str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes, close_fds=False,
        )  # fmt: skip
        os.close(to_browser_read)
        os.close(from_browser_write)

    def call(self, method, params=None, session=None):
        """Send a command and return its result, keeping the events that arrive meanwhile."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method):
        """Read events until one named ``method`` has arrived."""
        deadline = time.monotonic() + self.timeout
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._receive(deadline))

    def _receive(self, deadline):
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self):
        try:
            self.call("Browser.close")
            self.process.wait(timeout=10)
        except (OSError, RuntimeError, TimeoutError, EOFError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)


def render_in_chromium(page, screenshot, user_data_dir, size=(1200, 3000)):
    """Load ``page`` in headless Chromium, screenshot it, and list what went wrong.

    Returns
    -------
    problems : list of str
        Console errors and assertions, uncaught exceptions, failed loads and
        requests for anything other than the page itself and ``data:`` URIs.
    """
    url = Path(page).resolve().as_uri()
    browser = _DevTools(user_data_dir)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.call(f"{domain}.enable", session=session)
        metrics = {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False}
        browser.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        browser.call("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired")
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()
    return [problem for event in browser.events if (problem := _problem(event, url))]


def _problem(event, url):
    """Describe ``event`` if it shows a broken page, else return None."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        return f"console.{params['type']}: {[arg.get('value') for arg in params['args']]}"
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return f"uncaught: {details.get('exception', {}).get('description', details['text'])}"
    if method == "Log.entryAdded" and params["entry"]["level"] == "error":
        return f"log: {params['entry']['text']} {params['entry'].get('url', '')}"
    if method == "Network.loadingFailed":
        return f"load failed: {params['errorText']}"
    if method == "Network.requestWillBeSent":
        requested = params["request"]["url"]
        if requested != url and not requested.startswith("data:"):
            return f"external request: {requested}"
    return None


def assert_not_blank(screenshot, min_colours=50, min_ink=0.02):
    """Fail unless ``screenshot`` shows enough non-white pixels in enough colours."""
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    ink = (pixels.min(axis=2) < 240).mean()
    # One integer per colour: np.unique(axis=0) on 3.6 M rows would take seconds.
    packed = (pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8) | pixels[..., 2]
    colours = len(np.unique(packed))
    assert colours >= min_colours and ink >= min_ink, f"blank page? {colours} colours, {ink:.1%} ink"


@needs_chromium
def test_browser_check_catches_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><body><p>broken</p><script>console.error("x")</script>'
        '<img src="missing.png"><script>notDefined()</script>'
        '<img src="https://example.invalid/logo.png"></body></html>'
    )
    problems = render_in_chromium(page, tmp_path / "broken.png", tmp_path / "profile")
    text = "\n".join(problems)
    assert "console.error: ['x']" in text
    assert "missing.png" in text
    assert "uncaught: ReferenceError: notDefined is not defined" in text
    assert "external request: https://example.invalid/logo.png" in text
    with pytest.raises(AssertionError, match="blank page"):
        assert_not_blank(tmp_path / "broken.png")


@needs_chromium
def test_report_renders_in_chromium(report_dir, tmp_path):
    screenshot = tmp_path / "report.png"
    problems = render_in_chromium(report_dir / "report.html", screenshot, tmp_path / "profile")
    assert problems == []
    assert_not_blank(screenshot)


def test_report_of_a_small_digits_study_has_the_learned_figures(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    from skconvfeat.study import StudySettings, _design, run_study

    settings = StudySettings(banks=("gabor", "identity"), n_splits=2, n_repeats=1,
                             small_recipe={**_design.LEARNED, "max_epochs": 2})  # wiring, not accuracy
    digits = load_digits()
    results, extras = run_study(digits.images[:500], digits.target[:500], settings, return_extras=True)
    trained_in_torch = [arm["label"] for arm in results["arms"] if arm["name"] in _design.LEARNED_ARMS]
    assert list(extras["learning_curves"]) == trained_in_torch
    for history in extras["learning_curves"].values():
        assert [entry["epoch"] for entry in history] == [1, 2]
        assert all(entry["valid_accuracy"] is not None for entry in history)
    assert extras["learned_arm"] == "Learned (random init)"
    # Per-class accuracy of the reference and of the best fixed arm; the best one's agrees with its confusion matrix.
    arms = {arm["name"]: arm["label"] for arm in results["arms"]}
    per_class = extras["per_class"]["accuracy"]
    assert list(per_class) == [arms[results["reference"]], arms[results["best_fixed"]]]
    matrix = np.asarray(extras["confusion"]["matrix"], dtype=float)
    np.testing.assert_allclose(per_class[arms[results["best_fixed"]]], np.diag(matrix) / matrix.sum(axis=1))
    write_report(results, extras, tmp_path)
    page = (tmp_path / "report.html").read_text()
    for section in FIGURE_SECTIONS:
        if section != "fig-transfer":
            match = re.search(rf'<section id="{section}">.*?</section>', page, re.S)
            assert match, section
            assert_svg_figure(match.group(0), section)
    assert re.search(r"The kernels moved by \d+\.\d% of their initial norm\.", page)
