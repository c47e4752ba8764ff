"""Pictures of patching results and attention patterns, drawn with matplotlib into PNG bytes.

An activation-patching heatmap shows, for every layer (rows) and position or head (columns), how much
patching that one activation moves the task metric, as a share of the clean - corrupt gap: in the
default ``denoise`` direction (clean activation patched into the corrupt run) a cell of 1 restores the
clean metric and 0 leaves the corrupt one; in the ``noise`` direction 1 means the patch alone drops the
clean run to the corrupt metric. Positive cells (blue) help the clean answer, negative ones (red) hurt
it; the diverging colour map is centred on 0 with symmetric limits, as in TransformerLens' and ARENA's
``imshow(..., color_continuous_midpoint=0, color_continuous_scale="RdBu")`` figures. Positions are
labelled ``pos: token`` from the first prompt when the model has a tokenizer, else by index. Per-position
head activations are drawn as ARENA draws them, one row per head (``L0H0``, ``L0H1``, ...) and one
column per position, rather than summed over positions (patch effects do not add up).

Attention figures show each chosen head's pattern (destination rows, source columns) averaged over
the task's clean prompts, then on a few single prompts.

First-look figures (``pathpatch lens``): each head's mean direct logit attribution as a layer x head
heatmap on the same diverging scale (blue pushes toward the clean answer, red toward the wrong one,
in logit-difference units), and lines with 95% bands for the logit lens and DLA by sublayer.

Figures are ``matplotlib.figure.Figure`` objects made without ``pyplot``, so importing this module
selects no backend and changes no global state; ``figure_png`` renders with Agg at a fixed size and
dpi with no software/date metadata, so the same input gives the same PNG bytes.
"""

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.files import write_atomic
from pathpatch.names import hook_name, parse_node
from pathpatch.patch.activation import ActivationPatchResult
from pathpatch.task.groups import AnyTask
from pathpatch.task.task import Task

DPI = 100
TABLE_COLUMNS = ("act", "layer", "pos", "head", "token", "metric", "score", "normalized")
NORMALIZED_LABEL = "normalized score\n(share of the clean − corrupt gap)"
MAX_ANNOTATED_CELLS = 300
MAX_TICKS = 48  # labels per axis; longer axes label every k-th position
_FORMATS = {".png": "png", ".svg": "svg"}
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


def str_tokens(model: torch.nn.Module, task: AnyTask, prompt: int = 0) -> list[str] | None:
    """Return the token strings of one clean prompt (after the task's position labels, if it has them), or None
    when the model has no tokenizer and the task no labels, or inputs are vectors.

    Examples:
        >>> class NoTokenizer(torch.nn.Module): tokenizer = None
        >>> task = Task("t", torch.tensor([[1, 2]]), torch.tensor([[2, 1]]), torch.tensor([[1]]), torch.tensor([[2]]), torch.tensor([1]))
        >>> str_tokens(NoTokenizer(), task) is None
        True
    """
    first = task if isinstance(task, Task) else task.groups[0]
    if getattr(model, "tokenizer", None) is None or first.clean.is_floating_point():
        return None if first.labels is None else list(first.labels)  # a template's position labels name the axis
    tokens = [str(t) for t in model.to_str_tokens(first.clean[prompt])]
    return tokens if first.labels is None else [f"{label} {token}" for label, token in zip(first.labels, tokens)]


def position_labels(n_pos: int, tokens: Sequence[str] | None = None) -> list[str]:
    """Return ``pos: token`` axis labels (``pos`` alone without tokens); ``$`` and newlines are shown literally.

    Examples:
        >>> position_labels(2, ["a", "$x"])
        ['0: a', '1: \\\\$x']
        >>> position_labels(2)
        ['0', '1']
    """
    if tokens is None:
        return [str(i) for i in range(n_pos)]
    shown = [str(t).replace("\n", "\\n").replace("$", r"\$") for t in tokens]  # mathtext would read $...$
    return [f"{i}: {t}" for i, t in zip(range(n_pos), shown)]


