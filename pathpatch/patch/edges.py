"""Exact edge patching, path patching and circuit runs over the residual-stream graph.

Every reader's input is the sum of the outputs written before it, so an edge ``src->dest`` can be
cut exactly: ``dest`` reads ``input - out_src + corrupt_src``. Three uses:

- ``patch_edges``: every edge a variant. In the ``noise`` direction (default here, as in ACDC) the
  clean run has one edge carry the corrupt output; the score ``clean - patched`` is what that edge
  contributes. In ``denoise``, the corrupt run has one edge carry the clean output; the score
  ``patched - corrupt`` is what it restores. Positive scores help the clean answer. Because a single
  edge's source is upstream of its destination, its output in the patched run equals the cached one,
  so each variant adds one cached difference at one hook and starts at the destination's layer.
- ``path_patch``: a sender's corrupt output reaches only the named receivers; everything else is
  clean (Wang et al., 2022). One variant per sender, same machinery.
- ``run_circuits``: a circuit (a ``[src dest]`` mask) keeps its edges clean and corrupts all others:
  each reader gets ``input - sum over cut edges of (out_src - corrupt_src)`` with ``out_src`` taken from
  the same, already patched, forward pass. The full circuit gives the clean metric and the empty one
  the corrupt metric. Many circuits run as variants of one batch.
"""


import pandas as pd
import torch
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.names import Edge, edge_at, reads_at, split_pos
from pathpatch.patch.circuits import run_circuits_with_baselines
from pathpatch.patch.config import NOISE, PatchConfig
from pathpatch.patch.graph import ComputeGraph, with_patching_hooks
from pathpatch.patch.runner import is_causal, supports_suffix_reuse
from pathpatch.patch.scores import normalized
from pathpatch.patch.variants import Variant, collect_outputs, prepare_edges, run_variants
from pathpatch.task.groups import AnyTask, groups_for
from pathpatch.task.positions import labels_of, position_layout, positions_of
from pathpatch.task.task import Task


def _score_table(values: Tensor, clean_metric: float, corrupt_metric: float, higher_is_better: bool, config: PatchConfig,
                 task_name: str) -> pd.DataFrame:
    """Return metric, score and normalized columns for patched metrics ``values``."""
    raw = clean_metric - values if config.direction == "noise" else values - corrupt_metric
    sign = 1.0 if higher_is_better else -1.0
    table = pd.DataFrame({"metric": values.numpy(), "score": (sign * raw).numpy()})
    if config.normalize:
        table["normalized"] = normalized(raw, clean_metric, corrupt_metric, task_name).numpy()
    return table


def _scored(labels: pd.DataFrame, per_prompt: Tensor, clean: Tensor, corrupt: Tensor, task: AnyTask, config: PatchConfig) -> pd.DataFrame:
    """Return ``labels`` with score columns from per-prompt metrics ``[row batch]`` and per-prompt baselines ``[batch]``.

    Means run over every prompt, so a task held as length groups scores exactly as one batch would.
    """
    clean_metric, corrupt_metric = clean.mean().item(), corrupt.mean().item()
    table = pd.concat([labels.reset_index(drop=True),
                       _score_table(per_prompt.mean(1), clean_metric, corrupt_metric, task.higher_is_better, config, task.name)], axis=1)
    table.attrs.update({"clean_metric": clean_metric, "corrupt_metric": corrupt_metric, "per_prompt": per_prompt,
                        "clean_per_prompt": clean, "corrupt_per_prompt": corrupt})
    return table


def _join(tables: list[pd.DataFrame], labels: list[str], task: AnyTask, config: PatchConfig) -> pd.DataFrame:
    """Join per-group score tables (same rows) into one over all prompts."""
    if len(tables) == 1:
        return tables[0]
    cat = lambda key: torch.cat([t.attrs[key] for t in tables], dim=-1)  # noqa: E731
    table = _scored(tables[0][labels], cat("per_prompt"), cat("clean_per_prompt"), cat("corrupt_per_prompt"), task, config)
    extra = [c for c in tables[0].columns if c not in table.columns]
    for column in extra:
        table[column] = tables[0][column].values
    return table


