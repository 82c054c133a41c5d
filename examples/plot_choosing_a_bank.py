"""
Choosing a bank: the kernels, their feature maps, their accuracy
================================================================

Each built-in bank is a different guess at what a CNN's first layer would
learn. Here are their kernels, what each does to one digit, and how well a
logistic regression classifies the digits from each bank's pooled features.
"""

# %%
# The kernels of each bank, 5x5 pixels, built by :func:`~skconvfeat.make_bank`.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconvfeat import FixedConvTransformer, make_bank

BANKS = ["gaussian", "sharpen", "gabor", "random"]
SHOWN = 6  # kernels and maps shown per bank

kernels = {name: make_bank(name, kernel_size=5, random_state=0) for name in BANKS}
for name, bank in kernels.items():
    print(f"{name:<9} {bank.shape[0]:>2} kernels")

# %%
# The first row of each bank shows its kernels (shared colour scale per kernel,
# red positive, blue negative); the row below shows one digit convolved with
# them, before the ReLU and the pooling (``nonlinearity="none"`` and a 1x1
# pool keep the raw maps).
digits = load_digits()
image = digits.images[0]
fig, axes = plt.subplots(2 * len(BANKS), SHOWN, figsize=(SHOWN * 1.3, 2 * len(BANKS) * 1.3))
for row, name in enumerate(BANKS):
    conv = FixedConvTransformer(
        bank=name, kernel_size=5, padding="same", nonlinearity="none", pool_size=1, random_state=0
    )
    maps = conv.fit_transform(image[None]).reshape(-1, 8, 8)  # (maps, 8, 8)
    for col in range(SHOWN):
        k_ax, m_ax = axes[2 * row, col], axes[2 * row + 1, col]
        if col < len(kernels[name]):
            kernel = kernels[name][col, 0]
            limit = np.abs(kernel).max()
            k_ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
            m_ax.imshow(maps[col], cmap="gray")
        k_ax.set_axis_off()
        m_ax.set_axis_off()
    axes[2 * row, 0].set_title(f"{name}: kernels, then maps of a '0'", loc="left", fontsize=9)
fig.tight_layout()
plt.show()

# %%
# Accuracy of each bank with the same head, 5-fold cross-validated, the maps
# average-pooled over 2x2 windows. The Gaussian and sharpen banks have 3
# kernels, Gabor and random 16: part of what separates them is the number of
# features. ``identity`` is the raw pixels through the same pooling.
X, y = digits.data, digits.target
means, stds = [], []
for name in BANKS + ["identity"]:
    model = make_pipeline(
        FixedConvTransformer(bank=name, kernel_size=5, padding="same", pool_size=2, random_state=0),
        StandardScaler(),
        LogisticRegression(max_iter=2000),
    )
    scores = cross_val_score(model, X, y, cv=5)
    means.append(scores.mean())
    stds.append(scores.std())
    print(f"{name:<9} {scores.mean():.3f} +/- {scores.std():.3f}")

fig, ax = plt.subplots(figsize=(6, 3))
labels = BANKS + ["identity\n(raw pixels)"]
ax.barh(labels, means, xerr=stds, color="tab:blue")
ax.set_xlim(0.5, 1.0)  # chance is 0.1
ax.set_xlabel("5-fold accuracy (2x2 average pooling, logistic regression)")
ax.invert_yaxis()
fig.tight_layout()
plt.show()
