"""The command line, run in-process through main(argv) (plus one real subprocess)."""

import json
import re
import subprocess
import sys

import numpy as np
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
    assert {"arms", "comparisons", "verdicts", "skipped_arms", "evaluation"} <= set(results)
    assert [a["name"] for a in results["arms"]] == ["gabor", "identity"]


def test_table_and_answers(capsys):
    assert main([*TINY, "--classifier", "linear_svm"]) == 0
    out = capsys.readouterr().out
    assert "Gabor, fixed" in out and "Raw pixels (no conv)" in out
    assert "\nVerdicts\n" in out
    assert any(f"[{v}] (a) Random kernels" in out for v in ("supported", "refuted", "inconclusive"))
    assert "\nSkipped arms\n" in out and "learned: turned off" in out
    assert "Comparisons with the reference: corrected repeated k-fold t-test" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--bogus"], "unrecognized arguments"),
        (["--classifier", "svm"], "invalid choice"),
        (["--repeats", "0"], "positive integer"),
        (["--folds", "1"], "argument --folds: The 'n_splits' parameter of StudySettings must be an int in the range"),
        (["--n-jobs", "two"], "--n-jobs"),
        (["--banks", "gabr"], "Did you mean 'gabor'?"),
        (["--dataset", "digts"], "Did you mean 'digits'?"),
        (["--margin", "0"], "--margin"),
        (["--layers", "4"], "argument --layers: The 'depths' parameter of StudySettings must hold depths among"),
        (["--layers", "1,x"], "argument --layers: expected comma-separated depths"),
        (["--device", "tpu"], "invalid choice"),
    ],
)
def test_bad_options_exit_2_with_one_line(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in _one_error_line(capsys)


def test_train_size_too_small_for_the_classes_exits_2(capsys):
    assert main([*TINY, "--train-size", "3"]) == 2
    assert "argument --train-size: 3 images cannot hold one of each of the 10 classes" in _one_error_line(capsys)


def _no_study(monkeypatch):
    """Make any call of run_study fail the test: the error must come before the study."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the study started")

    monkeypatch.setattr(_cli, "run_study", forbidden)


@pytest.mark.parametrize("where", ["file", "under_file", "foreign"])
def test_bad_out_exits_2_before_the_study(where, tmp_path, monkeypatch, capsys):
    _no_study(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = {"file": blocker, "under_file": blocker / "sub", "foreign": tmp_path}[where]
    assert main([*TINY, "--out", str(out)]) == 2
    assert _one_error_line(capsys).startswith("skconvfeat: error: argument --out: ")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]  # nothing created


def test_cuda_without_a_gpu_exits_2_before_the_study(monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _no_study(monkeypatch)
    assert main(["--device", "cuda"]) == 2
    assert "argument --device: The 'device' parameter of StudySettings is 'cuda' but PyTorch sees no CUDA device" in (
        _one_error_line(capsys))


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli, "run_study", interrupted)
    assert main(TINY) == 130
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == "skconvfeat: interrupted"
    assert "Traceback" not in captured.err and captured.out == ""


def test_corrupt_data_exits_1_not_2(monkeypatch, capsys):
    from skconvfeat.datasets._errors import corrupt_file

    def corrupt(name, data_home):
        raise corrupt_file("mnist/train-images-idx3-ubyte.gz", "truncated")

    monkeypatch.setattr(_cli, "_load_images", corrupt)
    assert main([*TINY, "--dataset", "mnist"]) == 1
    assert "cannot load 'mnist'" in _one_error_line(capsys)


def test_datasets_use_their_official_test_set(monkeypatch, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, target = digits.images, digits.target
    monkeypatch.setattr(_cli, "_load_images",
                        lambda name, home: (images[:1000], target[:1000], images[1000:], target[1000:]))
    assert main([*TINY, "--dataset", "mnist", "--train-size", "200", "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)["evaluation"]
    assert evaluation["design"] == "holdout"
    assert (evaluation["n_train"], evaluation["n_test"], evaluation["n_seeds"]) == (200, 797, 1)


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "--banks" in capsys.readouterr().out


def test_out_writes_the_report(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.json").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["dataset"] == "digits"


def test_report_failure_exits_1_after_printing_the_results(tmp_path, monkeypatch, capsys):
    def disk_full(results, extras, out_dir, transfer=None):
        raise OSError("No space left on device")

    monkeypatch.setattr(_cli, "write_report", disk_full)
    assert main([*TINY, "--json", "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dataset"] == "digits"
    assert "cannot write the report" in captured.err and "Traceback" not in captured.err


def test_plain_progress_prints_a_line_per_model_with_time_left(capsys, monkeypatch):
    clock = iter(range(0, 1000, 10))  # each model takes 10 s
    monkeypatch.setattr("time.perf_counter", lambda: next(clock))
    progress = _cli._plain_progress()
    for done in range(1, 41):
        progress(done, 40, "gabor 0")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 40
    assert lines[0] == "skconvfeat: 1/40 gabor 0: 10s elapsed, about 6m30s left"
    assert lines[-1] == "skconvfeat: 40/40 gabor 0: 6m40s elapsed, about 0s left"


def test_missing_extra_is_reported_before_any_work(monkeypatch, capsys, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib":
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    monkeypatch.setattr(_cli, "run_study", lambda *a, **k: pytest.fail("the study ran"))
    assert main(["--out", str(tmp_path / "out")]) == 2
    assert "pip install 'skconvfeat[report]'" in capsys.readouterr().err


def test_module_entry_point_reports_a_bad_bank_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "skconvfeat", "--banks", "gabr"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("skconvfeat: error: argument --banks: The 'banks' parameter of StudySettings must name ")
    assert line.endswith("Did you mean 'gabor'?")


# -- the recipes people quote: --preset, the ridge head, --dataset PATH (issue 23) ------------------

def _image_folder(root, splits):
    """Two classes of noisy 8x8 grey PNGs, horizontal and vertical bars, under ``root[/split]/class/``
    (orientation, not brightness: the presets normalise each patch's contrast away)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    bars = np.zeros((8, 8))
    bars[[2, 5]] = 200
    for split in splits:
        for label, pattern in (("horizontal", bars), ("vertical", bars.T)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(12):
                pixels = np.clip(30 + pattern + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_preset_arm_runs_with_its_ridge_head(capsys):
    assert main([*TINY, "--preset", "coates-digits", "--classifier", "ridge", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    arms = {arm["name"]: arm for arm in results["arms"]}
    assert results["classifier"] == "ridge"
    assert arms["preset-coates-digits"]["kind"] == "fixed" and arms["preset-coates-digits"]["mean"] > 0.9


@pytest.mark.parametrize("splits, design", [([""], "cv"), (["train", "test"], "holdout")])
def test_dataset_path_reads_a_users_image_folder(splits, design, tmp_path, capsys):
    pytest.importorskip("PIL")
    root = _image_folder(tmp_path / "images", splits)
    assert main([*TINY, "--dataset", str(root), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["evaluation"]["design"] == design and results["n_classes"] == 2
    assert results["n_samples"] == 24 * len(splits)
    assert min(arm["mean"] for arm in results["arms"]) > 0.9  # bar orientation: every arm separates them


def test_dataset_path_split_without_test_exits_1(tmp_path, capsys):
    pytest.importorskip("PIL")
    root = _image_folder(tmp_path / "images", ["train", "valid"])
    assert main([*TINY, "--dataset", str(root)]) == 1
    assert "needs 'train' and 'test'" in _one_error_line(capsys)


def test_unknown_dataset_that_is_no_path_exits_2(capsys):
    assert main([*TINY, "--dataset", "no/such/folder"]) == 2
    assert "no file or folder of that name" in _one_error_line(capsys)


def test_preset_command_scores_held_out_images_and_chooses_the_penalty_on_training_rows(tmp_path, capsys):
    """`skconvfeat preset`: the README's preset recipe from the installed package (issue 23)."""
    pytest.importorskip("PIL")
    root = _image_folder(tmp_path / "images", ["train", "test"])
    assert main(["preset", "coates-digits", "--dataset", str(root), "--validate", "6", "--alphas", "0.01,1",
                 "--json"]) == 0
    out, err = capsys.readouterr()
    results = json.loads(out)  # stdout holds the results alone; the stages, timed, go to stderr
    assert re.search(r"skconvfeat: \[\d+s\] transformer fitted: 3,200 features", err)
    assert "penalty chosen on 1 held-out training images" in err and "test set scored once" in err
    assert results["evaluated_on"] == "held-out training images" and results["n_test"] == 6
    assert results["n_train"] == 18 and results["test_evaluations"] == 1
    assert len(results["validation_scores"]) == 2 and results["alpha"] in (0.01, 1.0)
    assert results["test_accuracy"] > 0.8  # horizontal against vertical bars
    assert main(["preset", "coates-digits", "--dataset", str(root), "--alphas", "0.01"]) == 0
    assert "test set (24 images, scored once)" in capsys.readouterr().out


def test_preset_command_overrides_transformer_parameters(tmp_path, capsys):
    """`--set KEY=VALUE`: the settings compared on held-out images are command lines too (issue 25)."""
    pytest.importorskip("PIL")
    root = _image_folder(tmp_path / "images", ["train", "test"])
    assert main(["preset", "coates-digits", "--dataset", str(root), "--validate", "6", "--alphas", "0.01",
                 "--set", "nonlinearity=two_sided_nearest", "--set", "pool_grid=2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["preset_params"] == {"nonlinearity": "two_sided_nearest", "pool_grid": 2}
    assert results["n_features"] == 2 * 200 * 4  # two sides of 200 kernels on a 2x2 grid


def test_preset_command_adds_moved_copies_with_shift(tmp_path, capsys):
    """`--shift PIXELS`: four moved copies of each training image, the augmentation chosen for MNIST (issue 25)."""
    pytest.importorskip("PIL")
    root = _image_folder(tmp_path / "images", ["train", "test"])
    assert main(["preset", "coates-digits", "--dataset", str(root), "--validate", "6", "--alphas", "0.01",
                 "--shift", "1"]) == 0
    assert "18 training images x 5 copies" in capsys.readouterr().out


def test_preset_command_adds_turned_copies_with_rotate(tmp_path, capsys):
    """`--rotate DEGREES`: two copies of each training image turned each way, for handwriting's slant (issue 25)."""
    pytest.importorskip("PIL")
    root = _image_folder(tmp_path / "images", ["train", "test"])
    assert main(["preset", "coates-digits", "--dataset", str(root), "--validate", "6", "--alphas", "0.01",
                 "--rotate", "10", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["rotate"] == 10.0 and results["n_views"] == 3


def test_preset_command_interrupted_goes_on_from_its_checkpoint(tmp_path, capsys, monkeypatch):
    """`--checkpoint DIR`: Ctrl-C after a save exits 130 and keeps the sums; the same command goes on from them."""
    pytest.importorskip("PIL")
    root = _image_folder(tmp_path / "images", ["train", "test"])
    argv = ["preset", "coates-digits", "--dataset", str(root), "--validate", "6", "--alphas", "0.01,1", "--chunk", "4",
            "--checkpoint", str(tmp_path / "ck"), "--checkpoint-every", "0", "--json"]
    printer = _cli._stage_printer

    def interrupting_printer():
        say = printer()

        def progress(text):
            say(text)
            if "checkpoint: 8 of 17" in text:
                raise KeyboardInterrupt

        return progress

    monkeypatch.setattr(_cli, "_stage_printer", interrupting_printer)
    assert main(argv) == 130
    assert "skconvfeat preset: interrupted" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "checkpoint: 8 of 17 training images read from" in err
    assert json.loads(out)["resumed_images"] == 8 and not (tmp_path / "ck").exists()


@pytest.mark.parametrize("argv, message", [
    (["preset", "coates-digits", "--dataset", "digits"], "digits has no test split"),
    (["preset", "coates-digit", "--dataset", "mnist"], "invalid choice: 'coates-digit'"),
    (["preset", "coates-digits", "--dataset", "mnist", "--alphas", "0,1"], "expected comma-separated positive"),
    (["preset", "coates-digits", "--dataset", "mnist", "--set", "nonlinarity=relu"], "expected KEY=VALUE with KEY one"),
    (["preset", "coates-digits", "--dataset", "mnist", "--set", "alpha"], "expected KEY=VALUE"),
    (["preset", "coates-digits", "--dataset", "mnist", "--shift", "-1"], "expected a non-negative integer"),
    (["preset", "coates-digits", "--dataset", "mnist", "--rotate", "50"], "expected a number of degrees from 0 to 45"),
    (["preset", "coates-digits", "--dataset", "mnist", "--checkpoint-every", "soon"],
     "expected a non-negative integer"),
])
def test_preset_command_refuses_bad_options(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
