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

from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch
from einops import einsum
from jaxtyping import Bool, Float
from torch import Tensor

from pathpatch.discovery.architecture import Architecture
from pathpatch.discovery.config import PatchConfig, ablate, corrupt_inputs, groups_of, normalized
from pathpatch.discovery.graph import ComputeGraph, with_patching_hooks
from pathpatch.discovery.runner import (
    is_causal,
    Prepared,
    cache_activations,
    chunk_size,
    kv_hooks,
    metric_per_prompt,
    prepare,
    repeat_variants,
    run_chunked,
    run_from_layer,
    pos_embed,
    suffix_groups,
    supports_suffix_reuse,
)
from pathpatch.errors import InputError
from pathpatch.models.tasks import AnyTask, Task, task_groups
from pathpatch.names import Edge, Node, edge_at, hook_name, split_pos
from pathpatch.positions import Layout, labels_of, layout, positions_of

NOISE = PatchConfig(direction="noise")


@dataclass(frozen=True)
class Outputs:
    """Every source's output on the clean inputs and its corrupt counterpart.

    Attributes:
        clean: ``[src batch pos d_model]`` outputs of the clean run, in ``graph.sources`` order.
        corrupt: The same for the corrupt (or ablated) values.
        starts_clean: Clean residual stream at each layer's ``hook_resid_pre`` ``[layer batch pos d_model]``.
        starts_corrupt: The same on the corrupt inputs (None for mean/zero ablation).
    """

    clean: Tensor
    corrupt: Tensor
    starts_clean: Tensor
    starts_corrupt: Tensor | None


def source_hooks(graph: ComputeGraph) -> list[str]:
    """Return the hooks from which every source's output is read (embed, per-layer z, MLP outputs).

    A head's output ``blocks.{l}.attn.hook_result[:, :, h]`` equals ``z[:, :, h] @ W_O[l, h]``; it is computed
    from ``hook_z`` here, because TransformerLens' ``use_attn_result`` materialises a
    ``[batch pos head d_head d_model]`` product in every forward pass, which costs far more memory and time.
    """
    names = [hook_name("resid_pre", 0)]
    for layer in range(graph.n_layers):
        names.append(hook_name("z", layer))
        if not graph.attn_only:
            names.append(hook_name("mlp_out", layer))
    return names


def head_outputs(model: torch.nn.Module, z: Float[Tensor, "batch pos head d_head"], layer: int) -> Float[Tensor, "head batch pos d_model"]:
    """Return each head's write to the residual stream (``hook_result`` without the shared bias)."""
    return einsum(z, model.blocks[layer].attn.W_O, "batch pos head d_head, head d_head d_model -> head batch pos d_model")


def stack_sources(model: torch.nn.Module, graph: ComputeGraph, acts: dict[str, Tensor]) -> Float[Tensor, "src batch pos d_model"]:
    """Stack the cached outputs of every source in ``graph.sources`` order."""
    parts = [acts[hook_name("resid_pre", 0)][None]]
    for layer in range(graph.n_layers):
        parts.append(head_outputs(model, acts[hook_name("z", layer)], layer))
        if not graph.attn_only:
            parts.append(acts[hook_name("mlp_out", layer)][None])
    return torch.cat(parts)


def edge_hooks(graph: ComputeGraph) -> list[str]:
    """Return every hook edge patching caches: source outputs and each layer's starting residual."""
    return source_hooks(graph) + [hook_name("resid_pre", layer) for layer in range(1, graph.n_layers)]


def prepare_edges(model: torch.nn.Module, graph: ComputeGraph, task: Task, keys_values: bool = False) -> Prepared:
    """Prepare ``task`` with every activation edge patching reads cached from one forward pass
    (and every layer's keys and values, for variants that run a suffix of positions only)."""
    return prepare(model, task, edge_hooks(graph) + (kv_hooks(graph.n_layers) if keys_values else []))


