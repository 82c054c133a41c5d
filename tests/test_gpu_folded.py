"""The data-derived (folded) layer on device="cuda" equals the CPU's: whitening, the three encodings, grid pooling.

Each case runs twice: against tests/fake_cupy.py (NumPy arithmetic through the GPU driver, on any
machine) and against real CuPy (skipped without a CUDA device; benchmarks/gpu_check.sh runs it on one).
The CPU side is the shipped CPU path (numba's fused passes where numba is installed), the GPU side the
layer's array-namespace passes, so the two share the folded kernels but not the code that applies them.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fake_cupy import FakeCupy
from skconvfeat import FixedConvTransformer, _device

# float32 tolerance: relative to the largest feature, as the folded sums cancel (|z|^2 - 2 d.z + |d|^2 for the
# triangle differs by ~5e-6 of the largest feature between the CPU's NumPy and numba passes); a 1% change of
# alpha moves the soft thresholds by ~1e-2 of it.
TOLERANCE = 1e-4
ENCODINGS = ["soft_threshold", "two_sided_soft_threshold", "triangle", "two_sided_nearest"]
POOLS = [dict(pooling="avg", pool_grid=2), dict(pooling="max", pool_grid=(3, 2)), dict(pooling="avg", pool_grid=(3, 2))]
# Grey with 'valid' borders; colour with 'reflect' borders (patch normalisation sees the mirrored pixels).
IMAGES = {
    "grey": (np.random.default_rng(0).integers(0, 256, (23, 14, 13, 1), dtype=np.uint8), "valid"),
    "colour": (np.random.default_rng(1).integers(0, 256, (19, 12, 15, 3), dtype=np.uint8), "reflect"),
}


@pytest.fixture(params=["fake", pytest.param("cupy", marks=pytest.mark.gpu)])
def cuda(request, monkeypatch):
    """The CuPy module device='cuda' computes with: the NumPy-backed fake, or the real one."""
    if request.param == "fake":
        cupy = FakeCupy()
        monkeypatch.setattr(_device, "_cupy", lambda: cupy)
        return cupy
    if not _device.gpu_available():
        pytest.skip("needs CuPy and a CUDA device")
    import cupy

    return cupy


def _fitted(images, padding, **params):
    """A whitened k-means layer, fitted on the CPU so both devices use the same filters and whitening."""
    return FixedConvTransformer(
        bank="kmeans", bank_params={"n_filters": 24, "max_iter": 3}, kernel_size=5, padding=padding,
        n_patches=3000, eps_zca=0.1, device="cpu", random_state=0, **params,
    ).fit(images)


@pytest.mark.parametrize("kind", sorted(IMAGES))
@pytest.mark.parametrize("pool", POOLS, ids=["avg2", "max3x2", "avg3x2"])
@pytest.mark.parametrize("nonlinearity", ENCODINGS)
def test_folded_layer_on_gpu_matches_cpu(cuda, kind, pool, nonlinearity):
    images, padding = IMAGES[kind]
    conv = _fitted(images, padding, nonlinearity=nonlinearity, **pool)
    assert conv.preprocessing_.whitening is not None  # the case this test is about
    expected = conv.transform(images)
    gpu = conv.set_params(device="cuda").transform(images)
    assert type(gpu) is np.ndarray and gpu.dtype == np.float32 and gpu.shape == expected.shape
    assert np.abs(expected).max() > 0  # an all-zero layer would match anything
    assert_allclose(gpu, expected, rtol=TOLERANCE, atol=TOLERANCE * np.abs(expected).max())


@pytest.mark.parametrize("nonlinearity", ENCODINGS)
def test_folded_layer_device_input_stays_on_device(cuda, nonlinearity):
    images, padding = IMAGES["colour"]
    conv = _fitted(images, padding, nonlinearity=nonlinearity, pool_grid=2)
    expected = conv.transform(images)
    out = conv.set_params(device="cuda", batch_size=4).transform(cuda.asarray(images))
    assert type(out).__module__.startswith("cupy")
    assert_allclose(out.get(), expected, rtol=TOLERANCE, atol=TOLERANCE * np.abs(expected).max())
