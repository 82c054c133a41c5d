"""One page comparing several studies: write_comparison and ``skconvfeat report DIR ... --out OUT``."""

import html
import json
import re

import pytest

pytest.importorskip("matplotlib")

from skconvfeat.study import _compare, read_results, write_comparison, write_report  # noqa: E402
from skconvfeat.study._cli import main  # noqa: E402
from skconvfeat.study._report import SCHEMA_VERSION  # noqa: E402

from test_report import (  # noqa: E402
    assert_not_blank,
    assert_svg_figure,
    make_study,
    make_transfer,
    needs_chromium,
    render_in_chromium,
)


def _cifar_study():
    """A holdout study on another dataset: one arm fewer, an unmet baseline, other verdicts."""
    results, extras = make_study(seed=1)
    results["dataset"] = "cifar10-jpeg"
    results["evaluation"] = {"design": "holdout", "n_seeds": 1, "random_state": 0, "n_train": 50000,
                             "n_test": 10000, "interval": "Wilson interval", "test": "McNemar's exact test"}
    results["arms"] = [arm for arm in results["arms"] if arm["name"] != "gaussian"]
    results["comparisons"] = [c for c in results["comparisons"] if c["arm"] != "gaussian"]
    results["baseline"] = {"arm": "learned", "label": "Learned kernels", "accuracy": 0.61, "floor": 0.74,
                           "reached": False}
    results["verdicts"] = [dict(results["verdicts"][0], verdict="supported"),
                           {"claim": "(c) Transferred kernels help", "verdict": "inconclusive", "sentence": "n/a"}]
    return results, extras


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    write_report(*make_study(), root / "digits")
    write_report(*_cifar_study(), root / "cifar")
    return root / "digits", root / "cifar"


@pytest.fixture(scope="module")
def comparison(two_studies, tmp_path_factory):
    out = tmp_path_factory.mktemp("comparison") / "both"
    paths = write_comparison(two_studies, out)
    assert sorted(paths) == ["comparison.html", "comparison.md"]
    return out


def test_page_puts_the_studies_side_by_side(comparison, two_studies):
    page = (comparison / "comparison.html").read_text()
    digits, cifar = (f"{dataset} ({folder})" for dataset, folder in zip(("digits", "cifar10-jpeg"), two_studies))
    for index, title in enumerate((digits, cifar)):
        study = re.search(rf'<section id="study-{index}"><h2>(.*?)</h2>.*?(?=<section id="study-|</div></body>)',
                          page, re.S)
        assert study and html.unescape(study.group(1)) == title
        assert_svg_figure(study.group(0), title)
    assert "http" not in page.lower() and "<script" not in page.lower()
    # The unmet baseline is a warning in the CIFAR column and a cell of the overview.
    assert "WARNING: the learned baseline (Learned kernels) reached 61.0%, below the 74.0%" in page
    assert "NOT reached: Learned kernels 61.0% against the 74.0% floor" in page
    assert "no known floor for digits" in page


def test_tables_align_claims_and_arms_across_studies(comparison):
    text = (comparison / "comparison.md").read_text()
    digits, cifar = make_study()[0], _cifar_study()[0]
    # Claim (a): refuted on digits, supported on CIFAR; claim (c) only in CIFAR.
    assert f"| {digits['verdicts'][0]['claim']} | refuted | supported |" in text
    assert "| (c) Transferred kernels help | - | inconclusive |" in text
    gaussian = digits["arms"][0]
    assert gaussian["name"] == "gaussian"
    row = re.search(r"^\| Gaussian, fixed \| (.*?) \| (.*?) \|$", text, re.M)
    assert row.group(2) == "-"  # the CIFAR study did not run it
    assert row.group(1).startswith(f"{100 * gaussian['mean']:.1f}% (")
    page = (comparison / "comparison.html").read_text()
    assert '<td class="supported">supported</td>' in page


