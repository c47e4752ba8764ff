"""Fast edge attribution: EAP and EAP-IG, and exact verification of their top edges.

Edge attribution patching (EAP; Syed et al., 2023) replaces one forward pass per edge with a
first-order Taylor estimate from one forward and one backward pass:
``score(src->dest) = sum over batch and positions of (clean_src - corrupt_src) . dmetric/d input_dest``.
``config.direction`` picks the run the gradient is taken at, as ``patch_edges`` picks the patched run:
``noise`` takes it at the clean run and estimates the noising score ``clean - patched`` (what the edge
contributes), ``denoise`` at the corrupt run and estimates the denoising score ``patched - corrupt``
(what the edge restores). Either way positive means the edge helps the clean answer. On a model that is
linear in its residual stream both estimates are exact (and equal).

EAP-IG (Hanna et al., 2024) averages the gradient over ``steps`` inputs whose embeddings move from
the corrupt to the clean ones (integrated gradients), which tracks exact patching far better when
the model is not linear; the points are ``k / steps`` of the way for ``k = 1..steps`` when noising (the
clean end included) and ``k = 0..steps-1`` when denoising (the corrupt end included). ``verify``
re-scores the top edges exactly and reports the rank correlation, so an attribution run says how much
it can be trusted.
"""

import logging
from dataclasses import replace

import einops
import pandas as pd
import torch
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.names import edge_at, hook_name
from pathpatch.patch.config import NOISE, PatchConfig, corrupt_inputs
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph, with_patching_hooks
from pathpatch.patch.runner import Prepared, is_causal, prepare, read_logits, repeat_variants, run_blocks, supports_prefix_reuse
from pathpatch.patch.schedule import memory_budget
from pathpatch.patch.scores import strongest
from pathpatch.patch.variants import source_hooks, stack_sources
from pathpatch.progress import Progress
from pathpatch.task.groups import AnyTask, groups_for, n_prompts, trim_task
from pathpatch.task.positions import Layout, labels_of, position_layout
from pathpatch.task.task import Task
from pathpatch.vocabulary import ATTRIBUTION_METHODS

log = logging.getLogger("pathpatch.progress")


@with_patching_hooks
def attribute_edges(
    model: torch.nn.Module, task: AnyTask, method: str = "eap", steps: int = 5, config: PatchConfig = NOISE, by_pos: bool = False
) -> pd.DataFrame:
    """Score every edge with EAP or EAP-IG (``steps`` interpolation points).

    Prompts and interpolation steps run in chunks sized from ``config.max_memory`` (``schedule.memory_budget``),
    so memory follows the budget whatever the number of prompts; the sums are the same in any chunking.
    With ``by_pos``, one row per edge and position label (``L0H0->L1H0.v@END``), in ``patch_edges``' order:
    the estimate summed over the positions each label covers instead of over all positions.

    Returns:
        One row per edge: ``edge, src, dest, channel, pos, score, method`` (``score`` estimates the
        exact score of ``config.direction``; sign flipped for lower-is-better metrics such as MSE).
    """
    if method not in ATTRIBUTION_METHODS:
        raise InputError(f"Unknown attribution method {method!r}; choose 'eap' or 'eap-ig'.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps={steps!r}; EAP-IG needs at least 1 interpolation step (an integer).")
    graph = ComputeGraph.from_model(model)
    columns = position_layout(task, is_causal(model)) if by_pos else None
    first = 1 if config.direction == "noise" else 0  # the gradient at the run that is patched: clean, or corrupt
    alphas = torch.full((1,), float(first)) if method == "eap" else torch.arange(first, first + steps) / steps  # [copies]
    total = torch.zeros(len(graph.sources), len(graph.dests), *(() if columns is None else (len(columns.labels),)))
    for group in groups_for(task, config.corruption, by_pos):  # a score is a mean over prompts: sum every group, divide once
        total += _group_scores(model, graph, group, alphas, config, columns)
    total /= n_prompts(task)
    sign = 1.0 if task.higher_is_better else -1.0
    valid = graph.valid.T  # [dest src]: table rows run by destination, then source
    flat = total.transpose(0, 1)[valid]  # [edge] or [edge label], in graph.edges order
    edges = graph.edges
    labels = [None] if columns is None else list(columns.labels)
    return pd.DataFrame(
        {
            "edge": [edge_at(e.name, pos) for e in edges for pos in labels],
            "src": [e.src.name for e in edges for _ in labels],
            "dest": [e.dest.name for e in edges for _ in labels],
            "channel": [e.dest.channel or "" for e in edges for _ in labels],
            "pos": [-1 if pos is None else pos for _ in edges for pos in labels],
            "score": (sign * flat.reshape(-1)).numpy(),
            "method": method,
        }
    )


