"""Circuit runs: a circuit (a ``[src dest]`` mask, or ``[src dest label]`` by position) keeps its edges
clean and corrupts all others.

Each reader gets ``input - sum over cut edges of (out_src - corrupt_src)`` with ``out_src`` taken from the same,
already patched, forward pass, so cuts compound as they would in the model. The full circuit gives the clean
metric and the empty one the corrupt metric. Many circuits run as variants of one batch; faithfulness,
ACDC and MIB's curves all run here.
"""


import torch
from einops import einsum
from jaxtyping import Bool, Float
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.names import hook_name
from pathpatch.patch.config import NOISE, PatchConfig
from pathpatch.patch.graph import ComputeGraph, with_patching_hooks
from pathpatch.patch.runner import metric_per_prompt, repeat_variants, run_from_layer
from pathpatch.patch.schedule import chunk_size, run_chunked
from pathpatch.patch.variants import Outputs, collect_outputs, head_outputs, prepare_edges
from pathpatch.task.groups import AnyTask, groups_for
from pathpatch.task.positions import Layout, labels_of


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
        positions: The label columns of position-aware masks (``pathpatch.task.positions.layout``).
    """
    groups = groups_for(task, config.corruption, positions is not None)
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