@torch.no_grad()
def collect_outputs(model: torch.nn.Module, graph: ComputeGraph, prep: Prepared, config: PatchConfig) -> Outputs:
    """Return every source's clean and corrupt (or ablated) output and every layer's starting residual."""
    starts = [hook_name("resid_pre", layer) for layer in range(graph.n_layers)]
    clean = prep.clean_acts
    if config.corruption == "paired":
        corrupt = prep.corrupt_acts
    else:
        other = corrupt_inputs(prep.task, config)
        corrupt = cache_activations(model, other, edge_hooks(graph)) if other is not None else None
    clean_out = stack_sources(model, graph, clean)
    corrupt_out = stack_sources(model, graph, corrupt) if corrupt is not None else None
    corrupt_out = ablate(clean_out.transpose(0, 1), None if corrupt_out is None else corrupt_out.transpose(0, 1), config.corruption).transpose(0, 1)
    stack = lambda acts: torch.stack([acts[name] for name in starts])  # noqa: E731
    return Outputs(clean_out, corrupt_out, stack(clean), None if corrupt is None else stack(corrupt))


def _add_hook(rows: Tensor, heads: Tensor | None, positions: Tensor | None, deltas: Tensor, n_variants: int):
    """Return a hook adding ``deltas[i]`` to variant ``rows[i]`` (at head ``heads[i]``, position ``positions[i]``)."""

    def hook(act: Tensor, hook) -> Tensor:
        view = act.clone().view(n_variants, -1, *act.shape[1:])  # [variant batch pos (head) d_model]
        if heads is None and positions is None:
            view[rows] += deltas
        elif heads is None:
            view[rows, :, positions] += deltas
        elif positions is None:
            view[rows, :, :, heads] += deltas
        else:
            view[rows, :, positions, heads] += deltas
        return view.view(act.shape)

    return hook


@dataclass(frozen=True)
class Variant:
    """One patched run: edges whose destinations read ``delta`` = other-run output minus this run's.

    Attributes:
        name: Row label (an edge name, a path-patching sender).
        edges: The edges patched together; all sources precede all destinations.
        pos: Restrict the patch to these positions, or None for all positions.
    """

    name: str
    edges: tuple[Edge, ...]
    pos: tuple[int, ...] | None = None


def shared_head_inputs(model: torch.nn.Module) -> bool:
    """Whether single-edge variants can run without per-head input copies (see ``_recompute_hook``).

    TransformerLens' ``use_split_qkv_input`` gives every head its own copy of the residual stream and
    LayerNorms each copy, ``3 * n_heads`` LayerNorms per token and layer; an edge variant changes one
    head's input only, so it is cheaper to run the shared path and recompute that head's q, k or v
    (``Architecture.shared_head_inputs``).
    """
    return Architecture.of(model).shared_head_inputs


@contextmanager
def split_inputs(model: torch.nn.Module, on: bool):
    """Set ``use_split_qkv_input`` to ``on`` for the duration, then restore it."""
    before = bool(model.cfg.use_split_qkv_input)
    if before != on:
        model.set_use_split_qkv_input(on)
    try:
        yield
    finally:
        if before != on:
            model.set_use_split_qkv_input(before)


def _recompute_hook(model: torch.nn.Module, layer: int, channel: str, rows: Tensor, heads: Tensor, positions: Tensor | None,
                    deltas: Tensor, n_variants: int, resid: dict[int, Tensor], first: int = 0):
    """Return a ``hook_q``/``hook_k``/``hook_v`` hook that recomputes head ``heads[i]`` of variant ``rows[i]``
    from ``ln1(resid_pre + deltas[i])``: what the split per-head input path computes for that head."""
    attn, ln1 = model.blocks[layer].attn, model.blocks[layer].ln1
    W = {"q": attn.W_Q, "k": attn.W_K, "v": attn.W_V}[channel][heads]  # [n d_model d_head]
    b = {"q": attn.b_Q, "k": attn.b_K, "v": attn.b_V}[channel][heads]  # [n d_head]

    def hook(act: Tensor, hook) -> Tensor:
        view = act.clone().view(n_variants, -1, *act.shape[1:])  # [variant batch pos head d_head]
        base = resid[layer].view(n_variants, -1, *resid[layer].shape[1:])  # [variant batch pos d_model]
        pos = pos_embed(model, first, base.shape[2], 1) if channel in ("q", "k") else None  # shortformer: after ln1
        pos = 0.0 if pos is None else pos[0]  # [pos d_model]
        if positions is None:
            x = ln1(base[rows] + deltas) + pos  # [n batch pos d_model]
            view[rows, :, :, heads] = einsum(x, W, "n batch pos d_model, n d_model d_head -> n batch pos d_head") + b[:, None, None]
        else:
            x = ln1(base[rows, :, positions] + deltas) + (pos if isinstance(pos, float) else pos[positions, None])  # [n batch d_model]
            view[rows, :, positions, heads] = einsum(x, W, "n batch d_model, n d_model d_head -> n batch d_head") + b[:, None]
        return view.view(act.shape)

    return hook


