"""Self-contained HTML reports of discovery, check and patching runs (``report.html``).

Each report is one file that opens offline: the circuit diagram inlined as SVG (Graphviz's ``dot``;
where it is missing, the report says so), heatmaps and attention patterns as PNG data URIs, the
tables (kept edges, claims with their 95% intervals and verdicts) and every setting of the run.
Built from ``pathpatch.graphs.html`` sections; this module only chooses what goes in.
"""

import shutil

import pandas as pd

from pathpatch.graphs.circuit import Circuit
from pathpatch.graphs.export import to_dot
from pathpatch.graphs.html import Section, png_section, report_html, settings_section, svg_section, table_section, text_section


def diagram_section(circuit: Circuit, highlight: set[str] | None = None) -> Section:
    """The circuit as inline SVG, or a note that Graphviz's ``dot`` is missing (the ``.dot`` file is beside the report)."""
    if shutil.which("dot") is None:
        return text_section("Circuit", "Graphviz's dot is not installed, so the diagram is not drawn here; circuit.dot holds it "
                                       "(apt-get install graphviz, then pathpatch draw circuit.json).")
    svg = to_dot(circuit, highlight=highlight).pipe(format="svg")
    return svg_section("Circuit", svg, caption="blue edges help the clean answer, red ones hurt it; width ~ |effect|")


def discovery_html(result) -> str:
    """``report.html`` of a ``pipeline.DiscoveryResult``."""
    f = result.faithfulness
    sections = [
        diagram_section(result.circuit),
        settings_section("Faithfulness", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in f.items()}),
    ]
    kept = result.scores[result.scores["edge"].isin(result.circuit.scored_edges)].sort_values("score", ascending=False)
    columns = [c for c in ("edge", "score", "normalized", "approx_score") if c in kept]
    sections.append(table_section(f"Kept edges ({len(kept)} of {len(result.scores)} scored)", kept[columns]))
    if result.curve is not None:
        sections.append(table_section("Faithfulness by circuit size (top edges by |score|)", result.curve))
    if result.attention_png:
        sections.append(png_section("Attention patterns of the circuit's heads", result.attention_png, alt="attention patterns"))
    settings = {"model": result.model_name, "task": result.task_name, "prompts": result.n_prompts, **vars(result.config)}
    sections.append(settings_section("Settings", settings))
    return report_html(f"Circuit: {result.model_name} / {result.task_name}", sections)


def check_html(report, highlight: set[str] | None = None) -> str:
    """``report.html`` of a ``pipeline.CheckReport``: verdicts with intervals, the diagram, the pinned method."""
    h = report.hypothesis
    table = report.table[["name", "kind", "value", "op", "threshold", "ci_low", "ci_high", "passed", "detail"]]
    sections = [
        table_section(f"Claims: {'PASS' if report.passed else 'FAIL'}", table, highlight_column="passed"),
        diagram_section(report.circuit, highlight),
        settings_section("Method (pinned by the hypothesis file)", {"model": h.model, "task": h.task, **h.method}),
    ]
    return report_html(f"Checks: {h.name}", sections)


def patch_html(title: str, heatmaps: dict[str, bytes], tables: dict[str, pd.DataFrame], settings: dict) -> str:
    """``report.html`` of ``pathpatch patch``: one heatmap per activation, the tables behind them, the settings."""
    sections = [png_section(f"Patching {act}", png, alt=f"{act} heatmap") for act, png in heatmaps.items()]
    sections += [table_section(f"{act} values", table) for act, table in tables.items()]
    sections.append(settings_section("Settings", settings))
    return report_html(title, sections)
