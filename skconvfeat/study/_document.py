"""One document model of a study's results, rendered as the command line's text and as ``summary.md``.

:func:`study_document` decides once what a reader sees, in which order and
under which heading: the caveats, the sentence saying what was run, then the
sections (accuracy per arm, comparisons with the reference, the transfer
experiment, verdicts, skipped arms) and a closing line. :func:`to_text` and
:func:`to_markdown` lay it out; the report's page (``._report``) lays out the
same document in HTML, with its figures beside the sections they belong to.
"""

from dataclasses import dataclass

from . import _format as fmt

__all__ = ["Document", "Section", "Table", "study_document", "to_markdown", "to_text"]


@dataclass(frozen=True)
class Table:
    """A table: its header and rows of cells (strings)."""

    header: tuple
    rows: tuple


@dataclass(frozen=True)
class Section:
    """A headed part of the document: a table and a note under it, or a list of items.

    ``items`` are ``(lead, word, text)`` triples: a verdict is (claim, verdict
    word, sentence); a skipped arm is (name, None, reason).
    """

    key: str  # stable id (the HTML section id)
    title: str
    table: Table = None
    note: str = None
    items: tuple = ()


@dataclass(frozen=True)
class Document:
    """A study's results as a reader sees them."""

    title: str
    caveats: tuple  # lines a reader must see before any verdict
    summary: str  # one sentence saying what was run
    sections: tuple
    closing: str


def study_document(results, transfer=None):
    """The document of ``results`` (:func:`run_study`) and, when it ran, ``transfer`` (:func:`run_transfer`)."""
    evaluation = results["evaluation"]
    sections = [
        Section("summary", "Accuracy per arm", Table(fmt.SUMMARY_HEADER, tuple(fmt.summary_rows(results))),
                note=f"95% CI: {evaluation['interval']}; times are means per split or seed."),
    ]
    if results["comparisons"]:
        sections.append(Section("comparisons",
                                f"Comparisons with the reference: {evaluation['test']}; p-values Holm-adjusted",
                                Table(fmt.COMPARISON_HEADER, tuple(fmt.comparison_rows(results)))))
    ran = transfer is not None and not transfer.get("skipped")
    if ran:
        sections.append(Section("transfer", _transfer_title(transfer),
                                Table(fmt.TRANSFER_HEADER, tuple(fmt.transfer_rows(transfer)))))
    if results["verdicts"]:
        sections.append(Section("verdicts", "Verdicts",
                                items=tuple((v["claim"], v["verdict"], v["sentence"]) for v in results["verdicts"])))
    skipped = [(s["name"], None, s["reason"]) for s in results["skipped_arms"]]
    if transfer is not None and transfer.get("skipped"):
        skipped.append(("transfer", None, transfer["skipped"]))
    if skipped:
        sections.append(Section("skipped", "Skipped arms", items=tuple(skipped)))
    elapsed = results["elapsed_s"] + (transfer["elapsed_s"] if ran else 0.0)
    return Document(title=f"skconvfeat study: {results['dataset']}", caveats=tuple(fmt.caveats(results)),
                    summary=fmt.study_line(results), sections=tuple(sections), closing=f"Done in {elapsed:.1f} s.")


def _transfer_title(transfer):
    """The heading of the transfer experiment: which classes gave the kernels, which used them."""
    return (f"Transfer: kernels learned on classes {transfer['source_classes']}, used on "
            f"{transfer['target_classes']}; {transfer['n_seeds']} seeds")


def to_text(document):
    """Plain text for a terminal: fixed-width tables, items indented."""
    lines = [*document.caveats, document.summary]
    for section in document.sections:
        lines += ["", section.title]
        if section.table is not None:
            lines.append(fmt.text_table(section.table.header, section.table.rows))
        if section.note:
            lines.append(f"({section.note})")
        lines += [f"  {_item_text(lead, word, text)}" for lead, word, text in section.items]
    lines += ["", document.closing]
    return "\n".join(lines)


def _item_text(lead, word, text):
    return f"[{word}] {lead}: {text}" if word else f"{lead}: {text}"


def to_markdown(document):
    """Markdown: the title, caveats and summary as paragraphs, one ``##`` heading per section."""
    parts = [f"# {document.title}", *document.caveats, document.summary]
    for section in document.sections:
        parts.append(f"## {section.title}")
        if section.table is not None:
            parts.append(markdown_table(section.table.header, section.table.rows))
        if section.note:
            parts.append(section.note)
        if section.items:
            parts.append("\n".join(
                f"- **{lead}**: {word}. {text}" if word else f"- {lead}: {text}" for lead, word, text in section.items
            ))
    parts.append(document.closing)
    return "\n\n".join(parts) + "\n"


def _markdown_cell(text):
    # A "|" inside a cell would end it early.
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header, rows):
    """A Markdown table, with "|" inside cells escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
