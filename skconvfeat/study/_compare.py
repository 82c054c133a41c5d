"""One page comparing several studies, read back from their report folders.

:func:`read_results` reads the ``results.json`` of a folder written by
:func:`~skconvfeat.study.write_report` (``skconvfeat --out DIR``) and refuses,
with the reason, a folder that is missing, holds no ``results.json``, or holds
one that is not JSON, of another schema version or lacks the keys read here.
:func:`write_comparison` puts several of them side by side (e.g. MNIST and
CIFAR-10): the verdicts and the baseline check of every study in one table,
every arm's accuracy with its interval in another, and per study its caveats,
accuracy figure and verdict sentences. It writes ``comparison.html`` (self-
contained, as ``report.html``) and ``comparison.md`` into a folder swapped in
whole, like a study's report.
"""

import html
import json
from pathlib import Path

from . import _format as fmt
from ._document import markdown_table
from ._schema import MAX_FILE_BYTES, SchemaError, check_results
from ._report import (
    CSS,
    SCHEMA_VERSION,
    figure_accuracy,
    html_caveats,
    html_figure,
    html_page,
    html_section,
    html_table,
    html_verdicts,
    verdict_class,
    write_text,
    check_out_dir,
    write_folder,
)

__all__ = ["COMPARISON_FILES", "read_results", "write_comparison"]

# The files of a comparison folder; a folder holding others (a study's report
# among them: its results.json) is never replaced by a comparison.
COMPARISON_FILES = ("comparison.html", "comparison.md")
_MISSING = "-"  # an arm a study did not run


