"""Where an estimator's HTML diagram links: its API page, by scikit-learn's ``_doc_link_*`` mechanism.

scikit-learn's diagram (a notebook's display of a Pipeline) links each step to
``_doc_link_template`` when the step's class comes from ``_doc_link_module``;
without these our steps were the only ones with no link.
"""

# The published site: pyproject.toml's Documentation URL (tests/test_packaging.py keeps the two equal).
DOCS_URL = "https://skconvfeat.github.io/skconvfeat/"
# Every public estimator is exported at the top level, so its page is skconvfeat.<Name> whatever its module.
API_PAGE = DOCS_URL + "generated/skconvfeat.{estimator_name}.html"
