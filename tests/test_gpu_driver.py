"""The GPU driver's logic (batches, staging pipeline, out-of-memory retries), run on CI with a fake CuPy."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fake_cupy import FakeCupy
from skconvfeat import FixedConvTransformer, _device


@pytest.fixture
def fake_gpu(monkeypatch):
    def install(**kwargs):
        cupy = FakeCupy(**kwargs)
        monkeypatch.setattr(_device, "_cupy", lambda: cupy)
        return cupy

    return install


IMAGES = np.random.default_rng(0).integers(0, 256, size=(103, 12, 11, 3), dtype=np.uint8)
PARAMS = dict(bank="random", kernel_size=3, nonlinearity="two_sided_relu", pool_grid=2, random_state=0)


def _cpu_features(**params):
    return FixedConvTransformer(device="cpu", **{**PARAMS, **params}).fit(IMAGES).transform(IMAGES)


@pytest.mark.parametrize("batch_size", [1, 7, 50, 1000])
def test_host_pipeline_matches_cpu(fake_gpu, batch_size):
    fake_gpu()
    conv = FixedConvTransformer(device="cuda", batch_size=batch_size, **PARAMS).fit(IMAGES)
    out = conv.transform(IMAGES)
    assert type(out) is np.ndarray and out.dtype == np.float32
    assert_allclose(out, _cpu_features(), rtol=1e-6)


def test_device_input_gives_device_output(fake_gpu):
    cupy = fake_gpu()
    conv = FixedConvTransformer(device="cuda", batch_size=10, **PARAMS).fit(IMAGES)
    out = conv.transform(cupy.asarray(IMAGES))
    assert type(out).__module__ == "cupy"
    assert_allclose(out.get(), _cpu_features(), rtol=1e-6)


def test_auto_batches_follow_free_memory(fake_gpu):
    cupy = fake_gpu(free_bytes=400_000)  # room for a few images' scratch per batch
    out = FixedConvTransformer(device="cuda", **PARAMS).fit(IMAGES).transform(IMAGES)
    assert_allclose(out, _cpu_features(), rtol=1e-6)
    assert max(cupy.allocations) < IMAGES.size * 4  # never the whole dataset at once


def test_out_of_memory_halves_batches_and_returns_the_whole_result(fake_gpu):
    per_image_patches = 12 * 11 * 27  # im2col patches of one image, the largest allocation
    cupy = fake_gpu(allocation_limit=9 * per_image_patches)
    out = FixedConvTransformer(device="cuda", batch_size=64, **PARAMS).fit(IMAGES).transform(IMAGES)
    assert cupy.pool_frees >= 3  # 64 -> 32 -> 16 -> 8
    assert_allclose(out, _cpu_features(), rtol=1e-6)


def test_out_of_memory_at_one_image_names_batch_size(fake_gpu):
    fake_gpu(allocation_limit=1000)  # the kernels fit, one image's patches (3564) do not
    conv = FixedConvTransformer(device="cuda", batch_size=4, **PARAMS).fit(IMAGES)
    with pytest.raises(MemoryError, match="even with batch_size=1.*device='cpu'"):
        conv.transform(IMAGES)
