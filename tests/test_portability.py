"""A model fitted for the GPU loads and transforms where there is no CuPy and no GPU."""

import subprocess
import sys

import joblib
import numpy as np
import pytest

from skconvfeat import FixedConvTransformer, _device

LOAD_WITHOUT_CUPY = """
import sys, warnings
sys.modules["cupy"] = None  # any "import cupy" now fails, as on a machine without it
import joblib, numpy as np
conv = joblib.load(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = conv.transform(np.load(sys.argv[2]))
assert any("no usable GPU" in str(w.message) for w in caught), caught
np.save(sys.argv[3], out)
"""


def test_cuda_model_transforms_without_gpu(tmp_path, monkeypatch):
    images = np.random.default_rng(0).random((20, 28, 28)).astype(np.float32)
    monkeypatch.setattr(_device, "gpu_available", lambda: True)  # fit as on a GPU machine
    conv = FixedConvTransformer(device="cuda", bank="random", random_state=0).fit(images)
    assert isinstance(conv.filters_, np.ndarray)  # fitted state is plain NumPy
    joblib.dump(conv, tmp_path / "conv.joblib")
    np.save(tmp_path / "images.npy", images)
    subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_CUPY, tmp_path / "conv.joblib", tmp_path / "images.npy", tmp_path / "out.npy"],
        check=True,
    )
    expected = conv.set_params(device="cpu").transform(images)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not _device.gpu_available(), reason="needs CuPy and a CUDA device")
def test_gpu_fitted_model_matches_across_processes(tmp_path):
    images = np.random.default_rng(1).random((64, 32, 32, 3)).astype(np.float32)
    conv = FixedConvTransformer(device="cuda", bank="gabor").fit(images)
    joblib.dump(conv, tmp_path / "conv.joblib")
    np.save(tmp_path / "gpu.npy", conv.transform(images))
    np.save(tmp_path / "images.npy", images)
    subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_CUPY, tmp_path / "conv.joblib", tmp_path / "images.npy", tmp_path / "cpu.npy"],
        check=True,
    )
    np.testing.assert_allclose(np.load(tmp_path / "cpu.npy"), np.load(tmp_path / "gpu.npy"), rtol=1e-5, atol=1e-4)
