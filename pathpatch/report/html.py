"""One self-contained HTML report: diagrams, heatmaps, tables and settings in a single file.

A report is a title and a list of ``Section`` s. Diagrams are inlined as SVG markup (Graphviz's own
output, with its XML prolog, DOCTYPE and comments removed), pictures as base64 ``data:`` URIs, tables
and settings as HTML tables, so the file opens anywhere, offline, with nothing else beside it: it
names no external resource (no stylesheet, font, script or image URL; the only ``http://`` strings are
the SVG namespace declarations), runs no script, and its Content-Security-Policy forbids loading
anything but inline styles and ``data:`` images. Every name, cell and setting goes through
``html.escape``, so a hostile model, task or node name stays text.

Tables whose rows pass or fail (a ``highlight_column`` of booleans or ``pass``/``fail``/``inconclusive`` strings) colour
each row and spell the verdict out (``✓ pass`` / ``✗ fail`` / ``? inconclusive``) with a count above the table; ``ci_low`` /
``ci_high`` columns are shown as one ``95% CI`` column, ``[low, high]``.
"""

import base64
import html
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from pathpatch.errors import InputError

SectionKind = Literal["svg", "png", "table", "text", "settings"]
KINDS: tuple[str, ...] = ("svg", "png", "table", "text", "settings")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_ROWS = 200
NUMERIC = ' class="num"'
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_PROLOG = re.compile(r"<\?xml.*?\?>|<!DOCTYPE[^>]*>|<!--.*?-->", re.DOTALL | re.IGNORECASE)
_UNSAFE_SVG = re.compile(r"<script|<foreignObject|<iframe|<[^>]*\son[a-z]+\s*=|(?:href|src)\s*=\s*[\"'](?!#)|url\(\s*[\"']?(?!#)",
                         re.IGNORECASE)
_VERDICTS = {"pass": "pass", "passed": "pass", "true": "pass", "fail": "fail", "failed": "fail", "false": "fail",
             "inconclusive": "inconclusive", "report": "report", "reported": "report", "skip": "report", "skipped": "report"}