EdgeRow = tuple[Edge, "str | None"]  # an edge and the position label it is patched at (None: every position)


def edge_rows(graph: ComputeGraph, task: AnyTask, edges: "list[str] | list[Edge] | None", by_pos: bool, causal: bool = True) -> list[EdgeRow]:
    """Return the rows ``patch_edges`` scores: each edge, at every position label with ``by_pos``, edge-major.

    Names may carry a position (``L0H0->L1H0.v@END``); labels are checked against the task's.

    Raises:
        ValueError: An empty list, or positions for prompts of several lengths without labels.
        KeyError: An unknown edge or position label.
    """
    chosen: list[EdgeRow] = [(edge, None) for edge in graph.edges] if edges is None else []  # the graph's own edges need no checks
    for item in edges or ():
        if isinstance(item, Edge):
            chosen.append((graph.edge(item.src.name + "->" + item.dest.base), item.dest.pos))
            continue
        base, pos = split_pos(item)
        chosen.append((graph.edge(base), pos))
    if not chosen:
        raise InputError("patch_edges got an empty edge list; pass None to score every edge.")
    if not by_pos and all(pos is None for _, pos in chosen):
        return chosen
    columns = position_layout(task, causal)
    for _, pos in chosen:
        if pos is not None:
            columns.index(pos)
    spread = columns.labels if by_pos else (None,)  # position-free names: every label with by_pos, else all positions at once
    return [(edge, label) for edge, pos in chosen for label in ((pos,) if pos is not None else spread)]


@with_patching_hooks
def patch_edges(
    model: torch.nn.Module,
    task: AnyTask,
    edges: "list[str] | list[Edge] | None" = None,
    by_pos: bool = False,
    config: PatchConfig = NOISE,
) -> pd.DataFrame:
    """Score every edge (or the given ones) by patching it alone, exactly.

    Args:
        model: A TransformerLens model with per-head hooks (see ``check_supported``).
        task: Clean/corrupt inputs and metric.
        edges: Edge names or Edges, optionally at a position (``L0H0->L1H0.v@END``); None for every edge.
        by_pos: One variant per edge and position label (``L0H0->L1H0.v@5``, ``...@END``; all positions a
            label covers are patched together) instead of per edge.
        config: Direction (default ``noise``), corruption and memory budget.

    Returns:
        One row per edge (and position): ``edge, src, dest, channel, pos, metric, score[, normalized], method``;
        ``pos`` is the position label, or -1 for every position. Scores are measured from the corruption's own
        baselines: the clean run and the run with every edge corrupt (for ``paired``, the corrupt prompts; for
        ``resample``, ``mean`` and ``zero``, every edge resampled or ablated), so ``normalized`` is a share of
        that corruption's clean - corrupt gap, as faithfulness is.
    """
    graph = ComputeGraph.from_model(model)
    rows = edge_rows(graph, task, edges, by_pos, is_causal(model))
    positional = any(pos is not None for _, pos in rows)
    parts = [_patch_group(model, graph, group, rows, config) for group in groups_for(task, config.corruption, positional)]
    per_prompt, clean, corrupt = (torch.cat([part[i] for part in parts], dim=-1) for i in range(3))
    labels = pd.DataFrame(
        {
            "edge": [edge_at(edge.name, pos) for edge, pos in rows],
            "src": [edge.src.name for edge, _ in rows],
            "dest": [edge.dest.name for edge, _ in rows],
            "channel": [edge.dest.channel or "" for edge, _ in rows],
            "pos": [-1 if pos is None else pos for _, pos in rows],
        }
    )
    if config.corruption != "paired":  # the corrupt end is this corruption's own run (every edge corrupt), not the corrupt prompts
        _, _, corrupt = run_circuits_with_baselines(model, task, graph.valid, config)
    table = _scored(labels, per_prompt, clean, corrupt, task, config)
    table["method"] = f"exact-{config.direction}"
    return table


