"""Self-contained HTML reports of discovery, check and patching runs (``report.html``).

Each report is one file that opens offline: the circuit diagram inlined as SVG (Graphviz's ``dot``;
where it is missing, the report says so), heatmaps and attention patterns as PNG data URIs, the
tables (kept edges, claims with their 95% intervals and verdicts) and every setting of the run.
Built from ``pathpatch.report.html`` sections; this module only chooses what goes in. ``pathpatch lens``
(direct logit attribution and the logit lens) also gets a Markdown ``report.md`` from ``lens_markdown``.
"""

import math
import shutil

import pandas as pd

from pathpatch.circuit.circuit import Circuit
from pathpatch.circuit.directions import directions_text
from pathpatch.errors import listed
from pathpatch.report.export import to_dot
from pathpatch.report.html import Section, png_section, report_html, settings_section, svg_section, table_section, text_section


def diagram_section(circuit: Circuit, highlight: set[str] | None = None) -> Section:
    """The circuit as inline SVG, or a note that Graphviz's ``dot`` is missing (the ``.dot`` file is beside the report)."""
    if shutil.which("dot") is None:
        return text_section("Circuit", "Graphviz's dot is not installed, so the diagram is not drawn here; circuit.dot holds it "
                                       "(apt-get install graphviz, then pathpatch draw circuit.json).")
    svg = to_dot(circuit, highlight=highlight).pipe(format="svg")
    return svg_section("Circuit", svg, caption="blue edges help the clean answer, red ones hurt it; width ~ |effect|")


def discovery_html(result) -> str:
    """``report.html`` of a ``pipeline.DiscoveryResult``."""
    f, config = result.faithfulness, result.config
    doubts = [text_section("Doubts: this circuit is suspect", "\n\n".join(f"{d}." for d in result.doubts))] if result.doubts else []
    sections = [
        *doubts,
        diagram_section(result.circuit),
        settings_section("Faithfulness", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in f.items()},
                         caption=normaliser_text(f, config.corruption, result.circuit.info.get("task_corruption"))),
        text_section("Directions", directions_text(config.method, config.direction, result.directions, config.corruption)),
    ]
    kept = result.scores[result.scores["edge"].isin(result.circuit.scored_edges)].sort_values("score", ascending=False)
    columns = [c for c in ("edge", "score", "normalized", "normalized_noise", "normalized_denoise", "kept_by", "approx_score") if c in kept]
    sections.append(table_section(f"Kept edges ({len(kept)} of {result.scored()})", kept[columns]))
    if result.cross is not None and len(result.cross):
        sections.append(table_section("Under other corruptions", result.cross, caption="the same circuit measured under each corruption "
                                      "(each a share of its own clean - corrupt); found_*: a circuit rediscovered with it, when this one was suspect"))
    if result.curve is not None:
        sections.append(table_section("Faithfulness by circuit size (top edges by their larger |effect|)", result.curve))
    if result.attention_png:
        sections.append(png_section("Attention patterns of the circuit's heads", result.attention_png, alt="attention patterns"))
    settings = {"model": result.model_name, "task": result.task_name, "prompts": result.n_prompts, **vars(result.config),
                "metric": result.circuit.info.get("metric")}  # the metric used: the task's own unless overridden
    sections.append(settings_section("Settings", settings))
    return report_html(f"Circuit: {result.model_name} / {result.task_name}", sections)


def check_html(report, highlight: set[str] | None = None) -> str:
    """``report.html`` of a ``pipeline.CheckReport``: verdicts with intervals, the diagram, the pinned method."""
    h = report.hypothesis
    table = report.table[["name", "kind", "value", "op", "threshold", "ci_low", "ci_high", "verdict", "detail"]]
    sections = [
        table_section(f"Claims: {report.verdict}", table, highlight_column="verdict"),
        *([text_section("Notes", "\n".join(report.notes))] if report.notes else []),
        *([diagram_section(report.circuit, highlight)] if report.circuit is not None else []),
        settings_section("Method (pinned by the hypothesis file)", {"model": h.model, "task": h.task, **h.method}),
    ]
    return report_html(f"Checks: {h.name}", sections)


def patch_html(title: str, heatmaps: dict[str, bytes], tables: dict[str, pd.DataFrame], settings: dict) -> str:
    """``report.html`` of ``pathpatch patch``: one heatmap per activation, the tables behind them, the settings."""
    sections = [png_section(f"Patching {act}", png, alt=f"{act} heatmap") for act, png in heatmaps.items()]
    sections += [table_section(f"{act} values", table) for act, table in tables.items()]
    sections.append(settings_section("Settings", settings))
    return report_html(title, sections)


