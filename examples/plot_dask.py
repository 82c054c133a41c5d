"""
Scaling out on Dask: lazy features, a head that learns block by block
======================================================================

With ``pip install "skconvfeat[dask]"`` the same :class:`~skconvfeat.FixedConvTransformer`
takes a Dask array of images and returns a lazy Dask array of features, one block per input
block, so a dataset larger than memory is transformed a block at a time. A head with
``partial_fit`` then learns from the feature blocks one after the other, and a
:class:`~sklearn.model_selection.GridSearchCV` runs its fits on a Dask cluster through
joblib. The digits bundled with scikit-learn stand in for the large dataset.
"""

# %%
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from distributed import Client
from joblib import parallel_backend
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconvfeat import FixedConvTransformer

digits = load_digits()
X_train, X_test, y_train, y_test = train_test_split(
    digits.images, digits.target, test_size=0.3, stratify=digits.target, random_state=0
)
# Blocks of 200 images: on real data, each block would be read from disk (e.g. da.from_zarr) when
# it is computed, never the whole array at once.
images = da.from_array(X_train, chunks=(200, 8, 8))
conv = FixedConvTransformer(bank="gabor", kernel_size=3, pool_grid=2).fit(images)  # shape and dtype only
features = conv.transform(images)  # lazy: nothing is computed yet
print(features.shape, features.chunksize, features.dtype, f"{features.numblocks[0]} blocks")

# %%
# The head sees one block of features at a time (``partial_fit``), so memory holds one block of
# images and its features, whatever the dataset's size. The scaler is fitted on the first block
# only, a choice that would also have to be made out of core.
blocks = np.cumsum([0, *images.chunks[0]])
test_features = conv.transform(X_test)
scaler, head = StandardScaler(), SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0)
seen, accuracy = [], []
for i in range(features.numblocks[0]):
    block = features.blocks[i].compute()
    labels = y_train[blocks[i]:blocks[i + 1]]
    if i == 0:
        scaler.fit(block)
    head.partial_fit(scaler.transform(block), labels, classes=np.arange(10))
    seen.append(blocks[i + 1])
    accuracy.append(head.score(scaler.transform(test_features), y_test))
print(f"test accuracy after all {len(seen)} blocks: {accuracy[-1]:.3f}")

# %%
# A grid search whose fits run on a Dask cluster: here a local one of two threads
# (``Client("tcp://scheduler:8786")`` for a real one). Nothing in the pipeline changes.
pipeline = make_pipeline(FixedConvTransformer(kernel_size=3, pool_grid=2, random_state=0), StandardScaler(),
                         SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0))
grid = {"fixedconvtransformer__bank": ["gaussian", "gabor", "random"]}
with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
    with parallel_backend("dask"):
        search = GridSearchCV(pipeline, grid, cv=3, n_jobs=-1).fit(X_train, y_train)
print("best bank on the cluster:", search.best_params_["fixedconvtransformer__bank"],
      f"(test accuracy {search.score(X_test, y_test):.3f})")

# %%
# Test accuracy of the block-by-block head as blocks arrive.
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(seen, accuracy, marker="o")
ax.set_xlabel("training images seen (blocks of 200)")
ax.set_ylabel("test accuracy")
ax.set_title("Gabor features of a Dask array, SGD head fed block by block")
ax.set_ylim(min(accuracy) - 0.02, 1.0)
fig.tight_layout()
plt.show()
