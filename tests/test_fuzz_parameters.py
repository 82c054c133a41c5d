"""Property-based tests of the banks' and the transformer's parameters (hypothesis).

The property, for any parameter values a careless user might pass (huge,
tiny, negative, NaN, infinite, empty, of the wrong type): ``make_bank`` and
``FixedConvTransformer.fit``/``transform`` either give finite output of the
documented shape, or raise a ``ValueError``/``TypeError`` whose message names
the parameter (or the bank) at fault. Examples are few and images small so the
module stays within seconds of CI.
"""

import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from skconvfeat import FixedConvTransformer, make_bank  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# Values that broke banks before (NaN kernels) or exhaust memory, mixed with ordinary ones.
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1e-300, 1e-12, 0.05, 0.5, 1.0, 3.0, 1e6, 1e300, -1.0]),
    # Counts up to thousands, and absurd ones (refused with the memory they need); in between, a
    # bank of 10**7 kernels fits in memory and is legitimately slow to draw: not a fuzz case.
    st.integers(-3, 5000),
    st.sampled_from([10**9, 10**12]),
)
SEQUENCES = st.one_of(NUMBERS, st.lists(NUMBERS, max_size=3), st.just(()), st.text(max_size=3), st.none())
HAND_CRAFTED = {
    "gaussian": {"sigmas": SEQUENCES},
    "gabor": {"n_orientations": NUMBERS, "frequencies": SEQUENCES, "phases": SEQUENCES, "bandwidth": SEQUENCES},
    "sharpen": {"strengths": SEQUENCES, "sigma": SEQUENCES},
    "random": {"n_filters": NUMBERS, "zero_mean": st.one_of(st.booleans(), NUMBERS)},
}


def _named(exc, *names):
    text = str(exc)
    assert any(name in text for name in names), f"{type(exc).__name__} names none of {names}: {text}"


@pytest.mark.parametrize("bank", sorted(HAND_CRAFTED))
@FUZZ
@given(data=st.data(), kernel=st.integers(1, 9))
def test_bank_parameters_give_finite_kernels_or_a_named_error(bank, data, kernel):
    params = {name: data.draw(strategy, label=name)
              for name, strategy in HAND_CRAFTED[bank].items() if data.draw(st.booleans())}
    try:
        filters = make_bank(bank, kernel_size=kernel, n_channels=2, random_state=0, **params)
    except (ValueError, TypeError, MemoryError) as exc:
        _named(exc, bank, *params)
        return
    assert filters.ndim == 4 and filters.shape[1:] == (2, kernel, kernel) and filters.shape[0] >= 1
    assert np.isfinite(filters).all()


LAYER = {
    "bank": st.sampled_from(["gaussian", "gabor", "sharpen", "random", "identity", "kmeans", "pca", "patches",
                             "gabr", ""]),
    "kernel_size": st.one_of(st.integers(-1, 12), st.tuples(st.integers(0, 4), st.integers(0, 4))),
    "padding": st.sampled_from(["valid", "same", "reflect", "mirror"]),
    "nonlinearity": st.sampled_from(["relu", "none", "abs", "square", "two_sided_relu", "soft_threshold",
                                     "two_sided_soft_threshold", "triangle", "tanh"]),
    "pooling": st.sampled_from(["avg", "max", "sum"]),
    "pool_size": st.one_of(st.integers(-1, 12), st.just((2, 3))),
    # Grids up to a few times the maps, and an absurd one (refused with the memory it needs); a grid of
    # thousands of regions per side still fits in memory and is slow, not wrong: not a fuzz case.
    "pool_grid": st.one_of(st.none(), st.integers(-1, 40), st.just(10**5), st.just((1, 3))),
    "channel_mode": st.sampled_from(["sum", "separate"]),
    "alpha": st.one_of(NUMBERS),
    "eps_zca": st.one_of(NUMBERS),
    "eps_norm": st.one_of(NUMBERS),
    "n_patches": st.one_of(st.integers(-2, 3000)),
}


@FUZZ
@given(data=st.data(), scale=st.sampled_from([1.0, 255.0, 1e-30, 1e30, 1e300]))
def test_transformer_parameters_give_finite_features_or_a_named_error(data, scale):
    params = {name: data.draw(strategy, label=name) for name, strategy in LAYER.items() if data.draw(st.booleans())}
    if params.get("bank") in ("kmeans", "patches"):
        params["bank_params"] = {"n_filters": 4}
    images = np.random.default_rng(0).uniform(0, scale, size=(5, 9, 9, 2))
    conv = FixedConvTransformer(random_state=0, **params)
    try:
        features = conv.fit(images).transform(images)
    except (ValueError, TypeError, MemoryError) as exc:
        # A layer parameter (a default may be the one in conflict, e.g. pool_size with a large kernel),
        # or X when the data (e.g. beyond float32) cannot be computed on.
        _named(exc, *LAYER, "X", "image")
        return
    assert features.shape == (5, conv.n_features_out_) and conv.n_features_out_ >= 1
    assert np.isfinite(features).all()
    assert math.prod(images.shape[1:]) == conv.n_features_in_


def test_a_patch_variance_and_eps_norm_that_round_to_zero_give_the_named_error():
    """A case the fuzz test above found in CI: images of 1e-30 and eps_norm=7.8e-202 both round to 0 in float32,
    so a patch's normalisation divides by zero. The compiled passes raised a bare ZeroDivisionError; like
    NumPy's they now give inf, which the layer's finiteness check names."""
    images = np.random.default_rng(0).uniform(0, 1e-30, size=(5, 9, 9, 2))
    conv = FixedConvTransformer("kmeans", bank_params={"n_filters": 4}, kernel_size=5, pool_grid=1,
                                eps_norm=7.8e-202, random_state=0)
    with pytest.raises(ValueError, match=r"infinite or NaN features from finite X \(eps_norm=7.8e-202 rounds to 0 "
                       r"in dtype='float32'.*Use a larger eps_norm"):
        conv.fit(images).transform(images)