_MARKS = {"pass": "✓ pass", "fail": "✗ fail", "inconclusive": "? inconclusive", "report": "– reported"}
STYLE = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #1f2328; max-width: 1150px; }
h1 { font-size: 24px; margin: 0 0 12px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; }
nav ol { margin: 0; padding-left: 20px; } nav a { color: #0550ae; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.pass td { background: #e6f4ea; } tr.fail td { background: #fde7e7; } tr.report td { background: #f3f4f6; }
tr.inconclusive td { background: #fff8c5; } .verdict-inconclusive { color: #7d4e00; font-weight: bold; }
.verdict-pass { color: #116329; font-weight: bold; } .verdict-fail { color: #a40e26; font-weight: bold; }
.verdict-report { color: #57606a; font-style: italic; }
.summary { font-weight: bold; margin: 4px 0; } .caption { color: #57606a; font-size: 13px; margin: 4px 0; }
figure { margin: 6px 0; } figure svg { max-width: 100%; height: auto; } figure img { max-width: 100%; }
table.settings th { width: 220px; }
"""


@dataclass(frozen=True, eq=False)
class Section:
    """One part of a report.

    Attributes:
        title: Heading (escaped).
        kind: ``svg`` (markup), ``png`` (bytes), ``table`` (DataFrame), ``text`` (plain text) or
            ``settings`` (mapping of name to value).
        content: The SVG text, PNG bytes, table, text or settings.
        caption: A line of plain text under the heading.
        alt: Alternative text of a PNG.
        highlight_column: For tables, the column whose pass/fail verdict colours each row.
    """

    title: str
    kind: SectionKind
    content: "str | bytes | pd.DataFrame | Mapping[str, object]"
    caption: str = ""
    alt: str = ""
    highlight_column: str | None = None

    def __post_init__(self) -> None:
        expected = {"svg": str, "png": bytes, "table": pd.DataFrame, "text": str, "settings": Mapping}
        if self.kind not in KINDS:
            raise InputError(f"Section {self.title!r}: unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}.")
        if not isinstance(self.content, expected[self.kind]):
            raise InputError(f"Section {self.title!r} of kind {self.kind!r} holds a {type(self.content).__name__}; "
                            f"it needs a {expected[self.kind].__name__} (use svg_section, png_section, table_section, ...).")
        if self.kind == "png" and not self.content.startswith(PNG_SIGNATURE):
            raise InputError(f"Section {self.title!r}: the bytes are not a PNG image; pass plots.figure_png(fig).")
        if self.kind == "svg" and "<svg" not in self.content:
            raise InputError(f"Section {self.title!r}: no <svg> element in the diagram text; pass to_dot(circuit).pipe(format='svg').")
        if self.kind == "svg" and _UNSAFE_SVG.search(self.content):
            raise InputError(f"Section {self.title!r}: the SVG holds a script, event handler or external reference "
                             f"({_UNSAFE_SVG.search(self.content).group(0)!r}); reports inline only self-contained, script-free SVG.")
        if self.highlight_column is not None and (self.kind != "table" or self.highlight_column not in self.content.columns):
            columns = ", ".join(map(str, self.content.columns)) if self.kind == "table" else "none (not a table)"
            raise InputError(f"Section {self.title!r}: highlight column {self.highlight_column!r} is not among the columns ({columns}).")


def svg_section(title: str, svg: "str | bytes", caption: str = "") -> Section:
    """Return a section inlining an SVG diagram (e.g. ``to_dot(circuit).pipe(format="svg")``).

    Raises:
        ValueError: No ``<svg>`` element, or one with scripts, event handlers or external references.

    Examples:
        >>> svg_section("d", '<?xml version="1.0"?><!-- c --><svg xmlns="http://www.w3.org/2000/svg"/>').content
        '<svg xmlns="http://www.w3.org/2000/svg"/>'
    """
    text = svg.decode("utf-8") if isinstance(svg, bytes) else svg
    return Section(title, "svg", _PROLOG.sub("", text).strip(), caption=caption)


def png_section(title: str, png: bytes, alt: str, caption: str = "") -> Section:
    """Return a section showing PNG bytes (e.g. ``plots.figure_png(fig)``) with alternative text ``alt``."""
    return Section(title, "png", bytes(png), caption=caption, alt=alt)


def table_section(title: str, table: pd.DataFrame, highlight_column: str | None = None, caption: str = "") -> Section:
    """Return a table section; ``highlight_column`` (booleans or pass/fail strings) colours each row by its verdict.

    Examples:
        >>> section = table_section("checks", pd.DataFrame({"name": ["a"], "passed": [False]}), "passed")
        >>> "✗ fail" in report_html("r", [section])
        True
    """
    return Section(title, "table", table, caption=caption, highlight_column=highlight_column)


def settings_section(title: str, settings: Mapping[str, object], caption: str = "") -> Section:
    """Return a section listing settings, one row per name (nested values as JSON)."""
    return Section(title, "settings", dict(settings), caption=caption)


def text_section(title: str, text: str, caption: str = "") -> Section:
    """Return a section of plain text; blank lines separate paragraphs."""
    return Section(title, "text", text, caption=caption)


def report_html(title: str, sections: list[Section]) -> str:
    """Return one self-contained HTML page: the title, a table of contents, then each section in order.

    Args:
        title: Page title and heading (escaped).
        sections: What to show (``svg_section``, ``png_section``, ``table_section``, ``settings_section``, ``text_section``).

    Returns:
        The HTML text, with no external resources and no scripts.

    Examples:
        >>> page = report_html("a <b>", [text_section("Note", "x & y")])
        >>> "<h1>a &lt;b&gt;</h1>" in page and "<p>x &amp; y</p>" in page
        True
    """
    e = _escape
    toc = "".join(f'<li><a href="#section-{i}">{e(s.title)}</a></li>' for i, s in enumerate(sections, 1))
    body = "\n".join(_render_section(i, s) for i, s in enumerate(sections, 1))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{e(title)}</h1>\n"
        f"<nav><ol>{toc}</ol></nav>\n{body}\n</body>\n</html>\n"
    )


def _escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def _render_section(index: int, section: Section) -> str:
    """The ``<section>`` element of one section."""
    head = f'<section id="section-{index}" class="{section.kind}">\n<h2>{_escape(section.title)}</h2>\n'
    if section.caption:
        head += f'<p class="caption">{_escape(section.caption)}</p>\n'
    if section.kind == "svg":
        inner = f"<figure>{section.content}</figure>"
    elif section.kind == "png":
        data = base64.b64encode(section.content).decode("ascii")
        inner = f'<figure><img alt="{_escape(section.alt or section.title)}" src="data:image/png;base64,{data}"></figure>'
    elif section.kind == "table":
        inner = _render_table(section.content, section.highlight_column)
    elif section.kind == "settings":
        rows = "".join(f"<tr><th>{_escape(k)}</th><td>{_escape(_setting(v))}</td></tr>" for k, v in section.content.items())
        inner = f'<table class="settings"><tbody>{rows}</tbody></table>'
    else:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", section.content) if p.strip()]
        inner = "".join(f"<p>{_escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return head + inner + "\n</section>"


def _render_table(table: pd.DataFrame, highlight: str | None, max_rows: int = MAX_ROWS) -> str:
    """An HTML table: CI columns merged, verdict rows coloured and spelled out, long tables cut at ``max_rows``."""
    shown = _merge_intervals(table)
    verdicts = [_verdict(v, op) for v, op in zip(table[highlight], table.get("op", [None] * len(table)))] if highlight else None
    lines = []
    if verdicts is not None:
        counts = {kind: verdicts.count(kind) for kind in _MARKS}
        judged = counts["pass"] + counts["fail"] + counts["inconclusive"]
        unsure = f", {counts['inconclusive']} inconclusive" if counts["inconclusive"] else ""
        extra = f", {counts['report']} reported only" if counts["report"] else ""
        lines.append(f'<p class="summary">{counts["pass"]} of {judged} pass, {counts["fail"]} fail{unsure}{extra}</p>')
    header = "".join(f"<th>{_escape(c)}</th>" for c in shown.columns)
    body = []
    for i, (_, row) in enumerate(shown.head(max_rows).iterrows()):
        cells = []
        for column, value in row.items():
            if verdicts is not None and column == highlight:
                mark = _MARKS[verdicts[i]]
                cells.append(f'<td class="verdict-{verdicts[i]}">{mark}</td>')
            else:
                cells.append(f"<td{NUMERIC if _number(value) else ''}>{_escape(_cell(value))}</td>")
        row_class = f' class="{verdicts[i]}"' if verdicts is not None else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    if len(shown) > max_rows:
        lines.append(f'<p class="caption">Showing the first {max_rows} of {len(shown)} rows.</p>')
    lines.append(f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    return "\n".join(lines)


def _merge_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """Replace each ``<prefix>ci_low``/``<prefix>ci_high`` pair by one ``<prefix>95% CI`` column of ``[low, high]`` text."""
    shown = table.copy()
    for low in [c for c in table.columns if isinstance(c, str) and c.endswith("ci_low")]:
        high = low[: -len("low")] + "high"
        if high not in table.columns:
            continue
        prefix = low[: -len("ci_low")]
        text = [_interval(a, b) for a, b in zip(table[low], table[high])]
        at = list(shown.columns).index(low)
        shown = shown.drop(columns=[low, high])
        shown.insert(at, f"{prefix}95% CI", text)
    return shown


def _interval(low: object, high: object) -> str:
    """``[low, high]``; ``none`` when missing, ``exact (no interval)`` when both ends coincide (values read off weights)."""
    if not _finite(low) or not _finite(high):
        return "none"
    if float(low) == float(high):
        return "exact (no interval)"
    return f"[{_cell(float(low))}, {_cell(float(high))}]"


def _verdict(value: object, op: object) -> str:
    """``pass``, ``fail``, ``inconclusive`` or ``report`` for one row (an ``op`` of ``report`` marks a claim that is measured only)."""
    if op == "report":
        return "report"
    if isinstance(value, (bool, np.bool_)):
        return "pass" if value else "fail"
    return _VERDICTS.get(str(value).strip().lower(), "report")


def _number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _finite(value: object) -> bool:
    return _number(value) and math.isfinite(float(value))


def _cell(value: object) -> str:
    """A table cell's text: floats to 4 significant digits, NaN as ``—``, booleans as yes/no."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "—" if math.isnan(value) else f"{float(value):.4g}"
    if value is None or value is pd.NA:
        return "—"
    return str(value)


def _setting(value: object) -> str:
    """A setting's text: mappings and lists as JSON, others as ``str``."""
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return _cell(value)