def patching_table(result: ActivationPatchResult, act: str | None = None, tokens: Sequence[str] | None = None) -> pd.DataFrame:
    """Return the patching result as a tidy table with the columns ``TABLE_COLUMNS``, one row per patch.

    Args:
        result: An ``activation_patch`` (or ``block_every``) result.
        act: Keep only this activation's rows; None keeps all.
        tokens: Token strings per position (``str_tokens``) for the ``token`` column; empty without.

    Returns:
        ``act, layer, pos, head`` (``pos``/``head`` empty where the patch spans them), ``token``,
        ``metric`` (patched), ``score`` and ``normalized`` (NaN when the run was not normalized).

    Raises:
        ValueError: ``act`` is not in the result.
    """
    table = _rows(result, act)
    out = pd.DataFrame({"act": table["act"].astype(str), "layer": table["layer"].astype(int)})
    for axis in ("pos", "head"):
        out[axis] = table[axis].astype("Int64") if axis in table else pd.array([pd.NA] * len(table), dtype="Int64")
    if tokens is not None and "pos" in table:
        out["token"] = [str(tokens[p]) if p < len(tokens) else "" for p in table["pos"]]
    else:
        out["token"] = ""
    out["metric"] = table["metric"].astype(float)
    out["score"] = table["score"].astype(float)
    out["normalized"] = table["normalized"].astype(float) if "normalized" in table else np.nan
    return out.reset_index(drop=True)[list(TABLE_COLUMNS)]


@dataclass(frozen=True)
class Heatmap:
    """What ``patching_heatmap`` draws.

    Attributes:
        values: One value per cell ``[row col]``.
        rows: Row labels: layers (``0``, ``1``...) or heads (``L0H0``...).
        cols: Column labels: positions (``pos: token``), heads (``H0``...) or ``all positions``.
        row_axis: ``layer`` or ``head``.
        col_axis: ``position`` (``destination position`` for patterns), ``head`` or ``positions``.
        label: What the values are (the colour bar's label).
    """

    values: np.ndarray
    rows: list[str]
    cols: list[str]
    row_axis: str
    col_axis: str
    label: str


def heatmap_grid(result: ActivationPatchResult, act: str, tokens: Sequence[str] | None = None) -> Heatmap:
    """Return the cells of one activation's patching heatmap.

    Rows are layers (``L0H0``-style heads for per-position head activations); columns are positions
    (``pos: token``), heads (``H0``...) or one ``all positions`` column. Values are ``normalized`` when the
    table has it, else ``score / |clean - corrupt|`` (the same number when clean beats corrupt), else ``score``.

    Raises:
        ValueError: ``act`` is not in the result.
    """
    table = _rows(result, act)
    shown, label = _shown_values(table, result)
    index = {axis: table[axis].to_numpy(dtype=int) for axis in ("layer", "pos", "head") if axis in table}
    size = {axis: int(keys.max()) + 1 for axis, keys in index.items()}
    layers = [str(layer) for layer in range(size["layer"])]
    if "pos" in index and "head" in index:
        rows = [f"L{layer}H{head}" for layer in range(size["layer"]) for head in range(size["head"])]
        row_key, row_axis = index["layer"] * size["head"] + index["head"], "head"
    else:
        rows, row_key, row_axis = layers, index["layer"], "layer"
    if "pos" in index:
        col_axis = "destination position" if act == "pattern" else "position"
        cols, col_key = position_labels(size["pos"], tokens), index["pos"]
    elif "head" in index:
        cols, col_key, col_axis = [f"H{h}" for h in range(size["head"])], index["head"], "head"
    else:
        cols, col_key, col_axis = ["all positions"], np.zeros(len(table), dtype=int), "positions"
    values = np.full((len(rows), len(cols)), np.nan)  # [row col]
    values[row_key, col_key] = shown
    return Heatmap(values, rows, cols, row_axis, col_axis, label)


