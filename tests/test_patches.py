"""Data-derived banks, patch preprocessing and dictionary encodings, against the slow references in reference.py."""

import itertools
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from reference import reference_patch_layer, reference_whitening
from skconvfeat import FixedConvTransformer, list_banks, make_bank, register_bank
from skconvfeat._backend import cpu
from skconvfeat._banks import _BANK_INFO, _REGISTRY
from skconvfeat._patches import fit_preprocessing, sample_patches

RGB = np.random.default_rng(0).integers(0, 256, size=(12, 10, 9, 3), dtype=np.uint8)
ENCODINGS = ["triangle", "soft_threshold", "two_sided_soft_threshold", "relu", "two_sided_relu", "none"]


@pytest.fixture(params=["compiled", "numpy"])
def layer_path(request, monkeypatch):
    """The folded layer two ways on the CPU: numba's compiled passes and the NumPy calls (as without numba)."""
    if request.param == "numpy":
        monkeypatch.setattr(cpu, "compiled_kernels", lambda: None)
    elif cpu.compiled_kernels() is None:
        pytest.skip("numba is not installed (the 'fast' extra): only the NumPy path runs here")
    return request.param


def _reference(conv, images):
    spec = conv.layer_.spec
    prep = conv.preprocessing_
    return reference_patch_layer(
        images,
        conv.filters_,
        patch_norm=prep is not None and prep.patch_norm,
        eps_norm=conv.eps_norm,
        mean=None if prep is None else prep.mean,
        whitening=None if prep is None else prep.whitening,
        nonlinearity=conv.nonlinearity,
        alpha=conv.alpha,
        padding=conv.padding,
        pooling=conv.pooling,
        pool_size=spec.pool_size,
        pool_stride=spec.pool_stride,
        pool_grid=spec.pool_grid,
    )


@pytest.mark.parametrize(
    "nonlinearity, pool, padding",
    list(
        itertools.product(
            ENCODINGS,
            [dict(pool_grid=2), dict(pool_grid=(3, 2), pooling="max"), dict(pool_size=3, pool_stride=2)],
            ["valid", "same", "reflect"],
        )
    ),
)
def test_kmeans_layer_matches_reference(nonlinearity, pool, padding, layer_path):
    conv = FixedConvTransformer(
        bank="kmeans",
        bank_params={"n_filters": 6},
        kernel_size=(3, 4),  # even width exercises the asymmetric padding
        nonlinearity=nonlinearity,
        padding=padding,
        alpha=0.3,
        n_patches=400,
        dtype="float64",
        random_state=0,
        **pool,
    ).fit(RGB)
    assert conv.preprocessing_.whitening is not None and conv.preprocessing_.patch_norm
    assert_allclose(conv.transform(RGB), _reference(conv, RGB), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "bank, patch_norm, whiten, n_channels",
    [
        ("gabor", True, False, 1),
        ("gabor", False, True, 1),
        ("random", True, True, 3),
        ("random", False, False, 3),  # triangle without any preprocessing: distances to the raw kernels
        ("pca", "auto", "auto", 3),
        ("patches", "auto", "auto", 5),  # any channel count, e.g. a previous layer's maps
    ],
)
@pytest.mark.parametrize("nonlinearity", ["triangle", "two_sided_soft_threshold", "abs"])
def test_any_bank_and_preprocessing_matches_reference(bank, patch_norm, whiten, n_channels, nonlinearity, layer_path):
    images = np.random.default_rng(1).random((6, 9, 8, n_channels)) * 255
    params = {"n_filters": 5} if bank in ("random", "pca", "patches") else {"n_orientations": 2}
    conv = FixedConvTransformer(
        bank=bank,
        bank_params=params,
        kernel_size=3,
        patch_norm=patch_norm,
        whiten=whiten,
        nonlinearity=nonlinearity,
        pool_grid=2,
        n_patches=300,
        dtype="float64",
        random_state=0,
    ).fit(images)
    assert_allclose(conv.transform(images), _reference(conv, images), rtol=1e-9, atol=1e-9)


