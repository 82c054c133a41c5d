"""A notebook's diagram of a pipeline links our steps to their API pages, as it links scikit-learn's."""

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skconvfeat import FixedConvNet, FixedConvTransformer, GramRidgeClassifier
from skconvfeat._doc_link import DOCS_URL


def _estimators():
    net = FixedConvNet([("conv1", FixedConvTransformer()), ("conv2", FixedConvTransformer())])
    yield make_pipeline(FixedConvTransformer(), LogisticRegression()), ["FixedConvTransformer"]
    yield make_pipeline(net, GramRidgeClassifier()), ["FixedConvNet", "GramRidgeClassifier"]
    try:
        from skconvfeat import LearnedConvClassifier
    except ImportError:  # pragma: no cover - the learned estimator is always importable; torch only at fit
        return
    yield LearnedConvClassifier(FixedConvTransformer()), ["LearnedConvClassifier", "FixedConvTransformer"]


@pytest.mark.parametrize("estimator, names", list(_estimators()))
def test_every_step_of_ours_links_its_api_page(estimator, names):
    html = estimator._repr_html_()
    for name in names:
        assert f'href="{DOCS_URL}generated/skconvfeat.{name}.html"' in html, name
    assert "https://scikit-learn.org/" in html or "LearnedConvClassifier" in names  # theirs still link theirs