def patching_heatmap(result: ActivationPatchResult, act: str, tokens: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Draw one activation's patching result as a layer x position (or layer x head) heatmap.

    Args:
        result: An ``activation_patch`` (or ``block_every``) result.
        act: The activation to draw (one of the table's ``act`` values).
        tokens: Token strings of one prompt (``str_tokens``); positions are labelled ``pos: token``.
        title: Figure title, shown literally; default names the activation and the clean/corrupt metrics.

    Returns:
        A figure with one image (``RdBu``, limits ``±max(1, |value|)`` for normalized values) and a
        labelled colour bar; cells carry their values when there are few.

    Raises:
        ValueError: ``act`` is not in the result.
    """
    cells = heatmap_grid(result, act, tokens)
    grid, rows, cols = cells.values, cells.rows, cells.cols
    finite = np.abs(grid[np.isfinite(grid)])
    limit = float(finite.max()) if finite.size else 1.0
    limit = max(limit, 1.0) if cells.label == NORMALIZED_LABEL else (limit or 1.0)
    width = min(max(3.0 + 0.42 * len(cols), 5.0), 24.0)
    height = min(max(1.6 + 0.34 * len(rows) + (0.9 if tokens is not None else 0.3), 3.0), 16.0)
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_xticks(*_thinned(cols), rotation=90 if len(cols) > 1 else 0, fontsize=8)
    ax.set_yticks(*_thinned(rows), fontsize=8)
    ax.set_xlabel(cells.col_axis)
    ax.set_ylabel(cells.row_axis)
    if grid.size <= MAX_ANNOTATED_CELLS:
        _annotate(ax, grid, limit)
    fig.colorbar(image, ax=ax, label=cells.label, shrink=0.9)
    default = f"Activation patching: {act} (clean {result.clean_metric:.4g}, corrupt {result.corrupt_metric:.4g})"
    ax.set_title((title or default).replace("$", r"\$"), fontsize=10)  # a literal $, never mathtext
    return fig


def head_patterns(model: torch.nn.Module, inputs: Tensor, heads: Sequence[str]) -> Float[Tensor, "head batch dest src"]:
    """Return each named head's attention pattern on ``inputs`` (tokens ``[batch pos]`` or vectors), on the CPU.

    Raises:
        ValueError: A name is not a head of this model (or no heads are given).
    """
    places = _head_places(model, heads)
    names = sorted({hook_name("pattern", layer) for layer, _ in places})
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs.to(model.cfg.device), names_filter=lambda name: name in names)
    return torch.stack([cache[hook_name("pattern", layer)][:, head].float().cpu() for layer, head in places])


def attention_patterns(model: torch.nn.Module, task: AnyTask, heads: Sequence[str], n_examples: int = 2) -> Figure:
    """Draw each head's attention pattern (destination x source), averaged over the clean prompts and on a few prompts.

    Args:
        model: A TransformerLens model.
        task: Its task; the clean prompts are run (all of one length).
        heads: Head names such as ``L0H0``; head inputs (``L1H0.v``) stand for their head, repeats are drawn once.
        n_examples: Single prompts drawn beside the mean (at most the number of prompts).

    Returns:
        A figure with one row per head: the mean pattern, then prompts ``0..n_examples-1``; axes carry
        ``pos: token`` labels when the model has a tokenizer (the mean's by position only).

    Raises:
        ValueError: Prompts of several lengths, a name that is not a head, no heads, or a negative ``n_examples``.
    """
    if not isinstance(task, Task):
        raise InputError(f"Task '{task.name}': its prompts have {len(task.groups)} lengths, so patterns cannot be averaged; "
                         "give a task whose prompts share one length.")
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 0:
        raise InputError(f"n_examples={n_examples!r}; give a whole number of single prompts to draw (0 for the mean only).")
    labels = [f"L{layer}H{head}" for layer, head in _head_places(model, heads)]
    patterns = head_patterns(model, task.clean, labels)  # [head batch dest src]
    examples = min(n_examples, task.clean.shape[0])
    n_pos = patterns.shape[-1]
    rows = []
    for row, name in enumerate(labels):
        panels = [(f"{name} mean of {task.clean.shape[0]} prompts", patterns[row].mean(0), None)]
        rows.append(panels + [(f"{name} prompt {i}", patterns[row, i], str_tokens(model, task, i)) for i in range(examples)])
    ticks = [[_thinned(position_labels(n_pos, tokens)) for _, _, tokens in panels] for panels in rows]
    longest = max(len(label) for row in ticks for _, text in row for label in text)
    side, pad = 2.3, 0.3 + 0.05 * longest  # inches: a panel, and room for its tick labels (about 0.05 in a character)
    width, height = (1 + examples) * (side + pad + 0.3) + 1.0, len(labels) * (side + pad + 0.5) + 0.2
    fig = Figure(figsize=(width, height), dpi=DPI)  # margins fixed in inches: a layout engine costs more than the drawing
    axes = fig.subplots(len(labels), 1 + examples, squeeze=False, gridspec_kw=dict(
        left=(pad + 0.3) / width, right=1 - 1.0 / width, bottom=(pad + 0.35) / height, top=1 - 0.3 / height,
        wspace=(pad + 0.3) / side, hspace=(pad + 0.5) / side))
    for row, panels in enumerate(rows):
        for ax, (title, pattern, _), (at, text) in zip(axes[row], panels, ticks[row]):
            image = ax.imshow(pattern.numpy(), cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks(at, text, rotation=90, fontsize=6)
            ax.set_yticks(at, text, fontsize=6)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("source", fontsize=8)
            ax.set_ylabel("destination", fontsize=8)
    fig.colorbar(image, cax=fig.add_axes((1 - 0.75 / width, (pad + 0.35) / height, 0.12 / width, 1 - (pad + 0.65) / height)),
                 label="attention")
    return fig


def dla_heads_heatmap(heads: pd.DataFrame, title: str) -> Figure:
    """Draw each head's mean direct logit attribution as a layer x head heatmap (``RdBu``, centred on 0).

    Args:
        heads: ``FirstLook.dla_table(("head",))``: one row per head with ``layer``, ``head`` and ``mean``.
        title: Figure title, shown literally.

    Examples:
        >>> table = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "mean": [0.5, -1.0, 2.0, 0.0]})
        >>> dla_heads_heatmap(table, "t").axes[0].images[0].get_array().shape
        (2, 2)
    """
    layers, cols = heads["layer"].to_numpy(dtype=int), heads["head"].to_numpy(dtype=int)
    grid = np.full((layers.max() + 1, cols.max() + 1), np.nan)  # [layer head]
    grid[layers, cols] = heads["mean"].to_numpy(dtype=float)
    rows, names = [str(layer) for layer in range(grid.shape[0])], [f"H{h}" for h in range(grid.shape[1])]
    finite = np.abs(grid[np.isfinite(grid)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    fig = Figure(figsize=(min(max(3.0 + 0.42 * len(names), 5.0), 24.0), min(max(1.9 + 0.3 * len(rows), 3.0), 16.0)), dpi=DPI,
                 layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_xticks(*_thinned(names), fontsize=8)
    ax.set_yticks(*_thinned(rows), fontsize=8)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if grid.size <= MAX_ANNOTATED_CELLS:
        _annotate(ax, grid, limit)
    fig.colorbar(image, ax=ax, label="mean direct logit attribution\n(logit difference)", shrink=0.9)
    ax.set_title(title.replace("$", r"\$"), fontsize=10)
    return fig


def series_figure(labels: Sequence[str], series: dict[str, pd.DataFrame], ylabel: str, title: str) -> Figure:
    """Draw one line per series over the labelled x positions, with its 95% interval as a band.

    Used for the logit lens (the logit difference after each sublayer) and for DLA by layer.

    Args:
        labels: The x-axis labels (``embed``, ``ATTN0``, ``MLP0``, ...).
        series: Name -> table with ``mean``, ``ci_low``, ``ci_high``, one row per label.
        ylabel: The y-axis label.
        title: Figure title, shown literally.

    Examples:
        >>> line = pd.DataFrame({"mean": [0.0, 1.0], "ci_low": [-0.1, 0.8], "ci_high": [0.1, 1.2]})
        >>> len(series_figure(["embed", "ATTN0"], {"lens": line}, "logit difference", "t").axes[0].lines)
        2
    """
    x = np.arange(len(labels))
    fig = Figure(figsize=(min(max(4.0 + 0.22 * len(labels), 6.0), 24.0), 3.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for name, table in series.items():
        ax.plot(x, table["mean"].to_numpy(dtype=float), marker="o", markersize=3, label=name)
        ax.fill_between(x, table["ci_low"].to_numpy(dtype=float), table["ci_high"].to_numpy(dtype=float), alpha=0.2)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(*_thinned(list(labels)), rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.set_title(title.replace("$", r"\$"), fontsize=10)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Return the figure as PNG bytes (Agg, fixed dpi, no metadata: the same figure gives the same bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata=_METADATA["png"])
    return buffer.getvalue()


def save_figure(fig: Figure, path: "str | Path") -> Path:
    """Write the figure atomically as PNG or SVG, chosen by ``path``'s suffix, and return the path.

    Raises:
        ValueError: The suffix is neither ``.png`` nor ``.svg``.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"Cannot save a figure as {path.name!r}; give a path ending in .png or .svg.")
    def write(tmp: str) -> None:
        with matplotlib.rc_context({"svg.hashsalt": "pathpatch"}):  # stable SVG ids
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_METADATA[fmt])

    return write_atomic(path, write)