def _variant_hooks(
    graph: ComputeGraph, variants: list[Variant], delta: Tensor, model: torch.nn.Module | None = None, first: int = 0
) -> list[tuple[str, object]]:
    """Build one hook per destination hook, adding each variant's source deltas at its destinations.

    With ``model`` (shared head inputs, ``shared_head_inputs``), head-input destinations instead get
    their q, k or v recomputed at ``hook_q``/``hook_k``/``hook_v`` from the layer's recorded input.
    Runs of positions ``first..`` only (suffix reuse) see activations shifted by ``first``.
    """
    groups: dict[str, list[tuple[int, int | None, int | None, int]]] = {}
    where: dict[str, tuple[int, str | None]] = {}  # hook -> (layer, q/k/v channel) of its destinations
    mixed = any(v.pos is not None for v in variants) and any(v.pos is None for v in variants)
    every = tuple(range(first, delta.shape[2]))  # a position-free variant beside positional ones: all its positions
    for row, variant in enumerate(variants):
        for edge in variant.edges:
            head = edge.dest.head if edge.dest.kind == "head_input" else None
            for pos in (every if mixed else (None,)) if variant.pos is None else variant.pos:
                groups.setdefault(edge.dest.hook_in, []).append((row, head, pos, graph.src_index(edge.src)))
            where[edge.dest.hook_in] = (edge.dest.layer, edge.dest.channel)
    hooks, resid, recorded = [], {}, set()
    for name, items in groups.items():
        rows, heads, poss, srcs = zip(*items)
        src = torch.tensor(srcs, device=delta.device)
        pos = None if poss[0] is None else torch.tensor(poss, device=delta.device)
        deltas = delta[src, :, first:] if pos is None else delta[src, :, pos]  # [n batch (pos) d_model]
        pos = None if pos is None else pos - first  # index into the suffix run's activations
        head = None if heads[0] is None else torch.tensor(heads, device=delta.device)
        row = torch.tensor(rows, device=delta.device)
        if model is None or head is None:
            hooks.append((name, _add_hook(row, head, pos, deltas, len(variants))))
            continue
        if len(set(zip(rows, heads, poss))) < len(rows):
            raise InputError("A variant patches one head input from several sources; run it with run_circuits().")
        layer, channel = where[name]
        if layer not in recorded:
            recorded.add(layer)
            hooks.append((hook_name("resid_pre", layer), lambda act, hook, layer=layer: resid.__setitem__(layer, act)))
        hooks.append((hook_name(channel, layer), _recompute_hook(model, layer, channel, row, head, pos, deltas, len(variants), resid, first)))
    return hooks


def _reads_own_position(dest: Node, n_layers: int) -> bool:
    """Whether a destination changes only its own position's output of the last layer: the last layer's
    queries and MLP, and the logits (an edge into them cannot reach another position)."""
    return dest.kind == "logits" or (dest.layer == n_layers - 1 and dest.channel in ("q", None))


def _first_position(variant: Variant, first_read: int, n_layers: int) -> int:
    """The first position a variant's run needs: its patched position (or the first read one, if
    earlier); the first read position for edges that change only their own position of the last layer."""
    if variant.pos is not None:
        return min(*variant.pos, first_read)
    return first_read if all(_reads_own_position(e.dest, n_layers) for e in variant.edges) else 0


