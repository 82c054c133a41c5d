"""The command line, run in-process through main(argv) (plus one real subprocess)."""

import json
import subprocess
import sys

import pytest

from skconvfeat.study import _cli
from skconvfeat.study._cli import main

TINY = ["--banks", "gabor,identity", "--repeats", "2", "--folds", "2", "--n-jobs", "1",
        "--no-learned", "--no-transfer"]


def _one_error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("skconvfeat: error: ")
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


def test_json_output_is_the_results_dict_only(capsys):
    assert main([*TINY, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)  # nothing but JSON on stdout
    assert {"arms", "comparisons", "verdicts", "skipped_arms", "cv", "transfer"} <= set(results)
    assert [a["name"] for a in results["arms"]] == ["gabor", "identity"]


def test_table_and_answers(capsys):
    assert main([*TINY, "--classifier", "linear_svm"]) == 0
    out = capsys.readouterr().out
    assert "Gabor, fixed" in out and "Raw pixels (no conv)" in out
    assert "Answers:" in out
    assert any(f"[{v}] (a) Random kernels" in out for v in ("supported", "refuted", "inconclusive"))
    assert "Skipped:" in out and "turned off (--no-learned)" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--bogus"], "unrecognized arguments"),
        (["--classifier", "svm"], "invalid choice"),
        (["--repeats", "0"], "positive integer"),
        (["--folds", "1"], "at least 2 folds"),
        (["--n-jobs", "two"], "--n-jobs"),
        (["--banks", "gabr"], "Did you mean 'gabor'?"),
        (["--dataset", "digts"], "Did you mean 'digits'?"),
    ],
)
def test_bad_options_exit_2_with_one_line(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in _one_error_line(capsys)


def test_train_size_too_small_for_the_classes_exits_2(capsys):
    assert main([*TINY, "--train-size", "3"]) == 2
    _one_error_line(capsys)


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "--banks" in capsys.readouterr().out


def test_out_writes_the_report(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.json").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["dataset"] == "digits"


def test_unwritable_out_exits_1_after_printing_the_results(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main([*TINY, "--json", "--out", str(blocker / "sub")]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dataset"] == "digits"
    assert "cannot write the report" in captured.err and "Traceback" not in captured.err


def test_plain_progress_prints_a_line_per_tenth(capsys):
    progress = _cli._plain_progress()
    for done in range(1, 41):
        progress(done, 40, "gabor 0")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11  # the first model, then every tenth
    assert lines[0] == "skconvfeat: 1/40 models fitted" and lines[-1] == "skconvfeat: 40/40 models fitted"


def test_module_entry_point_reports_a_bad_bank_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "skconvfeat", "--banks", "gabr"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("skconvfeat: error: argument --banks: unknown bank 'gabr'; choose from ")
    assert line.endswith("Did you mean 'gabor'?")
