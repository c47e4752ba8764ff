"""Fast edge attribution: EAP and EAP-IG, and exact verification of their top edges.

Edge attribution patching (EAP; Syed et al., 2023) replaces one forward pass per edge with a
first-order Taylor estimate from one forward and one backward pass on the clean input:
``score(src->dest) = sum over batch and positions of (clean_src - corrupt_src) . dmetric/d input_dest``.
It estimates the exact noising score ``clean - patched`` of ``patch_edges``; positive means the edge
helps the clean answer. On a model that is linear in its residual stream the estimate is exact.

EAP-IG (Hanna et al., 2024) averages the gradient over ``steps`` inputs whose embeddings move from
the corrupt to the clean ones (integrated gradients), which tracks exact patching far better when
the model is not linear. ``verify`` re-scores the top edges exactly and reports the rank
correlation, so an attribution run says how much it can be trusted.
"""

import pandas as pd
import torch
from einops import einsum
from torch import Tensor

from pathpatch.discovery.config import PatchConfig, groups_of
from pathpatch.discovery.edges import NOISE, collect_outputs, patch_edges, prepare_edges
from pathpatch.discovery.graph import ComputeGraph, with_patching_hooks
from pathpatch.discovery.prune import strongest
from pathpatch.discovery.runner import Prepared, read_logits, repeat_variants, run_blocks, supports_prefix_reuse
from pathpatch.models.tasks import AnyTask, n_prompts
from pathpatch.names import hook_name

def _dest_gradients(
    model: torch.nn.Module, graph: ComputeGraph, prep: Prepared, embed: Tensor, copies: int
) -> dict[str, Tensor]:
    """Return d(metric)/d(input) at every destination hook, summed over ``copies`` stacked inputs.

    ``embed`` ``[copies * batch pos d_model]`` replaces ``blocks.0.hook_resid_pre``; the loss is the
    task metric averaged over prompts and divided by ``copies``, so summed gradients are averages.
    Models with prefix reuse start at layer 0 from ``embed`` and unembed only the read positions
    (and, for ``logit_diff``, the two columns read).
    """
    task = prep.task
    names = sorted({node.hook_in for node in graph.dests})
    grads: dict[str, Tensor] = {}

    def save(grad: Tensor, hook) -> None:
        grads[hook.name] = grad.detach().view(copies, -1, *grad.shape[1:]).sum(0)

    def replace(act: Tensor, hook) -> Tensor:
        return embed

    with torch.enable_grad(), model.hooks(fwd_hooks=[(hook_name("resid_pre", 0), replace)], bwd_hooks=[(n, save) for n in names]):
        if supports_prefix_reuse(model):
            resid = run_blocks(model, embed, 0, model.cfg.n_layers)
            scores = prep.read_task.score_read(read_logits(model, resid, task.positions, prep.read_tokens).float())
        else:
            scores = task.score_read(model(repeat_variants(task.clean, copies))[:, task.positions].float())
        loss = scores.sum() / task.clean.shape[0] / copies
        loss.backward()
    return grads


@with_patching_hooks
def attribute_edges(
    model: torch.nn.Module, task: AnyTask, method: str = "eap", steps: int = 5, config: PatchConfig = NOISE
) -> pd.DataFrame:
    """Score every edge with EAP or EAP-IG (``steps`` interpolation points).

    Returns:
        One row per edge: ``edge, src, dest, channel, pos, score, method`` (``score`` estimates the
        exact noising score; sign flipped for lower-is-better metrics such as MSE).
    """
    if method not in ("eap", "eap-ig"):
        raise ValueError(f"Unknown attribution method {method!r}; choose 'eap' or 'eap-ig'.")
    if steps < 1:
        raise ValueError(f"steps={steps}; EAP-IG needs at least 1 interpolation step.")
    groups = groups_of(task, config)
    if len(groups) > 1:  # a score is a mean over prompts: weight each length group by its prompts
        tables = [attribute_edges(model, group, method, steps, config) for group in groups]
        weights = [group.clean.shape[0] / n_prompts(task) for group in groups]
        table = tables[0].copy()
        table["score"] = sum(w * t["score"].to_numpy() for w, t in zip(weights, tables))
        return table
    task = groups[0]
    graph = ComputeGraph.from_model(model)
    prep = prepare_edges(model, graph, task)
    small = prep.task
    outputs = collect_outputs(model, graph, prep, config)
    clean_embed, corrupt_embed = outputs.clean[0], outputs.corrupt[0]  # [batch pos d_model]
    if method == "eap":
        alphas = torch.ones(1)
    else:
        alphas = torch.arange(1, steps + 1, dtype=clean_embed.dtype) / steps
    alphas = alphas.to(clean_embed.device)[:, None, None, None]
    embed = (corrupt_embed[None] + alphas * (clean_embed - corrupt_embed)[None]).flatten(0, 1)  # [copies * batch pos d_model]
    grads = _dest_gradients(model, graph, prep, embed.detach().requires_grad_(True), len(alphas))
    delta = outputs.clean - outputs.corrupt  # [src batch pos d_model]
    scores = torch.zeros(len(graph.sources), len(graph.dests), device=delta.device)
    for j, node in enumerate(graph.dests):
        grad = grads[node.hook_in]
        grad = grad[:, :, node.head] if node.kind == "head_input" else grad  # [batch pos d_model]
        scores[:, j] = einsum(delta, grad, "src batch pos d_model, batch pos d_model -> src")
    sign = 1.0 if small.higher_is_better else -1.0
    valid = graph.valid
    edges = graph.edges
    flat = (sign * scores.cpu()).T[valid.T]  # dest-major, matching graph.edges
    return pd.DataFrame(
        {
            "edge": [e.name for e in edges],
            "src": [e.src.name for e in edges],
            "dest": [e.dest.name for e in edges],
            "channel": [e.dest.channel or "" for e in edges],
            "pos": -1,
            "score": flat.numpy(),
            "method": method,
        }
    )


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
        raise ValueError(f"top_k={top_k}; verify at least one edge.")
    top = strongest(scores, top_k)
    exact = patch_edges(model, task, list(top["edge"]), config=config)
    table = pd.DataFrame({"edge": top["edge"].values, "approx": top["score"].values, "exact": exact["score"].values})
    table.attrs["spearman"] = spearman(table["approx"], table["exact"]) if len(table) > 1 else 1.0
    return table
