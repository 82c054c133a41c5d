"""benchmarks/gpu_check.py, the prepared GPU session, checked on the CPU: arguments, the no-device path,
and a tiny run with the fake CuPy in which one step fails and the others still run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from skconvfeat._device import gpu_available

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _module():
    return load_benchmark("gpu_check")


def _run(*argv, timeout=180):
    return subprocess.run([sys.executable, str(SCRIPT), *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


def _table(stdout):
    """``{step: status}`` from the final table (the lines between the header and the closing line)."""
    lines = stdout.splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("step "))
    rows = [line for line in lines[header + 1 :] if line.strip() and not line.startswith("gpu_check:")]
    status_at = lines[header].index("status")
    return {line[:status_at].strip(): line[status_at:].split("  ")[0] for line in rows}


def test_help_names_every_step_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        _module().main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "--fake-cupy" in out and "--prepare" in out and "layer-cifar" in out


@pytest.mark.parametrize("argv, message", [
    (["--steps", "layer-cifr"], "unknown step(s) layer-cifr; choose from versions, tests"),
    (["--steps", ","], "unknown step(s) ','"),
    (["--prepare", "--quick"], "--prepare runs alone"),
    (["--budget", "0"], "expected a positive number of seconds"),
    (["--quikc"], "unrecognized arguments: --quikc"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        _module().main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_steps_run_in_their_fixed_order():
    assert _module().parse_args(["--steps", "study,tests,layer-mnist"]).steps == ["tests", "layer-mnist", "study"]


@pytest.mark.skipif(gpu_available(), reason="checks the path of a machine without a CUDA device")
def test_without_a_device_gpu_steps_are_skipped_and_exit_3(tmp_path):
    result = _run("--quick", "--steps", "layer-mnist,dictionary", f"--data={tmp_path}")
    assert result.returncode == 3, result.stderr
    assert _table(result.stdout) == {"layer-mnist": "skipped: no CUDA device (CuPy sees none)",
                                     "dictionary": "skipped: no CUDA device (CuPy sees none)"}
    assert result.stdout.splitlines()[-1].endswith("exit 3")


def test_fake_cupy_quick_run_isolates_a_failing_step(tmp_path):
    # A CIFAR sample of the wrong shape makes the dictionary step fail; the MNIST layer step still runs
    # (on random pixels: no MNIST sample) and the table says which failed and why.
    np.save(tmp_path / "cifar10_sample.npy", np.zeros((3, 5, 7), np.uint8))
    result = _run("--quick", "--fake-cupy", "--steps", "layer-mnist,dictionary", f"--data={tmp_path}")
    assert result.returncode == 1, result.stderr
    table = _table(result.stdout)
    assert table == {"mnist resident/cuDNN": "ran", "mnist NumPy/floor": "ran", "dictionary": "FAILED"}
    assert "cannot reshape array" in result.stdout.split("\nstep ")[-1]  # the reason, in the table
    assert "random pixels" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("exit 1")


def test_out_of_time_steps_are_reported_not_run(tmp_path):
    result = _run("--quick", "--fake-cupy", "--budget", "0.001", "--steps", "tests,study", f"--data={tmp_path}")
    assert result.returncode == 1
    assert _table(result.stdout) == {"tests": "skipped: out of time (0.001 s for all steps)",
                                     "study": "skipped: out of time (0.001 s for all steps)"}