def _rows(result: ActivationPatchResult, act: str | None) -> pd.DataFrame:
    """The result's table rows for ``act`` (all rows for None); raise ValueError naming the acts present."""
    table = result.table
    present = list(dict.fromkeys(table["act"])) if "act" in table else []
    if act is None:
        return table
    if act not in present:
        raise InputError(f"The patching result holds {', '.join(map(repr, present)) or 'no rows'}, not {act!r}; "
                         "pass one of those, or patch that activation first.")
    return table[table["act"] == act].dropna(axis=1, how="all")


def _shown_values(table: pd.DataFrame, result: ActivationPatchResult) -> tuple[np.ndarray, str]:
    """The values a heatmap shows and their colour-bar label (see ``heatmap_grid``)."""
    if "normalized" in table:
        return table["normalized"].to_numpy(dtype=float), NORMALIZED_LABEL
    gap = abs(result.clean_metric - result.corrupt_metric)
    if gap > 1e-6 * max(1.0, abs(result.clean_metric)):
        return table["score"].to_numpy(dtype=float) / gap, "score / |clean − corrupt metric|"
    return table["score"].to_numpy(dtype=float), "score (metric change toward clean)"


def _thinned(labels: list[str], most: int = MAX_TICKS) -> tuple[list[int], list[str]]:
    """Tick positions and labels: all of them, or every k-th so that at most ``most`` remain."""
    step = -(-len(labels) // most)
    return list(range(0, len(labels), step)), labels[::step]


def _annotate(ax, grid: np.ndarray, limit: float) -> None:
    """Write each cell's value into it, white on dark cells."""
    for (row, col), value in np.ndenumerate(grid):
        if np.isfinite(value):
            colour = "white" if abs(value) > 0.6 * limit else "black"
            text = f"{value:.2f}".replace("-0.00", "0.00")
            ax.text(col, row, text, ha="center", va="center", fontsize=7, color=colour)


def _head_places(model: torch.nn.Module, heads: Sequence[str]) -> list[tuple[int, int]]:
    """Each named head's ``(layer, head)``, once each, in order; raise ValueError for non-heads or none."""
    cfg = model.cfg
    places: list[tuple[int, int]] = []
    for name in heads:
        try:
            node = parse_node(name, cfg.n_layers, cfg.n_heads, cfg.attn_only)
        except KeyError as error:
            raise InputError(error.args[0]) from None
        if node.head is None:
            raise InputError(f"{name!r} is not an attention head; give heads such as 'L0H0' (or their inputs, 'L1H0.v').")
        if (node.layer, node.head) not in places:
            places.append((node.layer, node.head))
    if not places:
        raise InputError("No heads given; pass head names such as ['L0H0', 'L1H0'] (e.g. the circuit's heads).")
    return places
