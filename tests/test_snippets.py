"""Every ```python snippet of the README and of docs/ runs as pasted, offline.

A page's snippets run in order in one fresh interpreter, as a reader pasting
them into one session would run them, with the network cut off and an empty
data folder. A marker line just before a block changes that:

* ``<!-- snippet: needs-data -->``: the block reads datasets; it runs in
  ``../shared/data`` (also its ``SKCONVFEAT_DATA``) when that folder exists,
  and is left out otherwise;
* ``<!-- snippet: skip -->``: the block never runs (say why next to it).

The markers are HTML comments, so neither GitHub nor the Sphinx site shows them.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MARKERS = ("needs-data", "skip")
# Sphinx writes these under docs/ when the site is built in place.
BUILD_OUTPUTS = ("_build", "generated", "auto_examples")

_BLOCK = re.compile(
    r"^(?:<!-- snippet: (?P<marker>[\w-]+) -->\n)?```python\n(?P<code>.*?)^```$",
    flags=re.S | re.M,
)

# Runs in the child: cut the network, then exec each block in one namespace.
_DRIVER = r"""
import json, os, socket, sys, traceback

def _offline(*args, **kwargs):
    raise OSError("snippets run offline: this one tried to open a network connection")

socket.socket.connect = socket.socket.connect_ex = _offline
socket.create_connection = _offline
namespace = {"__name__": "__main__"}
for block in json.load(sys.stdin):
    os.chdir(block["cwd"])
    os.environ["SKCONVFEAT_DATA"] = block["data_home"]
    try:
        exec(compile(block["code"], block["where"], "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"FAILED: {block['where']}")
"""


def pages():
    docs = [
        p for p in sorted((ROOT / "docs").rglob("*.md"))
        if not set(p.relative_to(ROOT / "docs").parts) & set(BUILD_OUTPUTS)
    ]
    return [ROOT / "README.md", *docs]


def snippets(page):
    """``(marker, code, line)`` of each python block of ``page``."""
    text = page.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        marker = match["marker"]
        if marker is not None and marker not in MARKERS:
            raise ValueError(f"{page}: unknown snippet marker {marker!r}; use one of {MARKERS}")
        line = text.count("\n", 0, match.start("code")) + 1
        found.append((marker, match["code"], line))
    return found


def test_markers_are_found():
    datasets = snippets(ROOT / "docs" / "datasets.md")
    assert [marker for marker, _, _ in datasets][:2] == ["needs-data", None]
    assert snippets(ROOT / "README.md"), "the README's snippet was not found"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_snippets_run_as_pasted(page, tmp_path):
    blocks = []
    for marker, code, line in snippets(page):
        if marker == "skip" or (marker == "needs-data" and not SHARED_DATA.is_dir()):
            continue
        with_data = marker == "needs-data"
        blocks.append({
            "code": code,
            "where": f"{page.relative_to(ROOT)}, snippet at line {line}",
            "cwd": str(SHARED_DATA if with_data else tmp_path),
            "data_home": str(SHARED_DATA if with_data else tmp_path / "no-data"),
        })
    if not blocks:
        pytest.skip("no runnable python snippet on this page")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MPLBACKEND": "Agg",
        "TMPDIR": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER], input=json.dumps(blocks), env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_snippet_prints_its_accuracy(tmp_path):
    (_, code, _), *_ = snippets(ROOT / "README.md")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    ).stdout
    accuracy = float(re.fullmatch(r"test accuracy: (0\.\d+)\n", out)[1])
    assert 0.9 < accuracy <= 1.0
