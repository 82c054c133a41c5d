"""Parallel traps: user banks in worker processes, and the BLAS limit under concurrent transforms."""

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.datasets import load_digits
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from skconvfeat import FixedConvTransformer, _layer, register_bank
from skconvfeat._backend import blas_controller
from skconvfeat._banks import _REGISTRY

X, y = load_digits(return_X_y=True)
X, y = X[:300], y[:300]


@pytest.fixture
def runtime_bank():
    """A bank registered while the program runs (as in a notebook): worker processes never ran this code."""

    def diagonal_edges(kernel_size, n_channels):
        kh, kw = kernel_size
        return np.stack([np.eye(kh, kw), -np.eye(kh, kw)[::-1]])[:, None].repeat(n_channels, axis=1)

    register_bank("_test_diagonal_edges")(diagonal_edges)
    yield "_test_diagonal_edges"
    del _REGISTRY["_test_diagonal_edges"]


def _search(n_jobs):
    pipe = make_pipeline(FixedConvTransformer(kernel_size=3, pool_grid=2), RidgeClassifier())
    grid = {"fixedconvtransformer__bank": ["_test_diagonal_edges", "gaussian"]}
    return GridSearchCV(pipe, grid, cv=2, n_jobs=n_jobs, error_score="raise")


def test_runtime_bank_reaches_loky_workers(runtime_bank):
    # The name travels in the parameter grid as a plain string; the worker must still know it.
    with parallel_config(backend="loky"):
        parallel = _search(n_jobs=2).fit(X, y)
    serial = _search(n_jobs=1).fit(X, y)
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])


def test_registered_banks_are_not_replaced_when_unpickled_in_their_own_process(runtime_bank):
    import pickle

    func = _REGISTRY[runtime_bank]
    conv = pickle.loads(pickle.dumps(FixedConvTransformer(bank=runtime_bank)))
    assert _REGISTRY[runtime_bank] is func
    assert conv.bank == runtime_bank


@pytest.mark.parametrize("caller_limits", [False, True], ids=["no limit set", "inside threadpool_limits"])
def test_blas_limit_restored_exactly_under_many_threads(caller_limits):
    conv = FixedConvTransformer(kernel_size=3, pool_grid=2).fit(X)
    expected = conv.transform(X[:20])
    sizes = np.random.default_rng(0).choice([1, 20, 300], size=300)  # calls of uneven length overlap in every order
    # Without a limit of the caller's, the transforms really lower BLAS (one thread
    # controls it); inside threadpool_limits, the caller's thread keeps control.
    limits = threadpool_limits(limits=2, user_api="blas") if caller_limits else contextlib.nullcontext()
    with limits:
        before = [info["num_threads"] for info in blas_controller().info()]
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda n: conv.transform(X[:n]), sizes))
        after = [info["num_threads"] for info in blas_controller().info()]
    assert after == before
    for n, result in zip(sizes, results):
        np.testing.assert_allclose(result, expected[:n] if n <= 20 else conv.transform(X[:n]), rtol=1e-6)


def test_transforms_do_lower_blas_to_one_thread(monkeypatch):
    seen = []
    real_layer = _layer.layer

    def layer(*args, **kwargs):
        seen.append([info["num_threads"] for info in blas_controller().info()])
        return real_layer(*args, **kwargs)

    monkeypatch.setattr(_layer, "layer", layer)
    conv = FixedConvTransformer(kernel_size=3, pool_grid=2).fit(X)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: conv.transform(X[:50]), range(8)))
    assert seen and all(threads == [1] * len(threads) for threads in seen)


def test_user_limits_still_apply_after_a_transform():
    # threadpoolctl lets one thread control OpenBLAS's shared pool; the transforms' control thread
    # used to keep that control for good, and every later threadpool_limits of the user was ignored
    # without a word (and with it the one-thread Cholesky that keeps OpenBLAS from crashing).
    FixedConvTransformer(kernel_size=3, pool_grid=2).fit_transform(X[:50])
    with threadpool_limits(limits=1, user_api="blas"):
        inside = [info["num_threads"] for info in blas_controller().info()]
    assert inside == [1] * len(inside)


class _FakeBLAS:
    """threadpoolctl's controller semantics over one process-wide thread count.

    Real OpenBLAS builds differ in whether a limit set from one thread is seen
    by another, so the interleaving is checked on these semantics: a limiter
    saves the count when it starts and writes it back when it ends.
    """

    def __init__(self, n_threads):
        self.n_threads = n_threads

    def info(self):
        return [{"user_api": "blas", "num_threads": self.n_threads}]

    def limit(self, limits):
        fake = self

        class Limiter:
            def __init__(self):
                self.saved, fake.n_threads = fake.n_threads, limits

            def restore_original_limits(self):
                fake.n_threads = self.saved

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.restore_original_limits()

        return Limiter()


class _RealBLAS:
    """The real controller, read through the same two members as _FakeBLAS."""

    def __init__(self):
        self.initial = [info["num_threads"] for info in blas_controller().info()]

    @property
    def n_threads(self):
        threads = {info["num_threads"] for info in blas_controller().info()}
        return threads.pop() if len(threads) == 1 else threads


@pytest.mark.parametrize("semantics", ["fake", "real"])
def test_blas_limit_restored_when_calls_overlap_out_of_order(monkeypatch, semantics):
    # The interleaving that used to leave BLAS at 1 thread for good: A lowers the
    # limit, B starts (and saves 1), A finishes, then B finishes and "restores" 1.
    # "real": threadpoolctl's own rules on this machine's BLAS (where a thread
    # that set no limit may not change it); "fake": a plain shared count.
    import skconvfeat._backend as backend
    import skconvfeat._backend.cpu  # noqa: F401 - patched below; run alone, no earlier test has imported it

    if semantics == "fake":
        fake = _FakeBLAS(n_threads=2)
        monkeypatch.setattr(backend, "blas_controller", lambda: fake)
        monkeypatch.setattr(backend.cpu, "blas_controller", lambda: fake, raising=False)
    else:
        fake = _RealBLAS()
        if fake.initial != [2] * len(fake.initial):
            pytest.skip(f"needs BLAS at 2 threads to see a change to 1; it is at {fake.initial}")
    conv = FixedConvTransformer(kernel_size=3, pool_grid=2).fit(X)
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()
    real_layer = _layer.layer

    def layer(*args, **kwargs):
        if threading.current_thread().name == "A":
            a_inside.set()
            assert b_inside.wait(10)
        else:
            b_inside.set()
            assert a_done.wait(10)
        assert fake.n_threads == 1  # inside any transform BLAS runs single-threaded
        return real_layer(*args, **kwargs)

    def call_a():
        conv.transform(X[:1])
        a_done.set()

    monkeypatch.setattr(_layer, "layer", layer)
    a = threading.Thread(target=call_a, name="A")
    b = threading.Thread(target=lambda: conv.transform(X[:1]), name="B")
    a.start()
    assert a_inside.wait(10)
    b.start()
    a.join(20)
    b.join(20)
    assert a_done.is_set() and not b.is_alive()
    assert fake.n_threads == 2
