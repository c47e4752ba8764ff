"""The machinery under every exact edge run: one forward pass carries many variants of a batch, each with
its own cut edges.

A reader's input is the sum of the outputs written before it, so an edge ``src->dest`` is cut by adding
``corrupt_src - out_src`` at ``dest``'s input hook. ``collect_outputs`` caches every source's output in both runs;
``run_variants`` repeats the batch once per variant and starts at the first layer any variant changes (and at the
first position it reads, where later positions cannot reach back). A single edge into a head's q, k or v
recomputes only that head's input (``shared_head_inputs``) instead of giving every head its own copy.
"""

from dataclasses import dataclass

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.models.hook_flags import hook_flags
from pathpatch.names import Edge, Node, hook_name, reads_at
from pathpatch.patch.architecture import Architecture
from pathpatch.patch.config import PatchConfig, ablate, corrupt_inputs
from pathpatch.patch.graph import ComputeGraph
from pathpatch.patch.runner import (Prepared, cache_activations, kv_hooks, metric_per_prompt, pos_embed, prepare, repeat_variants,
                                    run_from_layer)
from pathpatch.patch.schedule import chunk_size, run_chunked, suffix_groups
from pathpatch.task.task import Task


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
        if max(e.src.stage for e in variant.edges) >= min(reads_at(e.dest, graph.parallel) for e in variant.edges):
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
    with hook_flags(model, {"use_split_qkv_input": not shared}):
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