def bytes_per_token(model: torch.nn.Module, n_pos: int) -> int:
    """Estimated bytes that one token of one interpolation copy keeps alive through a backward pass.

    Counts what autograd saves per layer with per-head inputs (``use_split_qkv_input``): each head's
    q/k/v input and normed input, projections, attention scores, MLP hidden states, in float32, with the
    transient gradients of a backward pass (coefficients fitted to the peak memory measured on SmolLM2-135M).
    """
    cfg = model.cfg
    heads, d_model, d_mlp = cfg.n_heads, cfg.d_model, cfg.d_mlp or 0
    per_layer = 12 * heads * d_model + 10 * heads * cfg.d_head + 4 * heads * n_pos + 8 * d_mlp + 12 * d_model  # measured on SmolLM2
    return 4 * cfg.n_layers * per_layer


def plan_chunks(model: torch.nn.Module, graph: ComputeGraph, n: int, n_pos: int, copies: int, budget: "int | float") -> tuple[int, int]:
    """Return (prompts, copies) per backward pass so that one chunk's activations fit in ``budget`` bytes.

    A chunk of ``p`` prompts holds its sources' clean, corrupt and difference outputs
    (``3 * src * d_model`` floats a token) and ``c`` interpolation copies of the backward pass.
    """
    sources = 3 * 4 * len(graph.sources) * model.cfg.d_model  # bytes a token
    per_copy = bytes_per_token(model, n_pos)
    prompts = int(budget // max(n_pos * (copies * per_copy + sources), 1))
    if prompts >= 1:
        return min(prompts, n), copies
    return 1, max(1, min(copies, int((budget / n_pos - sources) // per_copy)))


def _group_scores(model: torch.nn.Module, graph: ComputeGraph, task: Task, alphas: Tensor, config: PatchConfig,
                  columns: Layout | None) -> Tensor:
    """EAP(-IG) estimates of one same-shape group, summed over its prompts: ``[src dest]`` (``[src dest label]`` with ``columns``)."""
    if config.corruption == "resample":  # a resample is a paired corruption by the permuted clean prompts
        task = replace(task, corrupt=corrupt_inputs(task, config))
    device = next(model.parameters()).device
    n, budget = task.clean.shape[0], memory_budget(config.max_memory, device)
    n_pos = trim_task(task, cut=is_causal(model)).clean.shape[1]  # the positions that run
    prompts, copies = plan_chunks(model, graph, n, n_pos, len(alphas), budget)
    if callable(task.metric) and prompts < n:  # a custom metric may read prompts by their place in the batch: keep them whole
        prompts, copies = n, plan_chunks(model, graph, 1, n * n_pos, len(alphas), budget)[1]
    mean = _mean_outputs(model, graph, task, prompts) if config.corruption == "mean" else None
    scores, tokens = None, None  # [src dest pos], once the trimmed length is known
    n_chunks = -(-n // prompts) * -(-len(alphas) // copies)
    log.info("%s over %d prompts: %d backward passes of %d prompts x %d steps (memory budget %.2f GB)",
             "EAP" if len(alphas) == 1 else "EAP-IG", n, n_chunks, prompts, copies, budget / 1e9)
    ticker = Progress(n_chunks, "attribution passes", bar=config.progress)
    for a in range(0, n, prompts):
        prep = prepare(model, task.select(a, min(a + prompts, n)), source_hooks(graph))
        clean = stack_sources(model, graph, prep.clean_acts)  # [src batch pos d_model]
        if config.corruption == "zero":
            corrupt = torch.zeros_like(clean)
        elif config.corruption == "mean":
            corrupt = mean.expand_as(clean)
        else:  # paired, and resample made paired above
            corrupt = stack_sources(model, graph, prep.corrupt_acts)
        delta = clean - corrupt  # [src batch pos d_model]
        ends = clean[0], corrupt[0]  # clean and corrupt embeddings [batch pos d_model]
        del clean, corrupt
        if scores is None:
            scores = torch.zeros(len(graph.sources), len(graph.dests), delta.shape[2], device=delta.device)
            tokens = labels_of(prep.task) if columns is not None else None
        for s in range(0, len(alphas), copies):
            part = alphas[s : s + copies].to(delta.device, delta.dtype)[:, None, None, None]  # [copies 1 1 1]
            embed = (ends[1][None] + part * (ends[0] - ends[1])[None]).flatten(0, 1)  # [copies * batch pos d_model]
            _accumulate(model, graph, prep, embed.detach().requires_grad_(True), len(part), len(alphas), delta, scores)
            ticker.update()
    ticker.close()
    scores = scores.cpu()
    if columns is None:
        return scores.sum(-1)
    out = torch.zeros(*scores.shape[:2], len(columns.labels))  # sum each label's positions
    out.index_add_(2, torch.tensor([columns.index(label) for label in tokens], dtype=torch.long), scores)
    return out


@torch.no_grad()
def _mean_outputs(model: torch.nn.Module, graph: ComputeGraph, task: Task, prompts: int) -> Tensor:
    """Every source's clean output averaged over all prompts of the group ``[src 1 pos d_model]`` (mean ablation)."""
    total = None
    for a in range(0, task.clean.shape[0], prompts):
        prep = prepare(model, task.select(a, min(a + prompts, task.clean.shape[0])), source_hooks(graph))
        part = stack_sources(model, graph, prep.clean_acts).sum(1, keepdim=True)  # [src 1 pos d_model]
        total = part if total is None else total + part
    return total / task.clean.shape[0]


def _accumulate(model: torch.nn.Module, graph: ComputeGraph, prep: Prepared, embed: Tensor, copies: int, steps: int,
                delta: Tensor, scores: Tensor) -> None:
    """Add ``delta . d(metric)/d(input)`` of every edge into ``scores`` ``[src dest pos]``, summed over prompts and copies.

    ``embed`` ``[copies * batch pos d_model]`` replaces ``blocks.0.hook_resid_pre``; the loss is the task metric
    summed over prompts and divided by ``steps``
    (all interpolation points, of which this pass runs ``copies``). Each destination hook's gradient is contracted with the
    source differences as it arrives in the backward pass (one einsum per hook, over every head and only the
    sources that write before it), so no gradient outlives its hook. Models with prefix reuse unembed only the
    read positions (and, for ``logit_diff``, the two columns read).
    """
    task = prep.task
    prefix = graph.sources_before
    by_pos = einops.rearrange(delta, "src batch pos d_model -> pos src (batch d_model)").contiguous()

    def contract(grad: Tensor, hook, columns: list[int], heads: list[int] | None, n_src: int) -> None:
        grad = grad.detach().view(copies, -1, *grad.shape[1:]).sum(0)  # [batch pos (head) d_model]
        grad = grad[:, :, heads] if heads is not None else grad[:, :, None]  # [batch pos head d_model]
        grad = einops.rearrange(grad, "batch pos head d_model -> pos (batch d_model) head")
        scores[:n_src, columns] += torch.bmm(by_pos[:, :n_src], grad).permute(1, 2, 0)  # [src head pos]

    hooks = []
    for name, nodes in graph.dest_hooks.items():
        columns = [graph.dest_index(node) for node in nodes]
        heads = [node.head for node in nodes] if nodes[0].kind == "head_input" else None
        hooks.append((name, lambda grad, hook, c=columns, h=heads, k=prefix[columns[0]]: contract(grad, hook, c, h, k)))

    def replace_embed(act: Tensor, hook) -> Tensor:
        return embed

    with torch.enable_grad(), model.hooks(fwd_hooks=[(hook_name("resid_pre", 0), replace_embed)], bwd_hooks=hooks):
        if supports_prefix_reuse(model):
            resid = run_blocks(model, embed, 0, model.cfg.n_layers)
            metric = prep.read_task.score_read(read_logits(model, resid, task.positions, prep.read_tokens).float())
        else:
            metric = task.score_read(model(repeat_variants(task.clean, copies))[:, task.positions].float())
        torch.autograd.grad(metric.sum() / steps, embed)


def spearman(a: pd.Series, b: pd.Series) -> float:
    """Return Spearman's rank correlation of two series (Pearson on average ranks)."""
    return float(a.rank().corr(b.rank()))


def verify(
    model: torch.nn.Module, task: AnyTask, scores: pd.DataFrame, top_k: int = 20, config: PatchConfig = NOISE
) -> pd.DataFrame:
    """Re-score the ``top_k`` edges of ``scores`` (by |score|) exactly; attach the rank correlation.

    Returns:
        ``edge, approx, exact`` for the top edges; ``attrs['spearman']`` holds their rank correlation.
    """
    if top_k < 1:
        raise InputError(f"top_k={top_k}; verify at least one edge.")
    top = strongest(scores, top_k)
    exact = patch_edges(model, task, list(top["edge"]), config=config)
    table = pd.DataFrame({"edge": top["edge"].values, "approx": top["score"].values, "exact": exact["score"].values})
    table.attrs["spearman"] = spearman(table["approx"], table["exact"]) if len(table) > 1 else 1.0
    return table