def run_variants(
    model: torch.nn.Module, graph: ComputeGraph, prep: Prepared, outputs: Outputs, variants: list[Variant], config: PatchConfig
) -> Tensor:
    """Return the patched metric ``[variant batch]`` of each prompt and variant, batching variants by start layer."""
    noise = config.direction == "noise"
    delta = outputs.corrupt - outputs.clean if noise else outputs.clean - outputs.corrupt  # [src batch pos d_model]
    starts = outputs.starts_clean if noise else outputs.starts_corrupt
    base_inputs = prep.task.clean if noise else corrupt_inputs(prep.task, config)
    for variant in variants:
        if max(e.src.stage for e in variant.edges) >= min(graph.reads_at(e.dest) for e in variant.edges):
            raise InputError(
                f"Variant {variant.name!r} patches edges whose sources are downstream of other destinations; "
                "use run_circuits() for such edge sets."
            )
    layer_of = [min(min(e.dest.layer for e in v.edges), graph.n_layers - 1) for v in variants]
    shared = shared_head_inputs(model)
    batch, n_pos = prep.task.clean.shape[:2]
    values = torch.zeros(len(variants), batch)
    # Variants run positions >= _first_position only, earlier keys/values from the base run.
    past = prep.clean_acts if noise else prep.corrupt_acts if config.corruption == "paired" else {}
    suffix = shared and hook_name("k", 0) in past
    first_read = int(prep.task.positions.min())
    firsts = [_first_position(v, first_read, graph.n_layers) if suffix else 0 for v in variants]
    with split_inputs(model, not shared):
        for layer in sorted(set(layer_of)):
            in_layer = [i for i, lay in enumerate(layer_of) if lay == layer]
            for first, members in suffix_groups(model, [firsts[i] for i in in_layer], batch, layer, delta.device).items():
                todo = [in_layer[i] for i in members]
                chunk = config.chunk or chunk_size(model, batch, n_pos - first, config.max_memory, len(todo))

                def run(a: int, b: int, todo=todo, layer=layer, first=first) -> Tensor:
                    chosen = [variants[i] for i in todo[a:b]]
                    hooks = _variant_hooks(graph, chosen, delta, model if shared else None, first)
                    last_free = all(e.dest.layer < graph.n_layers - 1 for v in chosen for e in v.edges)  # no hook in the last layer
                    with torch.no_grad():
                        start = repeat_variants(starts[layer], len(chosen))
                        read = run_from_layer(model, start, repeat_variants(base_inputs, len(chosen)), layer, prep.task.positions, hooks,
                                              first, past, tokens=prep.read_tokens, last_free=last_free)
                    return metric_per_prompt(prep.read_task, read, len(chosen)).cpu()

                values[todo] = run_chunked(len(todo), chunk, run, config.progress, f"edges into layer {layer}")
    return values


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


def position_layout(task: AnyTask, causal: bool = True) -> "Layout":
    """The task's position columns (``positions.layout``); refuse index positions over prompts of different lengths."""
    groups = task_groups(task)
    if len({g.clean.shape[1] for g in groups}) > 1 and any(g.labels is None for g in groups):
        raise InputError(f"Task '{task.name}': its prompts differ in length, so position indices name different tokens in "
                         "different prompts; label the positions by role (JSONL \"labels\": {\"S1\": 2, \"END\": -1}) "
                         "or score edges over all positions.")
    return layout(task, causal=causal)


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
    parts = [_patch_group(model, graph, group, rows, config) for group in groups_of(task, config, positional)]
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
    groups = groups_of(task, config)
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
    first = min(graph.reads_at(d) for d in dests)
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


def run_circuits(
    model: torch.nn.Module,
    task: AnyTask,
    masks: Bool[Tensor, "*batch src dest"],
    config: PatchConfig = NOISE,
    positions: "Layout | None" = None,
) -> Float[Tensor, " batch"]:
    """Return the task metric of each circuit (averaged over prompts); see ``run_circuits_per_prompt``."""
    return run_circuits_per_prompt(model, task, masks, config, positions).mean(-1)


