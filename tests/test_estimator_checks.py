"""scikit-learn's own estimator contract, on several configurations."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skconvfeat import FixedConvTransformer

# Contract checks feed 2-D data with any number of features (1 to ~20), so
# each configuration reads rows as one-pixel-high strips, image_shape=(1, -1),
# with kernels and pooling that fit any width.
CONFIGURATIONS = [
    FixedConvTransformer(bank="gaussian", image_shape=(1, -1), kernel_size=(1, 3), padding="same", pool_size=1),
    FixedConvTransformer(
        bank="random",
        image_shape=(1, -1),
        kernel_size=(1, 3),
        padding="reflect",
        nonlinearity="two_sided_relu",
        pooling="max",
        pool_grid=(1, 2),
        random_state=0,
    ),
    FixedConvTransformer(bank="identity", image_shape=(1, -1), nonlinearity="none", pool_grid=1, dtype="float64"),
    FixedConvTransformer(bank="gabor", image_shape=(1, -1), kernel_size=(1, 1), nonlinearity="abs", pool_size=1),
    # Data-derived banks and patch preprocessing. One-feature data (a single
    # pixel per row) has one patch direction, hence the small banks.
    FixedConvTransformer(
        bank="kmeans", bank_params={"n_filters": 2}, image_shape=(1, -1), kernel_size=(1, 1),
        patch_norm=False, nonlinearity="triangle", pool_grid=(1, 2), random_state=0,
    ),
    FixedConvTransformer(
        bank="pca", bank_params={"n_filters": 1}, image_shape=(1, -1), kernel_size=(1, 3), padding="same",
        nonlinearity="two_sided_soft_threshold", pool_size=1, random_state=0,
    ),
    FixedConvTransformer(
        bank="patches", bank_params={"n_filters": 1}, image_shape=(1, -1), kernel_size=(1, 3), padding="same",
        nonlinearity="soft_threshold", pooling="max", pool_grid=1, dtype="float64", random_state=0,
    ),
    FixedConvTransformer(
        bank="gabor", image_shape=(1, -1), kernel_size=(1, 3), padding="same", patch_norm=True, whiten=True,
        nonlinearity="triangle", pool_grid=(1, 2), random_state=0,
    ),
]


@parametrize_with_checks(CONFIGURATIONS)
def test_sklearn_contract(estimator, check):
    check(estimator)
