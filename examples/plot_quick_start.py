"""
Quick start: frozen kernels and a trained head on digits
========================================================

A CNN's first layer with its kernels frozen, as a scikit-learn transformer:
:class:`~skconvfeat.FixedConvTransformer` convolves each image with a fixed
Gabor bank, applies a ReLU and pools; a logistic regression, the only part
that is trained, plays the fully-connected layer.
"""

# %%
# Load the digits and hold out a test set. Their rows are flat 8x8 images: the
# transformer infers the square shape.
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconvfeat import FixedConvTransformer

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

# %%
# The pipeline: 16 Gabor kernels of 3x3 pixels, each map averaged over the four
# quadrants of the image (``pool_grid=2``), so 64 features per image.
model = make_pipeline(
    FixedConvTransformer(bank="gabor", kernel_size=3, pool_grid=2),
    StandardScaler(),
    LogisticRegression(max_iter=2000),
)
model.fit(X_train, y_train)
print(f"frozen Gabor kernels + logistic regression: {model.score(X_test, y_test):.3f}")

# %%
# The same head on the raw pixels, with no convolution at all, for comparison.
raw = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_train, y_train)
print(f"logistic regression on the raw pixels:      {raw.score(X_test, y_test):.3f}")

# %%
# Where the frozen-kernel model still errs.
ConfusionMatrixDisplay.from_estimator(model, X_test, y_test, colorbar=False)
plt.title("Frozen Gabor kernels + logistic regression")
plt.tight_layout()
plt.show()