def test_float32_tiles_and_threads_agree_with_float64(monkeypatch, layer_path):
    conv = FixedConvTransformer(bank="kmeans", bank_params={"n_filters": 8}, kernel_size=3, nonlinearity="triangle", pool_grid=3, random_state=0)
    f32 = conv.fit_transform(RGB)
    assert f32.dtype == np.float32
    f64 = conv.set_params(dtype="float64").transform(RGB)
    assert_allclose(f32, f64, rtol=1e-3, atol=1e-4)
    # Tiles of a few map rows (pooling accumulates across them) give the same features.
    monkeypatch.setattr(cpu, "CPU_TILE_BYTES", 400)
    assert_allclose(conv.transform(RGB), f64, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", [*ENCODINGS, "abs", "square"])
@pytest.mark.parametrize("pool", [dict(pool_grid=2), dict(pool_grid=(3, 2), pooling="max"), dict(pool_grid=(4, 3))])
def test_compiled_passes_match_numpy_passes_in_float32(monkeypatch, nonlinearity, pool):
    """Multi-image batches, tiles that split images, overlapping regions: both CPU paths, to float32 rounding."""
    if cpu.compiled_kernels() is None:
        pytest.skip("numba is not installed (the 'fast' extra)")
    images = np.random.default_rng(3).integers(0, 256, size=(7, 11, 13, 3), dtype=np.uint8)
    conv = FixedConvTransformer(
        bank="kmeans", bank_params={"n_filters": 9}, kernel_size=3, nonlinearity=nonlinearity, alpha=0.2, batch_size=3,
        n_patches=500, random_state=0, **pool,
    ).fit(images)
    monkeypatch.setattr(cpu, "CPU_TILE_BYTES", 3000)  # ~7 positions a tile: tiles end mid-row and mid-image
    compiled = conv.transform(images)
    monkeypatch.setattr(cpu, "compiled_kernels", lambda: None)
    numpy_passes = conv.transform(images)
    assert compiled.dtype == np.float32 and np.all(np.isfinite(compiled))
    assert_allclose(compiled, numpy_passes, rtol=2e-5, atol=1e-5 * np.abs(numpy_passes).max())


def test_position_regions_list_every_region_a_position_pools_into():
    from skconvfeat._layer import grid_bounds, position_regions

    map_hw, grid = (5, 7), (3, 4)  # 5 rows in 3 regions and 7 columns in 4: adjacent regions overlap
    members = position_regions(2, map_hw, grid)
    rows, cols = grid_bounds(5, 3), grid_bounds(7, 4)
    for p, listed in enumerate(members):
        image, y, x = p // 35, (p % 35) // 7, p % 7
        expected = {image * 12 + i * 4 + j for i, (a, b) in enumerate(rows) for j, (c, d) in enumerate(cols) if a <= y < b and c <= x < d}
        assert set(listed[listed >= 0].tolist()) == expected
    assert np.all(members[:, 0] >= 0)  # every position pools somewhere: the compiled triangle relies on it
    assert not members.flags.writeable  # cached: nobody may change it


def test_without_numba_the_numpy_passes_run(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    assert cpu.compiled_kernels() is None
    conv = FixedConvTransformer(bank="kmeans", bank_params={"n_filters": 4}, kernel_size=3, pool_grid=2, dtype="float64", random_state=0).fit(RGB)
    assert_allclose(conv.transform(RGB), _reference(conv, RGB), rtol=1e-9, atol=1e-9)


def test_whitening_matches_reference():
    patches = np.random.default_rng(2).random((500, 2, 3, 3)) * 255
    for patch_norm in (True, False):
        prep, whitened = fit_preprocessing(patches, patch_norm=patch_norm, eps_norm=10.0, whiten=True, eps_zca=0.1)
        mean, whitening = reference_whitening(patches, patch_norm=patch_norm, eps_norm=10.0, eps_zca=0.1)
        assert_allclose(prep.mean, mean, rtol=1e-10, atol=1e-10)
        assert_allclose(prep.whitening, whitening, rtol=1e-8, atol=1e-10)
        rows = patches.reshape(500, -1)
        if patch_norm:
            rows = (rows - rows.mean(axis=1, keepdims=True)) / np.sqrt(rows.var(axis=1, keepdims=True) + 10.0)
        assert_allclose(whitened.reshape(500, -1), (rows - mean) @ whitening.T, rtol=1e-8, atol=1e-8)
    # With a tiny epsilon the whitened patches have (nearly) identity covariance.
    _, whitened = fit_preprocessing(patches, patch_norm=False, eps_norm=10.0, whiten=True, eps_zca=1e-9)
    assert_allclose(np.cov(whitened.reshape(500, -1), rowvar=False, bias=True), np.eye(18), atol=1e-6)


def test_sampled_patches_come_from_the_images_and_follow_random_state():
    images = np.random.default_rng(3).random((4, 7, 6, 2))
    patches = sample_patches(images, (3, 2), "valid", 50, np.random.RandomState(0))
    assert patches.shape == (50, 2, 3, 2)
    windows = np.lib.stride_tricks.sliding_window_view(images, (3, 2), axis=(1, 2)).reshape(-1, 2, 3, 2)
    for p in patches:
        assert np.any(np.all(windows == p, axis=(1, 2, 3)))
    assert_array_equal(patches, sample_patches(images, (3, 2), "valid", 50, np.random.RandomState(0)))
    # Asking for more patches than positions takes every position once.
    assert sample_patches(images, (3, 2), "valid", 10**6, np.random.RandomState(0)).shape[0] == 4 * 5 * 5
    # Zero padding: corner patches of 'same' hold zeros outside the image.
    padded = sample_patches(images, (3, 3), "same", 10**6, np.random.RandomState(0))
    assert_array_equal(padded[0, :, 0, :], 0)
    assert_array_equal(padded[0, :, 1:, 1:], images[0, :2, :2].transpose(2, 0, 1))


def test_fit_is_reproducible_and_ignores_labels():
    params = dict(bank="kmeans", bank_params={"n_filters": 6}, kernel_size=3, n_patches=300)
    a = FixedConvTransformer(random_state=0, **params).fit(RGB, y=np.arange(12))
    b = FixedConvTransformer(random_state=0, **params).fit(RGB)
    c = FixedConvTransformer(random_state=1, **params).fit(RGB)
    assert_array_equal(a.filters_, b.filters_)
    assert_array_equal(a.preprocessing_.whitening, b.preprocessing_.whitening)
    assert not np.allclose(a.filters_, c.filters_)


def test_pca_bank_is_the_leading_principal_components():
    from sklearn.decomposition import PCA

    patches = np.random.default_rng(4).standard_normal((800, 1, 3, 3)) * np.linspace(1, 3, 9).reshape(1, 1, 3, 3)
    bank = make_bank("pca", kernel_size=3, patches=patches, n_filters=4).reshape(4, -1)
    components = PCA(n_components=4).fit(patches.reshape(800, -1)).components_
    assert_allclose(np.abs(np.sum(bank * components, axis=1)), 1, atol=1e-8)
    assert not _BANK_INFO["pca"].whiten  # its patches are not whitened by default


def test_kmeans_bank_finds_the_clusters():
    rng = np.random.default_rng(5)
    directions = np.linalg.qr(rng.standard_normal((9, 9)))[0][:3]  # 3 orthonormal directions
    rows = directions[rng.integers(0, 3, 600)] * rng.uniform(1, 2, (600, 1)) + 0.05 * rng.standard_normal((600, 9))
    patches = rows.reshape(600, 1, 3, 3)
    # Spherical (the default): unit centroids along the three directions.
    bank = make_bank("kmeans", kernel_size=3, patches=patches, n_filters=3, max_iter=20, random_state=0).reshape(3, -1)
    assert_allclose(np.linalg.norm(bank, axis=1), 1)
    assert_allclose(np.sort(np.max(np.abs(bank @ directions.T), axis=0)), 1, atol=0.01)
    # Euclidean (Lloyd): converged centroids are the means of the patches nearest to them.
    bank = make_bank("kmeans", kernel_size=3, patches=patches, n_filters=4, max_iter=50, spherical=False, random_state=0).reshape(4, -1)
    nearest = np.argmin(((rows[:, None] - bank[None]) ** 2).sum(axis=2), axis=1)
    assert_allclose(bank, [rows[nearest == k].mean(axis=0) for k in range(4)], atol=1e-10)


def test_patches_bank_picks_distinct_unit_norm_patches():
    patches = np.random.default_rng(6).standard_normal((40, 2, 2, 2))
    bank = make_bank("patches", kernel_size=2, n_channels=2, patches=patches, n_filters=10, random_state=0).reshape(10, -1)
    unit = patches.reshape(40, -1) / np.linalg.norm(patches.reshape(40, -1), axis=1, keepdims=True)
    assert_allclose(np.linalg.norm(bank, axis=1), 1)
    assert all(np.any(np.all(np.isclose(unit, k), axis=1)) for k in bank)
    assert len(np.unique(bank, axis=0)) == 10


def test_user_registered_data_bank():
    seen = {}

    @register_bank("test-first-patches", needs_data=True, whiten=False)
    def first_patches(patches, kernel_size, n_channels, n_filters=2):
        seen["patches"] = patches
        return patches[:n_filters]

    try:
        assert "test-first-patches" in list_banks()
        conv = FixedConvTransformer(bank="test-first-patches", kernel_size=3, n_patches=50, random_state=0).fit(RGB)
        # Normalised per patch (patch_norm="auto"), not whitened (registered whiten=False).
        assert seen["patches"].shape == (50, 3, 3, 3)
        assert_allclose(seen["patches"].reshape(50, -1).mean(axis=1), 0, atol=1e-12)
        assert conv.preprocessing_.patch_norm and conv.preprocessing_.whitening is None
        assert_array_equal(conv.filters_, seen["patches"][:2])
        with pytest.raises(ValueError, match=r"The 'test-first-patches' bank is derived from data: pass patches="):
            make_bank("test-first-patches", kernel_size=3)
    finally:
        del _REGISTRY["test-first-patches"], _BANK_INFO["test-first-patches"]


def test_hand_crafted_banks_keep_their_behaviour_by_default():
    conv = FixedConvTransformer(bank="gabor", kernel_size=3, pool_grid=2).fit(RGB)
    assert conv.preprocessing_ is None
    assert conv.set_params(patch_norm=True).fit(RGB).preprocessing_.whitening is None


def test_fake_gpu_runs_the_folded_layer(monkeypatch):
    from fake_cupy import FakeCupy
    from skconvfeat import _device

    cupy = FakeCupy()
    monkeypatch.setattr(_device, "_cupy", lambda: cupy)
    params = dict(bank="kmeans", bank_params={"n_filters": 5}, kernel_size=3, nonlinearity="triangle", pool_grid=2, random_state=0)
    expected = FixedConvTransformer(device="cpu", **params).fit(RGB).transform(RGB)
    gpu = FixedConvTransformer(device="cuda", batch_size=5, **params).fit(cupy.asarray(RGB))
    assert_allclose(gpu.transform(cupy.asarray(RGB)).get(), expected, rtol=1e-5, atol=1e-6)
    assert_allclose(gpu.transform(RGB), expected, rtol=1e-5, atol=1e-6)


def test_4000_filters_on_cifar_sized_images_in_bounded_memory(layer_path):
    """K=4,000 on 32x32x3: scratch stays a few tiles per thread, never one image's 729 x K maps per image."""
    images = np.random.default_rng(7).integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
    conv = FixedConvTransformer(
        bank="random", bank_params={"n_filters": 4000}, kernel_size=6, whiten=True, patch_norm=True,
        nonlinearity="two_sided_soft_threshold", pool_grid=2, n_patches=2000, random_state=0,
    ).fit(images)
    tracemalloc.start()
    out = conv.transform(images)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == (24, 2 * 4000 * 4) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    folded_kernels = 110 * 4000 * 4
    all_maps = images.shape[0] * 27 * 27 * 4000 * 2 * 4  # what an untiled layer would hold
    bound = folded_kernels + 2 * cpu.cpu_threads() * (4 << 20)  # documented: kernels + ~2 tiles' scratch per thread
    assert peak - out.nbytes < bound < all_maps / 20


def test_sampled_patches_larger_than_memory_are_refused_before_they_are_drawn(monkeypatch):
    """Issue 27: a huge n_patches on a large dataset was drawn until the OS killed the process."""
    from skconvfeat import FixedConvTransformer, _device

    monkeypatch.setattr(_device, "physical_memory_bytes", lambda: 2**20)  # 1 MiB
    X = np.random.default_rng(0).uniform(0, 255, (50, 16, 16))
    kmeans = FixedConvTransformer("kmeans", kernel_size=5, n_patches=10_000, random_state=0)
    with pytest.raises(ValueError, match=r"would sample 7,200 patches of 25 values, 2\.7 MiB .* 1\.0 MiB of memory"):
        kmeans.fit(X)  # 50 images x 144 positions: all 7,200 are taken, 2.7 MiB with their copy
    assert not hasattr(kmeans, "layer_")
    monkeypatch.setattr(_device, "physical_memory_bytes", lambda: 2**23)  # 8 MiB: they fit
    assert kmeans.set_params(bank_params={"n_filters": 8}).fit(X).transform(X[:2]).shape[0] == 2
