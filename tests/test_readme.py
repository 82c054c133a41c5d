"""The README's set-up commands and CI stay in step."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_opens_with_main_job_and_test_commands():
    main_job, tests = _readme_commands()[:2]
    assert main_job.startswith("python3 -m venv") and main_job.endswith("skconvfeat")
    assert "torch==2.13.0" in main_job and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci_lines
