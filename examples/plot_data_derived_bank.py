"""
A data-derived bank: k-means kernels from colour photos
========================================================

A data-derived bank learns its kernels from the images themselves, without
labels: ``bank="kmeans"`` takes the spherical k-means centroids of whitened
patches (Coates & Ng), then applies them like any fixed bank. Here it learns
16 colour kernels from small patches of photographs and is compared with 16
random kernels in the same layer and with the same head.

The images stand in for a CIFAR-10 subset (which needs a download): 16x16
colour crops of the two photos bundled with scikit-learn, in six classes (the
left, middle and right third of each photo). The classifier trains on crops
from the top 60% of each third and is tested on crops from the bottom 40%,
so test crops never overlap training ones.
"""

# %%
# Six classes of 16x16 colour crops, 150 per class for training and 150 for testing.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_sample_images
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconvfeat import FixedConvTransformer

SIZE, PER_CLASS = 16, 150
photos = load_sample_images().images  # two (427, 640, 3) uint8 photos
rng = np.random.default_rng(0)


def crops(top, bottom):
    """``PER_CLASS`` random crops of every class, from rows ``top`` to ``bottom`` (fractions of the height)."""
    images, target = [], []
    for p, photo in enumerate(photos):
        height, width, _ = photo.shape
        for third in range(3):
            left = third * width // 3
            for _ in range(PER_CLASS):
                y = rng.integers(int(top * height), int(bottom * height) - SIZE)
                x = rng.integers(left, left + width // 3 - SIZE)
                images.append(photo[y : y + SIZE, x : x + SIZE] / 255)
                target.append(3 * p + third)
    return np.array(images, dtype=np.float32), np.array(target)


X_train, y_train = crops(0.0, 0.6)
X_test, y_test = crops(0.6, 1.0)
print(X_train.shape, X_test.shape)


# %%
# The same layer for both banks (5x5 kernels, ReLU, each map average-pooled
# over a 2x2 grid), then a logistic regression. ``fit`` samples 2,000 patches
# of the training images for k-means; the random bank ignores the data.
def layer(bank, seed):
    settings = {"n_patches": 2_000} if bank == "kmeans" else {}
    return FixedConvTransformer(bank, bank_params={"n_filters": 16}, kernel_size=5, pool_grid=2,
                                random_state=seed, **settings)


accuracy = {"kmeans": [], "random": []}
for bank in accuracy:
    for seed in range(3):  # another patch sample (k-means) or another draw (random)
        model = make_pipeline(layer(bank, seed), StandardScaler(), LogisticRegression(max_iter=2000))
        accuracy[bank].append(model.fit(X_train, y_train).score(X_test, y_test))
    print(f"{bank:<7} test accuracy {np.mean(accuracy[bank]):.3f} (seeds: {np.round(accuracy[bank], 3)})")

# %%
# Left: a few training crops of each class. Middle: the k-means kernels, each
# stretched to its own range (the whitening is folded into them, so they are
# what the layer applies to the raw pixels; Coates & Ng found such centroids
# to resemble the oriented edges and colour blobs a CNN's first layer learns),
# above the random ones. Right: test accuracy of each bank over three seeds
# (chance is 1/6).
kmeans = layer("kmeans", 0).fit(X_train)
random = layer("random", 0).fit(X_train)


def stretched(kernel):
    """A ``(3, kh, kw)`` kernel as an RGB image in [0, 1]."""
    image = np.moveaxis(kernel, 0, -1)
    return (image - image.min()) / (np.ptp(image) or 1)


fig = plt.figure(figsize=(11, 4), layout="constrained")
crops_fig, kernels_fig, accuracy_fig = fig.subfigures(1, 3, width_ratios=[1.2, 1.6, 1])
crop_axes = crops_fig.subplots(6, 4)
for label, row in enumerate(crop_axes):
    for ax, index in zip(row, np.flatnonzero(y_train == label)):
        ax.imshow(X_train[index])
        ax.set_axis_off()
crops_fig.suptitle("training crops (one class a row)", fontsize=9)
kernel_axes = kernels_fig.subplots(4, 8)
for ax, kernel in zip(kernel_axes[:2].ravel(), kmeans.filters_):
    ax.imshow(stretched(kernel), interpolation="nearest")
for ax, kernel in zip(kernel_axes[2:].ravel(), random.filters_):
    ax.imshow(stretched(kernel), interpolation="nearest")
for ax in kernel_axes.ravel():
    ax.set_axis_off()
kernels_fig.suptitle("k-means kernels (top), random kernels (bottom)", fontsize=9)
ax = accuracy_fig.subplots()
for position, (bank, scores) in enumerate(accuracy.items()):
    ax.bar(position, np.mean(scores), color=f"C{position}")
    ax.scatter([position] * len(scores), scores, color="black", s=12, zorder=3)
ax.axhline(1 / 6, color="grey", linestyle=":", label="chance")
ax.set_xticks([0, 1], ["k-means", "random"])
ax.set_ylabel("test accuracy (bar: mean; dots: seeds)")
ax.legend(fontsize=8)
plt.show()
