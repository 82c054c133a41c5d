"""The CuPy path computes the same function as the CPU path (run on a machine with a GPU)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skconvfeat import FixedConvTransformer
from skconvfeat._device import gpu_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA device"),
]

BANKS = ["gaussian", "gabor", "sharpen", "random", "identity"]
NONLINEARITIES = ["none", "relu", "abs", "square", "two_sided_relu"]
POOLS = [dict(pooling="avg", pool_size=2), dict(pooling="max", pool_size=3, pool_stride=2), dict(pooling="avg", pool_grid=2), dict(pooling="max", pool_grid=(3, 2))]


def _pair(params, images):
    cpu = FixedConvTransformer(device="cpu", random_state=0, **params).fit(images)
    gpu = FixedConvTransformer(device="cuda", random_state=0, **params).fit(images)
    return cpu.transform(images), gpu.transform(images)


@pytest.mark.parametrize("bank", BANKS)
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("channels, channel_mode, padding", [(1, "sum", "valid"), (3, "sum", "same"), (3, "separate", "reflect")])
def test_gpu_matches_cpu(bank, nonlinearity, pool, channels, channel_mode, padding):
    images = np.random.default_rng(0).random((17, 13, 12, channels)).astype(np.float32)
    cpu, gpu = _pair(dict(bank=bank, kernel_size=3, nonlinearity=nonlinearity, channel_mode=channel_mode, padding=padding, **pool), images)
    assert isinstance(gpu, np.ndarray) and gpu.dtype == np.float32
    assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-5 * np.abs(cpu).max())


def test_cupy_in_cupy_out():
    import cupy as cp

    images = np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    conv = FixedConvTransformer(device="cuda").fit(images)
    out = conv.transform(cp.asarray(images))
    assert isinstance(out, cp.ndarray)
    assert_allclose(out.get(), conv.set_params(device="cpu").transform(images), rtol=1e-5, atol=1e-4)


def test_small_batches_and_oom_retry_give_whole_result():
    images = np.random.default_rng(2).random((1000, 32, 32, 3)).astype(np.float32)
    conv = FixedConvTransformer(device="cuda", batch_size=7).fit(images)
    expected = conv.set_params(device="cpu").transform(images)
    assert_allclose(conv.set_params(device="cuda").transform(images), expected, rtol=1e-5, atol=1e-4)