@with_patching_hooks
def run_circuits_per_prompt(
    model: torch.nn.Module,
    task: AnyTask,
    masks: Bool[Tensor, "*batch src dest"],
    config: PatchConfig = NOISE,
    positions: "Layout | None" = None,
) -> Tensor:
    """Return the task metric ``[circuit batch]`` of each circuit and prompt: kept edges carry clean outputs, all others corrupt ones.

    Args:
        model: A TransformerLens model with per-head hooks.
        task: Clean/corrupt inputs and metric.
        masks: One circuit per row, ``[batch src dest]`` (or one ``[src dest]``), over graph sources and dests;
            position-aware circuits ``[batch src dest label]`` over the labels of ``positions``: an edge is
            kept at every position its label covers in each prompt.
        config: Corruption and memory budget (direction is ignored: circuits always run this way).
        positions: The label columns of position-aware masks (``pathpatch.positions.layout``).
    """
    groups = groups_of(task, config, positions is not None)
    if len(groups) > 1:  # prompts of each length run alone; their metrics join along the prompt axis
        return torch.cat([run_circuits_per_prompt(model, group, masks, config, positions) for group in groups], dim=-1)
    task = groups[0]
    graph = ComputeGraph.from_model(model)
    positional = positions is not None
    masks = masks[None] if masks.ndim == 2 + positional else masks
    expected = (len(graph.sources), len(graph.dests)) + ((len(positions.labels),) if positional else ())
    if tuple(masks.shape[1:]) != expected:
        raise InputError(f"Circuit masks are {tuple(masks.shape)}; this model needs [circuits {' '.join(map(str, expected))}] "
                         f"(circuits x sources x destinations{' x position labels' if positional else ''}).")
    prep = prepare_edges(model, graph, task)
    outputs = collect_outputs(model, graph, prep, config)
    valid = graph.valid if not positional else graph.valid[..., None]  # broadcast over this group's positions
    if positional:  # [circuit src dest label] -> [circuit src dest pos], each position taking its label's column
        masks = masks[..., torch.tensor([positions.index(label) for label in labels_of(prep.task)])]
    cut = (valid & ~masks.bool()).to(outputs.clean.device)  # [variant src dest (pos)]
    batch, n_pos = prep.task.clean.shape[:2]
    chunk = config.chunk or max(1, chunk_size(model, batch, n_pos, config.max_memory, len(cut)) // 4)

    def run(a: int, b: int) -> Tensor:
        hooks = _circuit_hooks(model, graph, cut[a:b], outputs)
        with torch.no_grad():
            start = repeat_variants(outputs.clean[0], b - a)  # the clean embedding: blocks.0.hook_resid_pre
            read = run_from_layer(model, start, repeat_variants(prep.task.clean, b - a), 0, prep.task.positions, hooks, tokens=prep.read_tokens)
        return metric_per_prompt(prep.read_task, read, b - a).cpu()

    return run_chunked(len(cut), chunk, run, config.progress, "circuits")  # [circuit batch]


def run_circuits_with_baselines(
    model: torch.nn.Module, task: AnyTask, masks: Tensor, config: PatchConfig = NOISE, positions: "Layout | None" = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Return per-prompt metrics of ``masks`` ``[circuit batch]`` and of the full and empty circuits ``[batch]``.

    The empty circuit is the baseline every faithfulness is measured from: the corrupt run for paired
    corruption, the all-ablated run for mean/zero ablation. Both baselines run in the same batch.
    """
    graph = ComputeGraph.from_model(model)
    masks = masks[None] if masks.ndim == 2 + (positions is not None) else masks
    full = graph.valid_at(positions).to(masks.device)
    empty = torch.zeros_like(full)
    values = run_circuits_per_prompt(model, task, torch.cat([masks.bool(), full[None], empty[None]]), config, positions)
    return values[:-2], values[-2], values[-1]


def _circuit_hooks(model: torch.nn.Module, graph: ComputeGraph, cut: Tensor, outputs: Outputs) -> list[tuple[str, object]]:
    """Hooks that record each source's ``output - corrupt`` and remove cut edges' share at readers.

    A reader's corrected input is ``input - sum over cut edges of (out_src - corrupt_src)``. Circuits are
    mostly small (few kept edges) or nearly whole (few cut ones), so each variant takes the shorter sum at
    each hook: the cut edges' differences, or the running sum of every difference so far less those of the
    edges it does not cut. Only sources some hook sums over one by one are kept in memory.
    """
    n_variants, plans = cut.shape[0], _correction_plans(graph, cut)
    needed = {int(i) for plan in plans.values() for i in plan[2].tolist()}
    kept: dict[int, Tensor] = {}  # source index -> [variant batch pos d_model]
    state: dict = {"sum": None, "n": 0}  # running sum of every recorded difference, and how many

    def add(diff: Tensor) -> None:
        state["sum"] = diff if state["sum"] is None else state["sum"] + diff
        if state["n"] in needed:
            kept[state["n"]] = diff
        state["n"] += 1

    def record(act: Tensor, hook, first: int, layer: int | None = None) -> Tensor:
        if layer is not None:  # hook_z: [variant * batch pos head d_head]
            for h, out in enumerate(head_outputs(model, act, layer)):  # [variant*batch pos d_model] each
                add(out.view(n_variants, -1, *out.shape[1:]) - outputs.corrupt[first + h][None])
        else:
            add(act.view(n_variants, -1, *act.shape[1:]) - outputs.corrupt[first][None])
        return act

    def correct(act: Tensor, hook, name: str) -> Tensor:
        n_rec, base, rows, weights = plans[name]
        assert state["n"] == n_rec, (name, state["n"], n_rec)
        view = act.view(n_variants, -1, *act.shape[1:])  # [variant batch pos (head) d_model]
        total = state["sum"][:, :, :, None]  # [variant batch pos 1 d_model]
        fix = base.to(total.dtype)[:, None, None, None, None] * total
        if len(rows):
            stacked = torch.stack([kept[int(i)] for i in rows], dim=1)  # [variant src batch pos d_model]
            pattern = "variant src batch pos d_model, variant src dest" + (" pos" if weights.ndim == 4 else "")
            fix = fix + einsum(stacked, weights.to(stacked.dtype), pattern + " -> variant batch pos dest d_model")
        fix = fix if view.ndim == 5 else fix[:, :, :, 0]
        return (view - fix).view(act.shape)

    hooks: list[tuple[str, object]] = [(hook_name("resid_pre", 0), lambda act, hook: record(act, hook, 0))]
    src_first: dict[str, tuple[int, int | None]] = {}
    for i, node in enumerate(graph.sources):
        if node.kind == "head":
            src_first.setdefault(hook_name("z", node.layer), (i, node.layer))
        elif node.kind == "mlp":
            src_first.setdefault(node.hook_out, (i, None))
    for name, (first, layer) in src_first.items():
        hooks.append((name, lambda act, hook, first=first, layer=layer: record(act, hook, first, layer)))
    hooks += [(name, lambda act, hook, name=name: correct(act, hook, name)) for name in plans]
    return hooks


def _correction_plans(graph: ComputeGraph, cut: Tensor) -> dict[str, tuple[int, Tensor, Tensor, Tensor]]:
    """For each reader hook: how many sources are recorded when it runs, and per variant the shorter sum.

    Returns ``hook -> (n_recorded, base [variant], rows [k], weights [variant k dest (pos)])``: the correction is
    ``base * running_sum + sum over rows of weights * difference``, with ``base`` 0 and ``weights`` the cut mask
    (few cut edges), or ``base`` 1 and ``weights`` minus the edges not cut (few kept edges).
    """
    prefix = graph.sources_before
    plans = {}
    for name, nodes in graph.dest_hooks.items():
        columns = [graph.dest_index(n) for n in nodes]
        same_layer = graph.n_heads if graph.parallel and nodes[0].kind == "mlp" else 0  # a parallel MLP runs after its heads
        n_rec = prefix[columns[0]] + same_layer
        mask = cut[:, :n_rec, columns]  # [variant src dest (pos)]
        n_cut = mask.flatten(1).sum(1)
        base = (2 * n_cut > mask[0].numel()).to(torch.long)  # [variant]: more cut than kept
        shape = (-1,) + (1,) * (mask.ndim - 1)
        weights = torch.where(base.view(shape).bool(), -(~mask).to(torch.float32), mask.to(torch.float32))
        rows = weights.ne(0).transpose(0, 1).flatten(1).any(1).nonzero()[:, 0]  # sources some variant sums one by one
        plans[name] = (n_rec, base, rows, weights[:, rows])
    return plans
