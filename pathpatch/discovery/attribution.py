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
from pathpatch.discovery.edges import NOISE, collect_outputs, edge_rows, patch_edges, position_layout, prepare_edges
from pathpatch.discovery.graph import ComputeGraph, with_patching_hooks
from pathpatch.discovery.prune import strongest
from pathpatch.discovery.runner import Prepared, is_causal, read_logits, repeat_variants, run_blocks, supports_prefix_reuse
from pathpatch.models.tasks import AnyTask, Task, n_prompts
from pathpatch.names import edge_at, hook_name
from pathpatch.positions import Layout, labels_of

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
    model: torch.nn.Module, task: AnyTask, method: str = "eap", steps: int = 5, config: PatchConfig = NOISE, by_pos: bool = False
) -> pd.DataFrame:
    """Score every edge with EAP or EAP-IG (``steps`` interpolation points).

    With ``by_pos``, one row per edge and position label (``L0H0->L1H0.v@END``), in ``patch_edges``' order:
    the estimate summed over the positions each label covers instead of over all positions.

    Returns:
        One row per edge: ``edge, src, dest, channel, pos, score, method`` (``score`` estimates the
        exact noising score; sign flipped for lower-is-better metrics such as MSE).
    """
    if method not in ("eap", "eap-ig"):
        raise ValueError(f"Unknown attribution method {method!r}; choose 'eap' or 'eap-ig'.")
    if steps < 1:
        raise ValueError(f"steps={steps}; EAP-IG needs at least 1 interpolation step.")
    graph = ComputeGraph.from_model(model)
    columns = position_layout(task, is_causal(model)) if by_pos else None
    total = torch.zeros(len(graph.sources), len(graph.dests), *(() if columns is None else (len(columns.labels),)))
    sign = 1.0
    for group in groups_of(task, config, by_pos):  # a score is a mean over prompts: weight each length group by its prompts
        scores, sign = _group_scores(model, graph, group, method, steps, config, columns)
        total += scores * (group.clean.shape[0] / n_prompts(task))
    rows = edge_rows(graph, task, None, by_pos, is_causal(model))
    index = [(graph.src_index(e.src), graph.dest_index(e.dest)) + (() if pos is None else (columns.index(pos),)) for e, pos in rows]
    flat = torch.stack([total[i] for i in index]) if index else torch.zeros(0)
    return pd.DataFrame(
        {
            "edge": [edge_at(e.name, pos) for e, pos in rows],
            "src": [e.src.name for e, _ in rows],
            "dest": [e.dest.name for e, _ in rows],
            "channel": [e.dest.channel or "" for e, _ in rows],
            "pos": [-1 if pos is None else pos for _, pos in rows],
            "score": (sign * flat).numpy(),
            "method": method,
        }
    )


def _group_scores(model: torch.nn.Module, graph: ComputeGraph, task: Task, method: str, steps: int, config: PatchConfig,
                  columns: Layout | None) -> tuple[Tensor, float]:
    """EAP(-IG) estimates ``[src dest]`` of one same-shape group (``[src dest label]`` with ``columns``), and the metric's sign."""
    prep = prepare_edges(model, graph, task)
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
    n_pos = delta.shape[2]
    scores = torch.zeros(len(graph.sources), len(graph.dests), n_pos, device=delta.device)
    for j, node in enumerate(graph.dests):
        grad = grads[node.hook_in]
        grad = grad[:, :, node.head] if node.kind == "head_input" else grad  # [batch pos d_model]
        scores[:, j] = einsum(delta, grad, "src batch pos d_model, batch pos d_model -> src pos")
    scores = scores.cpu()
    if columns is None:
        out = scores.sum(-1)
    else:  # sum each label's positions (positions after the last read one were cut and contribute 0)
        out = torch.zeros(*scores.shape[:2], len(columns.labels))
        out.index_add_(2, torch.tensor([columns.index(label) for label in labels_of(prep.task)], dtype=torch.long), scores)
    return out, 1.0 if prep.task.higher_is_better else -1.0


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
