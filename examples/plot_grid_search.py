"""
Tuning the layer with GridSearchCV
==================================

:class:`~skconvfeat.FixedConvTransformer` is an ordinary scikit-learn
estimator, so the layer's choices (bank, pooling, kernel size, ...) are
hyper-parameters like any other: name them ``<step>__<parameter>`` in a
:class:`~sklearn.model_selection.GridSearchCV` grid.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skconvfeat import FixedConvTransformer

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

pipeline = Pipeline([
    ("conv", FixedConvTransformer(kernel_size=3, pool_grid=2, random_state=0)),
    ("scale", StandardScaler()),
    ("clf", LogisticRegression(max_iter=2000)),
])
grid = {
    "conv__bank": ["gaussian", "sharpen", "gabor", "random"],
    "conv__pooling": ["avg", "max"],
}
search = GridSearchCV(pipeline, grid, cv=3).fit(X_train, y_train)
print("best:", search.best_params_)
print(f"cross-validated accuracy {search.best_score_:.3f}")
print(f"test accuracy {search.score(X_test, y_test):.3f}")

# %%
# Mean cross-validated accuracy of every combination.
banks, poolings = grid["conv__bank"], grid["conv__pooling"]
scores = np.empty((len(banks), len(poolings)))
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    scores[banks.index(params["conv__bank"]), poolings.index(params["conv__pooling"])] = score

fig, ax = plt.subplots(figsize=(4.5, 3.5))
im = ax.imshow(scores, cmap="viridis", vmin=scores.min(), vmax=1.0)
ax.set_xticks(range(len(poolings)), poolings)
ax.set_yticks(range(len(banks)), banks)
ax.set_xlabel("conv__pooling")
ax.set_ylabel("conv__bank")
for (i, j), score in np.ndenumerate(scores):
    ax.text(j, i, f"{score:.3f}", ha="center", va="center", color="w" if score < 0.9 else "k")
fig.colorbar(im, ax=ax, label="3-fold accuracy")
fig.tight_layout()
plt.show()