def lens_markdown(title: str, tables: dict[str, pd.DataFrame], settings: dict, files: list[str]) -> str:
    """``report.md`` of ``pathpatch lens``: the logit difference, the logit lens, DLA by layer and the strongest heads.

    Args:
        title: The report's heading.
        tables: ``logit_diff`` (per prompt), ``dla`` and ``heads`` (``FirstLook.dla_table``), ``lens`` (``FirstLook.lens_table``).
        settings: Model, task, prompts, seed and the like, listed as given.
        files: The names of the files beside the report.
    """
    ld, lens, dla, heads = tables["logit_diff"], tables["lens"], tables["dla"], tables["heads"]
    lines = [f"# {title}", "", f"Logit difference over {len(ld)} prompts: clean {_mean_sd(ld['clean'])}, corrupt {_mean_sd(ld['corrupt'])}.",
             "Direct logit attribution (DLA) splits each prompt's clean logit difference exactly into the embedding, every "
             "attention layer (ATTN, = its heads + output bias) and MLP, and a constant bias term, with the final norm's scale "
             "of the final residual stream applied; positive values push toward the clean answer.", "", "## Settings", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    lines += ["", "## Logit lens (logit difference of the accumulated residual stream)", "",
              "`final scale`: divided by the final residual's norm scale (document 001; steps are the sublayers' DLA). "
              "`own scale`: each stream through the final norm with its own statistics.", "",
              "| after | final scale | 95% CI | own scale | 95% CI |", "|---|---|---|---|---|"]
    lines += [f"| {r.after} | {r.mean:.4g} | {_ci(r.ci_low, r.ci_high)} | {r.own_mean:.4g} | {_ci(r.own_ci_low, r.own_ci_high)} |"
              for r in lens.itertuples()]
    lines += ["", "## DLA by layer", "", "| component | mean | 95% CI |", "|---|---|---|"]
    lines += [f"| {r.component} | {r.mean:.4g} | {_ci(r.ci_low, r.ci_high)} |" for r in dla.itertuples()]
    ranked = heads.sort_values("mean", ascending=False)
    shown = pd.concat([ranked.head(5), ranked.tail(5)]).drop_duplicates("component")
    lines += ["", "## Strongest heads (5 most positive, 5 most negative)", "", "| head | mean | 95% CI |", "|---|---|---|"]
    lines += [f"| {r.component} | {r.mean:.4g} | {_ci(r.ci_low, r.ci_high)} |" for r in shown.itertuples()]
    lines += ["", "## Files", ""] + [f"- {name}" for name in files]
    return "\n".join(lines) + "\n"


def lens_html(title: str, tables: dict[str, pd.DataFrame], pngs: dict[str, bytes], settings: dict) -> str:
    """``report.html`` of ``pathpatch lens``: the figures, then the tables behind them, then the settings.

    Args:
        title: Page title.
        tables: As ``lens_markdown`` takes them.
        pngs: Figure title -> PNG bytes, in the order shown.
        settings: The run's settings.
    """
    ld = tables["logit_diff"]
    summary = (f"Logit difference over {len(ld)} prompts: clean {_mean_sd(ld['clean'])}, corrupt {_mean_sd(ld['corrupt'])}. "
               "DLA values are in logit-difference units; positive values push toward the clean answer.")
    sections = [text_section("Summary", summary)]
    sections += [png_section(name, png, alt=name) for name, png in pngs.items()]
    sections += [table_section("Logit lens table", tables["lens"], caption="final scale: divided by the final residual's norm scale "
                                                                      "(document 001); own_: each stream normalised by its own scale"),
                 table_section("DLA by layer table", tables["dla"]),
                 table_section("DLA by head table", tables["heads"].sort_values("mean", ascending=False)),
                 table_section("Logit difference per prompt", ld), settings_section("Settings", settings)]
    return report_html(title, sections)


def _mean_sd(values: pd.Series) -> str:
    """``mean ± sd`` of a column, ``not run`` when it is all NaN."""
    if values.isna().all():
        return "not run"
    return f"{values.mean():.4g} ± {values.std(ddof=1 if len(values) > 1 else 0):.3g}"


def _ci(low: float, high: float) -> str:
    return f"[{low:.4g}, {high:.4g}]"


def normaliser_text(faith: dict[str, float], corruption: str, task_corruption: str | None) -> str:
    """One sentence for reports: the clean - corrupt gap that every share is of, and where its corrupt end comes from."""
    source = {
        "paired": f"the task's corrupt prompts ({task_corruption or 'paired'})",
        "resample": "every edge carrying another clean prompt's activation (resample)",
        "mean": "every edge mean-ablated over the prompts",
        "zero": "every edge zero-ablated",
    }[corruption]
    gap = faith["clean_metric"] - faith["corrupt_metric"]
    return (f"Scores and faithfulness are shares of clean - corrupt = {gap:.4g} (clean {faith['clean_metric']:.4g}, "
            f"corrupt {faith['corrupt_metric']:.4g}: {source}).")


def cross_markdown(table: pd.DataFrame) -> list[str]:
    """The circuit under other corruptions, and what rediscovering with each found, as Markdown table lines."""
    number = lambda v, fmt=".3f": "" if isinstance(v, float) and math.isnan(v) else format(v, fmt)  # noqa: E731
    lines = ["| corruption | clean - corrupt | faithfulness | noise faithfulness | rediscovered: edges | faithfulness | "
             "noise faithfulness | edges it adds | note |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.corruption} | {number(r.gap, '.4g')} | {number(r.faithfulness)} | {number(r.noise_faithfulness)} | "
                     f"{number(r.found_edges, '.0f')} | {number(r.found_faithfulness)} | {number(r.found_noise_faithfulness)} | "
                     f"{listed(edge_list(r.added), 6)} | {r.note} |")
    return lines


def edge_list(joined: str) -> list[str]:
    """The edge names in a ';'-joined list."""
    return [e for e in joined.split(";") if e]
