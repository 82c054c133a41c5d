"""``import skconvfeat`` stays light: neither PyTorch, numba nor the study application comes with it."""

import subprocess
import sys


def test_import_skconvfeat_loads_neither_torch_numba_nor_the_study():
    code = (
        "import sys, skconvfeat\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'matplotlib', 'numba', 'llvmlite'}"
        " or m.startswith('skconvfeat.study'))\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