def _patch_group(model: torch.nn.Module, graph: ComputeGraph, task: Task, rows: list[EdgeRow], config: PatchConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Per-prompt patched metrics ``[row batch]`` of one same-shape group, and its clean and corrupt metrics ``[batch]``.

    A row whose label covers no position of this group (or only positions after the last read one) changes
    nothing: it gets the unpatched run's metric without running.
    """
    prep = prepare_edges(model, graph, task, keys_values=supports_suffix_reuse(model))
    outputs = collect_outputs(model, graph, prep, config)
    labels = labels_of(prep.task)
    variants, todo = [], []
    for i, (edge, label) in enumerate(rows):
        pos = None if label is None else tuple(positions_of(labels, label))
        if pos != ():
            variants.append(Variant(edge_at(edge.name, label), (edge,), pos))
            todo.append(i)
    noise = config.direction == "noise"
    if len(todo) < len(rows) and not noise and config.corruption != "paired":  # resample spans one group: every label is in it
        raise InputError(f"Task '{task.name}': some position labels are missing from some prompts, and a {config.corruption!r} "
                         "denoising run has no unpatched metric to give them; use direction 'noise' or corruption 'paired'.")
    base = prep.clean_per_prompt if noise else prep.corrupt_per_prompt
    per_prompt = base[None].repeat(len(rows), 1)
    if variants:
        per_prompt[todo] = run_variants(model, graph, prep, outputs, variants, config)
    return per_prompt, prep.clean_per_prompt, prep.corrupt_per_prompt


@with_patching_hooks
def path_patch(
    model: torch.nn.Module,
    task: AnyTask,
    receivers: list[str],
    senders: list[str] | None = None,
    config: PatchConfig = NOISE,
) -> pd.DataFrame:
    """Patch each sender's output into only the ``receivers`` (inputs such as ``L1H0.v``), exactly.

    Returns:
        One row per sender: ``sender, receivers, metric, score[, normalized]``.
    """
    groups = groups_for(task, config.corruption)
    if len(groups) > 1:
        tables = [path_patch(model, group, receivers, senders, config) for group in groups]
        return _join(tables, ["sender", "receivers"], task, config)
    graph = ComputeGraph.from_model(model)
    dests = [graph.node(name) for name in receivers]
    placed = [node.name for node in dests + [graph.node(n) for n in senders or []] if node.pos is not None]
    if placed:
        raise InputError(f"path_patch runs over all positions, but {placed[0]!r} names one; give receivers and senders without "
                         "'@POS', or score position-aware edges with patch_edges(..., by_pos=True).")
    if not dests:
        raise InputError("path_patch needs at least one receiver input, e.g. ['L1H0.v'].")
    for node in dests:
        if not node.is_dest:
            raise InputError(f"Receiver {node.name!r} is an output; receivers are inputs such as '{node.name}.v', 'MLP1' or 'logits'.")
    first = min(reads_at(d, graph.parallel) for d in dests)
    pool = [graph.node(name) for name in senders] if senders else [s for s in graph.sources if s.stage < first]
    variants = []
    for sender in pool:
        edges = tuple(Edge(sender, d) for d in dests)
        variants.append(Variant(sender.name, edges))
    prep = prepare_edges(model, graph, groups[0], keys_values=supports_suffix_reuse(model))
    outputs = collect_outputs(model, graph, prep, config)
    per_prompt = run_variants(model, graph, prep, outputs, variants, config)
    labels = pd.DataFrame({"sender": [v.name for v in variants], "receivers": ",".join(receivers)})
    return _scored(labels, per_prompt, prep.clean_per_prompt, prep.corrupt_per_prompt, task, config)
