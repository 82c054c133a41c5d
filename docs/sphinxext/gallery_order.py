"""The order of the gallery's examples (a module so Sphinx can pickle the sort key)."""

from pathlib import Path

# From first contact to the study, not alphabetical; examples not listed here
# (new ones) come after these, by file name.
GALLERY_ORDER = [
    "plot_quick_start.py",
    "plot_choosing_a_bank.py",
    "plot_data_derived_bank.py",
    "plot_grid_search.py",
    "plot_dask.py",
    "plot_fixed_vs_learned.py",
    "plot_transfer_study.py",
]


def position(filename):
    """Sort key of an example file."""
    name = Path(filename).name
    return (GALLERY_ORDER.index(name) if name in GALLERY_ORDER else len(GALLERY_ORDER), name)
