"""Sphinx configuration of the skconvfeat site.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    python -m sphinx -W -b html docs docs/_build/html

``tests/test_docs.py`` runs the same build, so the site, its API reference and
its gallery are checked by the test suite.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document (and run the gallery against) this checkout, not another installed copy.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "sphinxext"))
# The gallery's figures are rendered off-screen.
os.environ.setdefault("MPLBACKEND", "Agg")

import skconvfeat  # noqa: E402
import gallery_order  # noqa: E402
from sphinx_gallery.sorting import FunctionSortKey  # noqa: E402

project = "skconvfeat"
author = "the skconvfeat developers"
copyright = "2026, " + author
version = release = skconvfeat.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx.ext.viewcode",  # a [source] link on every API page, to the code as built
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax copied into the site: math renders offline, no CDN
    "matplotlib.sphinxext.plot_directive",  # the guide's figures, drawn from code at each build
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# studies/ holds the full-data runs' output files (results.json, summary.md) that results.md cites:
# data, not pages of the site.
exclude_patterns = ["_build", "README.md", "**.ipynb_checkpoints", "studies"]
templates_path = ["_templates"]

# -- API reference -------------------------------------------------------------
# api.rst lists the three public modules; the module template (in _templates/)
# lists each module's __all__, so a name added to an __all__ gets its page with
# no edit here.
autosummary_generate = True
autosummary_ignore_module_all = False
autosummary_imported_members = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- Markdown pages (the existing docs/*.md and the user guide) ----------------
# $...$ and $$...$$ are math, rendered by the MathJax that sphinx-mathjax-offline ships with the site.
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath"]
myst_heading_anchors = 3

# -- Cross-references into other projects' docs ---------------------------------
# The build never touches the network (CI has none). A project is linked only
# when its inventory is committed as docs/_inventories/<name>.inv; fetch one on
# a machine with a connection, e.g.
#   curl -o docs/_inventories/sklearn.inv https://scikit-learn.org/stable/objects.inv
# Without it the references still render, as code, just without a link.
INTERSPHINX_SITES = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
    "sklearn": "https://scikit-learn.org/stable/",
}
intersphinx_mapping = {
    name: (url, str(DOCS / "_inventories" / f"{name}.inv"))
    for name, url in INTERSPHINX_SITES.items()
    if (DOCS / "_inventories" / f"{name}.inv").is_file()
}

# -- Gallery ---------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": FunctionSortKey(gallery_order.position, "gallery_order.position"),
    # Every example runs at each build: a broken one fails the build.
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "reset_modules": ("matplotlib",),
    # "Examples using X" on each API page (the minigallery of _templates/).
    "doc_module": ("skconvfeat",),
    "backreferences_dir": "generated/backreferences",
    "write_computation_times": False,
    "default_thumb_file": None,
    "download_all_examples": False,
}

# -- Figures of the user guide (``plot`` directive) -------------------------------
plot_include_source = True  # the figure's code is shown beside it: a user can run it
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]

# -- HTML ------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skconvfeat {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path = []
html_show_sourcelink = False


def _skip_metadata_requests(app, what, name, obj, skip, options):
    # scikit-learn generates set_{method}_request for metadata routing on every
    # estimator; they are scikit-learn's API, documented there, not ours.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
