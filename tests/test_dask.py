"""Dask: lazy transforms, dask-ml wrappers, and a real LocalCluster (processes on 127.0.0.1)."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import RidgeClassifier, SGDClassifier  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from skconvfeat import FixedConvTransformer, register_bank  # noqa: E402
from skconvfeat._banks import _REGISTRY  # noqa: E402
from skconvfeat._input import sample_images  # noqa: E402

X, y = load_digits(return_X_y=True)
IMAGES = X.reshape(-1, 8, 8)
COMPUTED = []


def _counted(block):
    COMPUTED.append(len(block))
    return block


def lazy(array, chunks):
    """A Dask array that records every block it computes."""
    COMPUTED.clear()
    meta = np.empty((0,) * array.ndim, dtype=array.dtype)  # so Dask does not call _counted to find it
    return da.from_array(array, chunks=chunks).map_blocks(_counted, dtype=array.dtype, meta=meta)


def conv(**params):
    return FixedConvTransformer(kernel_size=3, pool_grid=2, **params)


def test_fit_reads_only_shape_and_dtype():
    fitted = conv().fit(lazy(IMAGES, (100, 4, 8)))
    assert COMPUTED == []
    assert fitted.image_shape_ == (8, 8, 1) and fitted.n_features_in_ == 64


@pytest.mark.parametrize(
    "array, chunks",
    [(X, (300, 16)), (IMAGES, (250, 3, 8)), (IMAGES[..., None].repeat(3, axis=3), (400, 8, 8, 1))],
    ids=["flat rows chunked over columns", "images chunked over rows", "colour images chunked over channels"],
)
def test_transform_is_lazy_with_the_right_metadata(array, chunks):
    fitted = conv().fit(array)
    dask_X = lazy(array, chunks)
    out = fitted.transform(dask_X)
    assert COMPUTED == []
    assert isinstance(out, da.Array) and isinstance(out._meta, np.ndarray)
    assert out.shape == (len(array), fitted.n_features_out_) and out.dtype == np.float32
    assert out.chunks == (dask_X.chunks[0], (fitted.n_features_out_,))
    # Blocks split the BLAS work differently from one call: equal up to rounding.
    np.testing.assert_allclose(out.compute(), fitted.transform(array), rtol=1e-6)


def test_lazy_errors_come_early_or_at_compute():
    fitted = conv().fit(IMAGES)
    with pytest.raises(ValueError, match="fitted on images of shape"):
        fitted.transform(da.zeros((10, 7, 7), chunks=5))
    bad = IMAGES.copy()
    bad[5, 2, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fitted.transform(da.from_array(bad, chunks=100)).compute()
    with pytest.raises(ValueError, match="data_format='channels_first'"):
        conv().fit(da.zeros((10, 3, 8, 8), chunks=5))


def test_pandas_output_with_dask_input_says_what_to_do():
    fitted = conv().fit(IMAGES).set_output(transform="pandas")
    with pytest.raises(ValueError, match=r"set_output\(transform='default'\).*from_dask_array"):
        fitted.transform(lazy(IMAGES, 100))
    assert COMPUTED == []


def test_dask_dataframe_is_refused_with_a_hint():
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = dd.from_pandas(pd.DataFrame(X), npartitions=2)
    for call in (conv().fit, conv().fit(X).transform):
        with pytest.raises(TypeError, match=r"to_dask_array\(lengths=True\)"):
            call(frame)


def test_sample_images_computes_only_the_chunks_it_draws_from():
    sample = sample_images(lazy(IMAGES, (10, 8, 8)), 5, random_state=0)  # 180 chunks of 10 images
    assert isinstance(sample, np.ndarray) and sample.shape == (5, 8, 8)
    assert len(COMPUTED) <= 5
    picked = np.sort(np.random.RandomState(0).choice(len(IMAGES), 5, replace=False))
    np.testing.assert_array_equal(sample, IMAGES[picked])


def test_data_derived_bank_fits_from_a_bounded_sample(monkeypatch):
    from skconvfeat import _transformer

    params = dict(bank="kmeans", bank_params={"n_filters": 8}, n_patches=2_000, random_state=0)
    monkeypatch.setattr(_transformer, "_DASK_FIT_IMAGES", 40)
    fitted = conv(**params).fit(lazy(IMAGES, (10, 8, 8)))
    # Only the chunks holding the 40 drawn images were computed, never the whole array.
    assert 0 < sum(COMPUTED) <= 40 * 10
    picked = np.sort(np.random.RandomState(0).choice(len(IMAGES), 40, replace=False))
    in_memory = conv(**params).fit(IMAGES[picked])
    np.testing.assert_array_equal(fitted.filters_, in_memory.filters_)
    np.testing.assert_allclose(fitted.transform(IMAGES[:20]), in_memory.transform(IMAGES[:20]))


def test_parallel_post_fit_head_on_lazy_features():
    wrappers = pytest.importorskip("dask_ml.wrappers")
    model = make_pipeline(conv(), wrappers.ParallelPostFit(RidgeClassifier())).fit(IMAGES, y)
    pred = model.predict(da.from_array(IMAGES, chunks=(300, 8, 8)))
    assert isinstance(pred, da.Array) and pred.shape == (len(IMAGES),)
    np.testing.assert_array_equal(pred.compute(), model.predict(IMAGES))


def test_incremental_partial_fit_head_sees_the_same_blocks():
    wrappers = pytest.importorskip("dask_ml.wrappers")
    chunks = (400, 8, 8)
    model = make_pipeline(conv(), wrappers.Incremental(SGDClassifier(random_state=0), shuffle_blocks=False))
    model.fit(da.from_array(IMAGES, chunks=chunks), da.from_array(y, chunks=400), incremental__classes=np.unique(y))
    reference = SGDClassifier(random_state=0)
    features = conv().fit_transform(IMAGES)
    for start in range(0, len(IMAGES), 400):
        reference.partial_fit(features[start:start + 400], y[start:start + 400], classes=np.unique(y))
    np.testing.assert_allclose(model[-1].estimator_.coef_, reference.coef_, rtol=1e-4, atol=1e-6)  # same blocks; features equal up to rounding


# -- a real cluster ------------------------------------------------------------

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, host="127.0.0.1", threads_per_worker=1, dashboard_address=None
    )
    with distributed.Client(cluster, timeout="60s") as client:
        yield client
    cluster.close(timeout=30)


def test_cluster_transform_equals_in_memory(client):
    fitted = conv().fit(IMAGES)
    future = client.compute(fitted.transform(da.from_array(IMAGES, chunks=(300, 8, 8))))
    np.testing.assert_allclose(future.result(timeout=120), fitted.transform(IMAGES), rtol=1e-6)


def test_cluster_pipeline_predict_equals_in_memory(client):
    model = make_pipeline(conv(), RidgeClassifier()).fit(X, y)
    features = model[0].transform(da.from_array(X, chunks=(300, 64)))
    pred = features.map_blocks(model[-1].predict, drop_axis=1, dtype=y.dtype)
    np.testing.assert_array_equal(client.compute(pred).result(timeout=120), model.predict(X))


@pytest.fixture
def runtime_bank():
    def corners(kernel_size, n_channels):  # registered while the program runs: the workers never saw it
        kernel = np.zeros((1, n_channels, *kernel_size))
        kernel[0, :, 0, 0] = kernel[0, :, -1, -1] = 1.0
        return kernel

    register_bank("_test_corners")(corners)
    yield "_test_corners"
    del _REGISTRY["_test_corners"]


def test_cluster_grid_search_equals_local(client, runtime_bank):
    from joblib import parallel_backend

    def search():
        grid = {"fixedconvtransformer__bank": [runtime_bank, "gabor"], "fixedconvtransformer__pooling": ["avg", "max"]}
        pipe = make_pipeline(conv(), RidgeClassifier())  # one solve: heads are not what is tested
        return GridSearchCV(pipe, grid, cv=3, error_score="raise")

    with parallel_backend("dask"):
        on_cluster = search().set_params(n_jobs=-1).fit(X[:600], y[:600])
    local = search().fit(X[:600], y[:600])
    np.testing.assert_allclose(on_cluster.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    assert on_cluster.best_params_ == local.best_params_


def test_study_on_the_cluster_equals_a_local_run(client, capsys):
    import json

    from skconvfeat.study._cli import main

    args = ["--json", "--no-learned", "--no-transfer", "--repeats", "1", "--folds", "2", "--banks", "gabor,identity"]
    assert main([*args, "--n-jobs", "1"]) == 0
    local = json.loads(capsys.readouterr().out)
    with distributed.get_task_stream(client) as tasks:
        assert main([*args, "--scheduler", client.scheduler_info()["address"]]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert [arm["scores"] for arm in remote["arms"]] == [arm["scores"] for arm in local["arms"]]
    assert len(tasks.data) >= 4  # the 2 arms x 2 splits ran on the workers


def test_cupy_backed_chunks_stay_on_the_device(monkeypatch):
    # With tests/fake_cupy.py (NumPy memory typed as CuPy): no GPU here, so this checks
    # the bookkeeping (meta, block types), not CuPy itself; tests/test_gpu.py runs on a device.
    from fake_cupy import FakeCupy

    from skconvfeat import _device

    cupy = FakeCupy()
    monkeypatch.setattr(_device, "_cupy", lambda: cupy)
    monkeypatch.setitem(__import__("sys").modules, "cupy", cupy)  # Dask's concatenation looks CuPy up by name
    colour = np.random.default_rng(0).integers(0, 256, size=(90, 12, 11, 3), dtype=np.uint8)
    fitted = conv(device="cuda").fit(colour)
    out = fitted.transform(da.from_array(cupy.asarray(colour), chunks=(30, 6, 11, 3), asarray=False))
    assert type(out._meta).__module__ == "cupy"
    computed = out.compute(scheduler="synchronous")
    assert type(computed).__module__ == "cupy"
    np.testing.assert_allclose(computed.get(), conv(device="cpu").fit(colour).transform(colour), rtol=1e-6)


def test_unknown_chunk_sizes_are_a_clear_error_where_fit_samples():
    masked = da.from_array(IMAGES[:40], chunks=(10, 8, 8))
    masked = masked[masked[:, 0, 0] >= 0]  # a boolean mask: the chunk sizes are unknown (nan)
    with pytest.raises(ValueError, match=r"unknown chunk sizes \(shape \(nan, 8, 8\)\).*compute_chunk_sizes"):
        FixedConvTransformer("kmeans", kernel_size=3, random_state=0).fit(masked)
    # A bank that needs no sample fits and transforms them as they are.
    conv = FixedConvTransformer("gabor", kernel_size=3).fit(masked)
    np.testing.assert_allclose(conv.transform(masked).compute(), conv.transform(IMAGES[:40]))