def read_results(folder):
    """Read and check the ``results.json`` of the report folder ``folder``.

    Parameters
    ----------
    folder : str or os.PathLike
        A folder written by :func:`~skconvfeat.study.write_report`
        (``skconvfeat --out DIR``).

    Returns
    -------
    results : dict
        The results dict, with its ``schema_version``.

    Raises
    ------
    FileNotFoundError
        If ``folder`` does not exist or holds no ``results.json``.
    NotADirectoryError
        If ``folder`` is a file.
    ValueError
        If ``results.json`` is not JSON, is of another schema version than
        ``SCHEMA_VERSION``, or breaks the schema (a key the comparison reads
        missing, of the wrong type, out of its range, NaN, or too long): the
        message names the file and the field.

    Examples
    --------
    >>> from skconvfeat.study import read_results
    >>> read_results("no-such-folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no-such-folder: no such folder
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a report folder")
    path = folder / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no results.json: give a folder written by 'skconvfeat --out DIR'")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path} holds {size:,} bytes, more than the {MAX_FILE_BYTES:,} of any study's results")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ValueError(f"{path} is not a JSON file ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(results, dict):
        raise ValueError(f"{path} holds a JSON {type(results).__name__}, not the results of a study")
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        written = ("no schema_version (written before skconvfeat versioned it)" if version is None
                   else f"schema version {version!r}")
        raise ValueError(f"{path} has {written}; this skconvfeat reads version {SCHEMA_VERSION}. "
                         "Run the study again with this version to compare it.")
    try:
        check_results(results)
    except SchemaError as exc:
        raise ValueError(f"{path}: {exc}: it is not the results of a study of this schema") from None
    return results


def write_comparison(folders, out_dir):
    """Write one page comparing the studies of the report folders ``folders`` into ``out_dir``.

    Parameters
    ----------
    folders : sequence of str or os.PathLike
        Report folders (see :func:`read_results`), shown in this order.
    out_dir : str or os.PathLike
        The comparison folder, created with its parents if needed. An earlier
        comparison there is replaced whole; a folder holding other files is
        refused.

    Returns
    -------
    paths : dict of str to pathlib.Path
        The files written (``comparison.html``, ``comparison.md``), keyed by name.

    Raises
    ------
    FileNotFoundError, NotADirectoryError, ValueError
        If a folder cannot be read (see :func:`read_results`); nothing is written.
    OSError
        If ``out_dir`` cannot receive the comparison; nothing is written.
    ImportError
        If matplotlib is not installed; nothing is written.

    Examples
    --------
    >>> from skconvfeat.study import write_comparison
    >>> write_comparison(["mnist-report", "cifar10-report"], "both")  # doctest: +SKIP
    {'comparison.md': PosixPath('both/comparison.md'), 'comparison.html': PosixPath('both/comparison.html')}
    """
    if not folders:
        raise ValueError("write_comparison needs at least one report folder")
    # Keyed by the folder as given, which tells two runs on one dataset apart.
    studies = {str(folder): read_results(folder) for folder in folders}
    if len(studies) < len(folders):
        raise ValueError("two report folders have the same path; give each once")
    out_dir = check_out_dir(out_dir, COMPARISON_FILES)
    texts = {"comparison.md": _comparison_markdown(studies), "comparison.html": _comparison_html(studies)}

    def write(folder):
        for name, text in texts.items():
            write_text(folder / name, text)
        return list(texts)

    return {name: out_dir / name for name in write_folder(out_dir, write)}


def _title(name, results):
    return f"{results['dataset']} ({name})"


# --------------------------------------------------------------------------- rows


def _pivot(studies, entries):
    """Rows ``(key, cell of each study)`` from the ``(key, cell)`` pairs ``entries(results)`` gives.

    Keys in the order they first appear; ``_MISSING`` where a study has no such key.
    """
    table = {}
    for name, results in studies.items():
        for key, cell in entries(results):
            table.setdefault(key, {})[name] = cell
    return [(key, *(cells.get(name, _MISSING) for name in studies)) for key, cells in table.items()]


def _verdict_rows(studies):
    """One row per claim (in the order they first appear), one verdict per study."""
    return _pivot(studies, lambda results: ((v["claim"], v["verdict"]) for v in results["verdicts"]))


def _baseline_cell(results):
    """The baseline check of one study in words."""
    baseline = results["baseline"]
    if baseline is None:
        return f"no known floor for {results['dataset']}"
    verb = "reached" if baseline["reached"] else "NOT reached"
    return (f"{verb}: {baseline['label']} {fmt.percent(baseline['accuracy'])} against the "
            f"{fmt.percent(baseline['floor'])} floor")


def _overview_rows(studies):
    """Per study: design, reference, best fixed arm and the baseline check."""
    rows = []
    for name, results in studies.items():
        arms = {arm["name"]: arm for arm in results["arms"]}
        reference, best = arms[results["reference"]], arms[results["best_fixed"]]
        evaluation = results["evaluation"]
        rows.append((
            _title(name, results),
            f"{evaluation['design']}: {evaluation['n_train']} train / {evaluation['n_test']} test images",
            f"{reference['label']}: {fmt.accuracy_cell(reference)}",
            f"{best['label']}: {fmt.accuracy_cell(best)}",
            _baseline_cell(results),
        ))  # fmt: skip
    return rows


def _accuracy_rows(studies):
    """One row per arm label (in the order they first appear), its accuracy in every study."""
    return _pivot(studies, lambda results: ((arm["label"], fmt.accuracy_cell(arm)) for arm in results["arms"]))


_OVERVIEW_HEADER = ("Study", "Design", "Reference (95% CI)", "Best fixed arm (95% CI)", "Learned baseline check")


def _headers(studies):
    titles = [_title(name, results) for name, results in studies.items()]
    return ("Claim", *titles), ("Arm", *titles)


# --------------------------------------------------------------------------- pages


def _comparison_markdown(studies):
    verdict_header, accuracy_header = _headers(studies)
    parts = [f"# skconvfeat: {len(studies)} studies compared"]
    for name, results in studies.items():
        parts += [f"## {_title(name, results)}", *fmt.caveats(results), fmt.study_line(results)]
    parts += ["## Overview", markdown_table(_OVERVIEW_HEADER, _overview_rows(studies)),
              "## Verdicts", markdown_table(verdict_header, _verdict_rows(studies)),
              "## Accuracy per arm (95% CI)", markdown_table(accuracy_header, _accuracy_rows(studies))]
    return "\n\n".join(parts) + "\n"


# Studies sit in columns at least 480 px wide (two side by side on a laptop
# screen); their figures are drawn at that width so their text is not shrunk.
_COLUMN_INCHES = 5.0
_COMPARISON_CSS = """
.studies { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1.5em; }
.studies > section { min-width: 0; }
td.supported, td.refuted, td.inconclusive { white-space: nowrap; }
"""


def _verdict_table(header, rows):
    """The verdicts table, each verdict word styled as in a study's report."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = []
    for claim, *verdicts in rows:
        cells = "".join(f'<td class="{verdict_class(v)}">{html.escape(v)}</td>' for v in verdicts)
        body.append(f"<tr><td>{html.escape(claim)}</td>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _study_column(index, name, results):
    """One study's column: caveats, what was run, accuracy figure and verdict sentences."""
    figure = html_figure(
        f"fig-accuracy-{index}", "Accuracy per arm",
        f"Mean accuracy with its 95% interval ({results['evaluation']['interval']}); dots: single splits or seeds.",
        figure_accuracy(results, width=_COLUMN_INCHES),
    )
    body = (f"{html_caveats(fmt.caveats(results))}<p>{html.escape(fmt.study_line(results))}</p>{figure}"
            f"<h3>Verdicts</h3>{html_verdicts(results)}")
    return html_section(f"study-{index}", _title(name, results), body)


def _comparison_html(studies):
    verdict_header, accuracy_header = _headers(studies)
    columns = "".join(_study_column(i, name, results) for i, (name, results) in enumerate(studies.items()))
    body = (
        html_section("overview", "Overview", html_table(_OVERVIEW_HEADER, _overview_rows(studies)))
        + html_section("verdicts", "Verdicts", _verdict_table(verdict_header, _verdict_rows(studies)))
        + html_section("accuracy", "Accuracy per arm (95% CI)", html_table(accuracy_header, _accuracy_rows(studies)))
        + f'<div class="studies">{columns}</div>'
    )
    return html_page(f"skconvfeat: {len(studies)} studies compared", body, css=CSS + _COMPARISON_CSS)