def test_command_line_writes_the_comparison(two_studies, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["report", *map(str, two_studies), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "comparison.html")
    assert sorted(p.name for p in out.iterdir()) == ["comparison.html", "comparison.md"]
    # Run again: the earlier comparison is replaced, nothing else is left beside it.
    assert main(["report", str(two_studies[0]), "--out", str(out)]) == 0
    assert "cifar10-jpeg" not in (out / "comparison.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp"]


def _error(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("skconvfeat report: error: ")
    return lines[0]


def _write_json(folder, content):
    folder.mkdir()
    (folder / "results.json").write_text(content)
    return folder


@pytest.mark.parametrize(
    "make_folder, expected",
    [
        (lambda tmp: tmp / "missing", "missing: no such folder"),
        (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "is a file, not a report folder"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "holds no results.json"),
        (lambda tmp: _write_json(tmp / "bad", "{not json"), "is not a JSON file"),
        (lambda tmp: _write_json(tmp / "list", "[1, 2]"), "holds a JSON list, not the results of a study"),
        (lambda tmp: _write_json(tmp / "old", json.dumps(make_study()[0])),
         "has no schema_version (written before skconvfeat versioned it); this skconvfeat reads version 1"),
        (lambda tmp: _write_json(tmp / "new", json.dumps({**make_study()[0], "schema_version": SCHEMA_VERSION + 1})),
         f"has schema version {SCHEMA_VERSION + 1}; this skconvfeat reads version {SCHEMA_VERSION}"),
        (lambda tmp: _write_json(tmp / "partial", json.dumps({"schema_version": SCHEMA_VERSION, "dataset": "x"})),
         "lacks n_samples, n_classes"),
    ],
    ids=["missing", "file", "no-results", "not-json", "not-a-dict", "unversioned", "other-version", "partial"],
)
def test_bad_folders_exit_1_with_the_reason(make_folder, expected, two_studies, tmp_path, capsys):
    bad = make_folder(tmp_path)
    with pytest.raises((OSError, ValueError), match=re.escape(expected)):
        read_results(bad)
    out = tmp_path / "cmp"
    assert main(["report", str(two_studies[0]), str(bad), "--out", str(out)]) == 1
    assert expected in _error(capsys)
    assert not out.exists()  # nothing written when one folder is bad


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["report", "--out", "x"], "the following arguments are required: DIR"),
        (["report", "some-dir"], "the following arguments are required: --out"),
        (["report", "some-dir", "--out", "x", "--bins", "3"], "unrecognized arguments: --bins 3"),
    ],
)
def test_bad_options_exit_2(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in _error(capsys)


def test_out_never_replaces_a_study_folder(two_studies, capsys):
    before = sorted(p.name for p in two_studies[0].iterdir())
    assert main(["report", str(two_studies[1]), "--out", str(two_studies[0])]) == 2
    assert "holds files that are not part of a report (report.html, results.csv, results.json, ...)" in _error(capsys)
    assert sorted(p.name for p in two_studies[0].iterdir()) == before


def test_interruption_keeps_the_earlier_comparison_whole(two_studies, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    write_comparison(two_studies, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written = []

    def write_then_interrupt(path, text):
        if written:
            raise KeyboardInterrupt
        written.append(path)
        path.write_text(text)

    monkeypatch.setattr(_compare, "write_text", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_comparison(two_studies[:1], out)
    assert written  # one new file was written before the interruption ...
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # ... and never reached OUT
    assert [p.name for p in tmp_path.iterdir()] == ["cmp"]


def test_the_same_folder_twice_is_refused(two_studies, tmp_path):
    with pytest.raises(ValueError, match="same path"):
        write_comparison([two_studies[0], two_studies[0]], tmp_path / "cmp")


def test_study_command_is_unchanged_by_the_report_subcommand(capsys):
    # "report" is a subcommand only as the first argument; the study still refuses stray words.
    assert main(["--banks", "gabor", "report"]) == 2
    assert "unrecognized arguments: report" in capsys.readouterr().err


@needs_chromium
def test_comparison_renders_in_chromium(comparison, tmp_path):
    screenshot = tmp_path / "comparison.png"
    assert render_in_chromium(comparison / "comparison.html", screenshot, tmp_path / "profile") == []
    assert_not_blank(screenshot)


def test_results_written_before_the_transfer_moved_out_are_still_compared(two_studies, tmp_path):
    # Reports written before run_transfer kept the transfer experiment inside results.json.
    results = {**make_study()[0], "transfer": make_transfer(), "schema_version": SCHEMA_VERSION}
    old = _write_json(tmp_path / "old-layout", json.dumps(results))
    assert read_results(old)["transfer"]["train_sizes"] == [20, 50, 100, 300]
    paths = write_comparison([old, two_studies[1]], tmp_path / "both")
    assert "old-layout" in paths["comparison.md"].read_text()


def _hostile(change):
    """A valid study's results with one change, as JSON text (NaN written as the bare word json allows)."""
    results = {**make_study()[0], "schema_version": SCHEMA_VERSION}
    change(results)
    return json.dumps(results)


def _set_arm(key, value):
    return lambda results: results["arms"][0].__setitem__(key, value)


@pytest.mark.parametrize(
    "change, field",
    [
        (_set_arm("mean", float("nan")), "arms[0].mean must be a finite number in [0, 1]; got nan"),
        (_set_arm("mean", -5.0), "arms[0].mean must be a finite number in [0, 1]; got -5.0"),
        (lambda r: r["arms"][1]["scores"].__setitem__(0, 1.5), "arms[1].scores[0] must be a finite number in [0, 1]"),
        (_set_arm("label", "x" * 2**20), "arms[0].label must be at most 200 characters; got 1,048,576"),
        (_set_arm("label", 7), "arms[0].label must be a string; got 7"),
        (_set_arm("scores", "0.9"), "arms[0].scores must be a list; got '0.9'"),
        (lambda r: r.__setitem__("n_classes", True), "n_classes must be a non-negative integer; got True"),
        (lambda r: r.__setitem__("margin", "1%"), "margin must be a number; got '1%'"),
        (lambda r: r["evaluation"].pop("n_train"), "evaluation lacks n_train"),
        (lambda r: r["arms"][2].pop("ci_high"), "arms[2] lacks ci_high"),
        (lambda r: r.__setitem__("arms", {"name": "x"}), "arms must be a list; got {'name': 'x'}"),
        (lambda r: r.__setitem__("reference", "nope"), "reference must name one of the arms; got 'nope'"),
        (lambda r: r["evaluation"].__setitem__("design", "bootstrap"), "evaluation.design must be one of ['cv', 'holdout']"),
        (lambda r: r.__setitem__("baseline", {"label": "x", "accuracy": 0.5, "floor": 0.7, "reached": "no"}),
         "baseline.reached must be true or false; got 'no'"),
    ],
    ids=["nan", "negative", "score-above-1", "1MB-label", "label-int", "scores-str", "bool-count", "margin-str",
         "missing-nested", "missing-in-arm", "arms-dict", "unknown-reference", "unknown-design", "baseline-reached"],
)
def test_hostile_results_exit_1_naming_the_file_and_the_field(change, field, two_studies, tmp_path, capsys):
    bad = _write_json(tmp_path / "hostile", _hostile(change))
    out = tmp_path / "cmp"
    assert main(["report", str(two_studies[0]), str(bad), "--out", str(out)]) == 1
    line = _error(capsys)
    assert f"{bad / 'results.json'}: {field}" in line
    assert len(line) < 400  # a megabyte label is not echoed
    assert not out.exists()


@pytest.mark.parametrize(
    "content, expected",
    [("[" * 100_000 + "]" * 100_000, "is not a JSON file"), (" " * (17 * 2**20) + "{}", "bytes, more than the")],
    ids=["nested-too-deep", "too-large"],
)
def test_unreadable_results_exit_1(content, expected, two_studies, tmp_path, capsys):
    bad = _write_json(tmp_path / "hostile", content)
    assert main(["report", str(two_studies[0]), str(bad), "--out", str(tmp_path / "cmp")]) == 1
    assert expected in _error(capsys)


def test_labels_are_plain_text_in_the_page_and_the_figures(tmp_path):
    # "$...$" is mathtext to matplotlib: unescaped, "\undefinedcommand" would fail to parse and take
    # the figure (and the comparison) down; "<b>" must reach the page as text.
    results, extras = make_study()
    results["arms"][0]["label"] = r"Costs $5 <b>and</b> $\undefinedcommand{x}$"
    write_report(results, extras, tmp_path / "study")
    write_comparison([tmp_path / "study"], tmp_path / "cmp")
    page = (tmp_path / "cmp" / "comparison.html").read_text()
    assert html.escape(results["arms"][0]["label"]) in page and "<b>and</b>" not in page
