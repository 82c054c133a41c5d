"""
Fixed against learned kernels on digits
=======================================

The same one-layer network twice: once with its Gabor kernels frozen and only
the head trained (:class:`~skconvfeat.FixedConvTransformer` and a logistic
regression), once with kernels and head trained together from the same Gabor
start (:class:`~skconvfeat.LearnedConvClassifier`, which needs PyTorch, given the same
:class:`~skconvfeat.FixedConvTransformer` as its architecture). The
figure shows how far training moved the kernels.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconvfeat import FixedConvTransformer

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

# One architecture for both arms: 16 Gabor kernels of 5x5 pixels, zero padding,
# ReLU, average pooling over the four quadrants.
LAYER = dict(bank="gabor", kernel_size=5, padding="same", pool_grid=2)


def fit_learned(X, y):
    """Train kernels and head together; return the model and its kernels as a fixed bank."""
    from skconvfeat import LearnedConvClassifier, transfer_bank

    model = LearnedConvClassifier(FixedConvTransformer(**LAYER), random_state=0).fit(X, y)
    return model, transfer_bank(model)


# %%
# The fixed arm trains only the head; the learned arm trains everything.
fixed = make_pipeline(
    FixedConvTransformer(**LAYER), StandardScaler(), LogisticRegression(max_iter=2000)
)
fixed.fit(X_train, y_train)
learned, learned_bank = fit_learned(X_train, y_train)
print(f"Gabor kernels, fixed:              {fixed.score(X_test, y_test):.3f}")
print(f"Gabor start, kernels learned:      {learned.score(X_test, y_test):.3f}")

# %%
# The learned kernels, frozen in turn with a fresh logistic-regression head:
# is the gain in the kernels or in the way the network was trained?
refit = make_pipeline(learned_bank, StandardScaler(), LogisticRegression(max_iter=2000))
refit.fit(X_train, y_train)
print(f"learned kernels, frozen, new head: {refit.score(X_test, y_test):.3f}")

# %%
# Eight kernels before and after training, and their difference, all three on
# one colour scale: the bottom row shows how much each weight moved compared
# with the size of the kernel itself.
# One array of kernels per layer: this network has one.
before, after = learned.initial_filters_[0][:8, 0], learned.filters_[0][:8, 0]
rows = {"before": before, "after": after, "after - before": after - before}
limit = max(np.abs(before).max(), np.abs(after).max())
fig, axes = plt.subplots(3, 8, figsize=(8, 3.4))
for ax_row, (label, kernels) in zip(axes, rows.items()):
    for ax, kernel in zip(ax_row, kernels):
        image = ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks([])
        ax.set_yticks([])
    ax_row[0].set_ylabel(label, fontsize=9)
relative = np.linalg.norm(after - before) / np.linalg.norm(before)
fig.suptitle(f"Kernels moved by {100 * relative:.0f}% of their norm", fontsize=10)
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()
