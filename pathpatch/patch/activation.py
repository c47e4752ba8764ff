"""Activation patching of every component, position and head, batched.

Activation patching asks how much one activation matters: run the model on one input while one
activation is taken from the other input's run, and measure the task metric. In the default
``denoise`` direction the model runs on the corrupt input and one activation is restored to its clean
value (TransformerLens' ``patching`` module does exactly this, one forward pass per activation); a
large metric means that activation alone carries much of the clean behaviour. In the ``noise``
direction the model runs on the clean input and one activation is corrupted (or mean/zero ablated).

Here every activation of one layer is a variant of one batched forward pass that starts at that
layer from the cached residual stream, reads logits only where the metric reads, and uses a mask to
swap each variant's slice. Activations that live in the residual stream or only add to it need no
hook: ``resid_pre``/``resid_mid``/``resid_post`` replace the cached stream where they sit, head outputs,
``attn_out`` and ``mlp_out`` add their difference to it (the MLP reruns at the changed positions where
it reads the change), and the run starts there, after the patched layer for all but ``resid_pre``.
The returned tensor has TransformerLens' shape for the same patching function, so the two can be
compared element by element, plus a tidy table with one row per patch.
"""

from dataclasses import dataclass
from functools import partial
from itertools import product

import pandas as pd
import torch
from einops import einsum
from jaxtyping import Bool, Float
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.names import hook_name
from pathpatch.patch.architecture import Architecture
from pathpatch.patch.config import PatchConfig, ablate, corrupt_inputs
from pathpatch.patch.graph import with_patching_hooks
from pathpatch.patch.runner import (Prepared, cache_activations, final_resid, kv_hooks, metric_per_variant, metrics_from_reads, prepare,
                                    repeat_variants, run_from_layer, supports_prefix_reuse, supports_suffix_reuse)
from pathpatch.patch.schedule import chunk_size, run_chunked, suffix_groups
from pathpatch.patch.scores import normalized
from pathpatch.task.groups import AnyTask, one_shape
from pathpatch.task.task import Task

BLOCK_ACTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_ACTS = ("z", "q", "k", "v", "result")
ACTS = (*BLOCK_ACTS, *HEAD_ACTS, "pattern")
ONE_SHAPE = ("activation patching gives one value per layer and position, so give prompts of one length and read "
             "positions, or patch edges instead (patch_edges handles mixed lengths).")


@dataclass(frozen=True)
class ActivationPatchResult:
    """Patched metrics of every variant.

    Attributes:
        values: Patched metric per variant, shaped like TransformerLens' patching output:
            ``[layer pos]`` (block, by position), ``[layer]`` (block, all positions),
            ``[layer pos head]`` (head, by position), ``[layer head]`` (head, all positions),
            ``[layer head pos]`` (pattern, by destination position).
        table: One row per variant: its indices, ``metric``, ``score`` and (if asked) ``normalized``.
        clean_metric: Metric of the clean run.
        corrupt_metric: Metric of the corrupt run.
    """

    values: Tensor
    table: pd.DataFrame
    clean_metric: float
    corrupt_metric: float


def index_axes(act: str, per_pos: bool) -> tuple[str, ...]:
    """Return the index axes of a patching run, in TransformerLens' order."""
    if act in BLOCK_ACTS:
        return ("layer", "pos") if per_pos else ("layer",)
    if act in HEAD_ACTS:
        return ("layer", "pos", "head") if per_pos else ("layer", "head")
    return ("layer", "head", "pos") if per_pos else ("layer", "head")


def patch_mask(act: str, axes: tuple[str, ...], rows: list[tuple[int, ...]], n_heads: int, n_pos: int) -> Bool[Tensor, "batch ..."]:
    """Return a boolean mask ``[variant ...]`` marking each variant's patched slice of ``act``.

    The mask broadcasts against the activation without its batch dimension: ``[pos d_model]`` for
    block activations, ``[pos head d_head]`` for head activations, ``[head dest src]`` for patterns.
    """
    shape = {"block": (n_pos, 1), "head": (n_pos, n_heads, 1), "pattern": (n_heads, n_pos, 1)}
    family = "block" if act in BLOCK_ACTS else "head" if act in HEAD_ACTS else "pattern"
    mask = torch.zeros(len(rows), *shape[family], dtype=torch.bool)
    for i, row in enumerate(rows):
        index = dict(zip(axes, row))
        pos = index.get("pos", slice(None))
        head = index.get("head", slice(None))
        if family == "block":
            mask[i, pos] = True
        elif family == "head":
            mask[i, pos, head] = True
        else:
            mask[i, head, pos] = True
    return mask


# Activations that change only their own position's residual stream in the layer they belong to.
OWN_POSITION = ("z", "q", "result", "pattern", "attn_out", "mlp_out", "resid_mid", "resid_post")


def _can_reach(act: str, layer: int, pos: int | None, n_layers: int, n_pos: int, read: set[int]) -> bool:
    """Whether patching ``act`` at ``layer`` (and ``pos``) can change the logits the metric reads.

    Positions after the last read one cannot (causal models: the task is cut there), nor can an
    own-position activation of the last layer at a position the metric does not read. Such variants
    keep the unpatched metric without a forward pass.
    """
    if pos is None:
        return True
    if pos >= n_pos:
        return False
    return not (layer == n_layers - 1 and act in OWN_POSITION and pos not in read)


def _swap_hook(mask: Tensor, patch: Tensor, n_variants: int):
    """Return a hook setting each variant's masked slice to ``patch`` (``[batch ...]``)."""

    def hook(act: Tensor, hook) -> Tensor:
        view = act.view(n_variants, -1, *act.shape[1:])  # [variant batch ...]
        return torch.where(mask[:, None], patch[None], view).view(act.shape)

    return hook


# Activations patched without a hook (``_inject``): where each enters the residual stream of its layer
# (``pre``: the layer's input, ``mid``: before its MLP, ``post``: its output) and whether a patch
# replaces the stream there (``set``) or adds its difference to it (``add``).
ENTRY = {
    "resid_pre": ("pre", "set"),
    "z": ("mid", "add"),
    "result": ("mid", "add"),
    "attn_out": ("mid", "add"),
    "resid_mid": ("mid", "set"),
    "mlp_out": ("post", "add"),
    "resid_post": ("post", "set"),
}


def _after(model: torch.nn.Module, layer: int) -> str:
    """The hook holding the residual stream after ``layer``: the next layer's ``resid_pre``, or the last ``resid_post``."""
    last = model.cfg.n_layers - 1
    return hook_name("resid_post", layer) if layer == last else hook_name("resid_pre", layer + 1)


def _injects(model: torch.nn.Module, act: str) -> bool:
    """Whether patches of ``act`` run without hooks (``_inject``): outputs added to the residual stream as
    they are, in a model that can start mid-way (``Architecture.additive_outputs``)."""
    return act in ENTRY and Architecture.of(model).additive_outputs


def _start_layer(act: str, layer: int) -> int:
    """The layer an injected patch of ``act`` at ``layer`` starts from: the layer itself for its input, else the next."""
    return layer if ENTRY[act][0] == "pre" else layer + 1


def _inject(
    model: torch.nn.Module, act: str, layer: int, mask: Tensor, patch: Tensor, base: Tensor, acts: dict[str, Tensor]
) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream ``[variant * batch pos d_model]`` a patched run of ``act`` starts from
    (``_start_layer``), each variant's masked slice of ``act`` set to ``patch``.

    ``base`` is ``act`` in the run being patched and ``acts`` that run's cached residual streams. The
    patch replaces the stream, or its difference is added to it, where ``act`` enters; after a change
    before the MLP, the MLP reruns at the changed positions. Unchanged positions keep their cached values.
    """
    block, n, cfg = model.blocks[layer], mask.shape[0], model.cfg
    where, how = ENTRY[act]
    variant, pos = mask.flatten(2).any(-1).nonzero(as_tuple=True)  # each variant's changed positions
    if how == "set":
        new = patch[:, pos].transpose(0, 1)  # [changed batch d_model]
    else:
        diff = torch.where(mask[variant, pos][:, None], (patch - base)[:, pos].transpose(0, 1), 0.0)  # [changed batch ...]
        if act == "z":
            delta = einsum(diff, block.attn.W_O, "changed batch head d_head, head d_head d_model -> changed batch d_model")
        else:
            delta = diff.sum(-2) if act == "result" else diff  # [changed batch d_model]
        stream = hook_name("resid_mid", layer) if where == "mid" and not cfg.attn_only else _after(model, layer)  # attn-only: mid is post
        new = acts[stream][:, pos].transpose(0, 1) + delta
    if where == "mid" and not cfg.attn_only:  # the MLP reads the change
        new = new.contiguous()
        new = new + block.mlp(block.ln2(new))
    start = hook_name("resid_pre", layer) if where == "pre" else _after(model, layer)
    out = repeat_variants(acts[start], n).view(n, -1, *acts[start].shape[1:])  # [variant batch pos d_model]
    out[variant, :, pos] = new
    return out.flatten(0, 1)


@partial(with_patching_hooks, ungroup=False)  # keys/values patched per key/value head, as TransformerLens does
def activation_patch(
    model: torch.nn.Module,
    task: AnyTask,
    act: str,
    per_pos: bool = True,
    config: PatchConfig = PatchConfig(),
) -> ActivationPatchResult:
    """Patch ``act`` at every layer (and position and head), one batched pass per layer.

    Args:
        model: A TransformerLens model (for ``result``, with ``use_attn_result``).
        task: Clean/corrupt inputs and metric.
        act: Which activation to patch (see ``ACTS``).
        per_pos: Patch each position separately, or all positions at once.
        config: Direction, corruption, memory budget.

    Returns:
        The TransformerLens-shaped metric tensor and a table with one row per variant.

    Raises:
        ValueError: Unknown activation, attention-only model asked for MLP activations, or bad inputs.
    """
    _check_act(model, act)
    task = one_shape(task, ONE_SHAPE)
    return _patch(model, task, prepare(model, task, _cached_hooks(model, act, per_pos)), act, per_pos, config)


@partial(with_patching_hooks, ungroup=False)
def block_every(model: torch.nn.Module, task: AnyTask, per_pos: bool = True, config: PatchConfig = PatchConfig()) -> ActivationPatchResult:
    """Patch ``resid_pre``, ``attn_out`` and ``mlp_out`` (like TransformerLens' ``get_act_patch_block_every``).

    One clean/corrupt pass serves all three. ``values`` is ``[3 layer pos]`` (``[3 layer]`` without
    ``per_pos``; two rows for attention-only models); the table's ``act`` column tells the rows apart.
    """
    task = one_shape(task, ONE_SHAPE)
    acts = ("resid_pre", "attn_out") if model.cfg.attn_only else ("resid_pre", "attn_out", "mlp_out")
    names = list(dict.fromkeys(name for act in acts for name in _cached_hooks(model, act, per_pos)))
    prep = prepare(model, task, names)
    results = [_patch(model, task, prep, act, per_pos, config) for act in acts]
    table = pd.concat([r.table for r in results], ignore_index=True)
    return ActivationPatchResult(torch.stack([r.values for r in results]), table, prep.clean_metric, prep.corrupt_metric)





def absent_acts(model: torch.nn.Module) -> tuple[str, ...]:
    """Return the activations of ``ACTS`` that ``model`` does not have: an attention-only model has no MLP,
    so no ``resid_mid`` (its attention output goes straight to ``resid_post``) and no ``mlp_out``."""
    return ("resid_mid", "mlp_out") if model.cfg.attn_only else ()


def _check_act(model: torch.nn.Module, act: str) -> None:
    """Raise ValueError for an unknown activation or one the model does not have."""
    if act not in ACTS:
        raise InputError(f"Unknown activation {act!r}; choose one of {', '.join(ACTS)}.")
    if act in absent_acts(model):
        raise InputError(f"This attention-only model has no {act!r}; patch 'resid_pre', 'attn_out' or a head activation.")


def _suffix(model: torch.nn.Module, act: str, per_pos: bool) -> bool:
    """Whether per-position variants of ``act`` run only positions from the patch on."""
    return per_pos and act != "pattern" and supports_suffix_reuse(model)


def _cached_hooks(model: torch.nn.Module, act: str, per_pos: bool) -> list[str]:
    """Hooks a patching run of ``act`` reads from the unpatched runs: layer starts, ``act``, and keys/values for suffix runs."""
    n_layers = model.cfg.n_layers
    names = [hook_name("resid_pre", layer) for layer in range(n_layers)] + [hook_name(act, layer) for layer in range(n_layers)]
    if _injects(model, act):  # the residual streams ``_inject`` starts from or adds to
        names += [_after(model, n_layers - 1)]
        if ENTRY[act] == ("mid", "add") and not model.cfg.attn_only:
            names += [hook_name("resid_mid", layer) for layer in range(n_layers)]
    return list(dict.fromkeys(names + (kv_hooks(n_layers) if _suffix(model, act, per_pos) else [])))


def _patch(model: torch.nn.Module, task: Task, prep: Prepared, act: str, per_pos: bool, config: PatchConfig) -> ActivationPatchResult:
    """Patch ``act`` everywhere, given the prepared clean/corrupt pass (which cached ``_cached_hooks``)."""
    cfg = model.cfg
    full_pos = task.clean.shape[1]
    names = [hook_name(act, layer) for layer in range(cfg.n_layers)]
    starts = [hook_name("resid_pre", layer) for layer in range(cfg.n_layers)]
    suffix = _suffix(model, act, per_pos)
    inject = _injects(model, act)
    cached = _cached_hooks(model, act, per_pos)
    small = prep.task
    n_pos, n_heads = small.clean.shape[1], cfg.n_heads
    denoise = config.direction == "denoise"
    other = corrupt_inputs(small, config)  # None for mean/zero ablation
    if config.corruption == "paired":
        other_acts = prep.corrupt_acts
    else:
        other_acts = cache_activations(model, other, cached) if other is not None else None
    base_inputs, base_acts = (other, other_acts) if denoise else (small.clean, prep.clean_acts)
    base_metric = prep.corrupt_metric if denoise else prep.clean_metric
    if denoise and config.corruption == "resample":
        with torch.no_grad():
            base_metric = small.score_read(model(other)[:, small.positions]).mean().item()
    axes = index_axes(act, per_pos)
    sizes = {"layer": cfg.n_layers, "pos": full_pos, "head": n_heads}
    rows = list(product(*(range(sizes[a]) for a in axes)))
    values = torch.full((len(rows),), base_metric)
    first_read = int(small.positions.min())
    batch = small.clean.shape[0]
    deferred = supports_prefix_reuse(model)  # unembed every variant's read residual at the end, in one pass
    done, reads = [], []
    read = set(small.positions.tolist())
    for layer in range(cfg.n_layers):
        todo = [i for i, row in enumerate(rows) if row[0] == layer and _can_reach(act, layer, dict(zip(axes, row)).get("pos"), cfg.n_layers, n_pos, read)]
        name = names[layer]
        clean_act = prep.clean_acts[name]
        patch = clean_act if denoise else ablate(clean_act, other_acts and other_acts[name], config.corruption)
        # Variants that first act at position p run positions >= min(p, first read position) only,
        # unless the saving is smaller than the cost of another forward call.
        firsts = [min(dict(zip(axes, rows[i]))["pos"], first_read) if suffix else 0 for i in todo]
        run_layer = _start_layer(act, layer) if inject else layer
        for first, members in suffix_groups(model, firsts, batch, run_layer, patch.device).items():
            group = [todo[i] for i in members]
            mask = patch_mask(act, axes, [rows[i] for i in group], n_heads, n_pos).to(patch.device)
            chunk = config.chunk or chunk_size(model, batch, n_pos - first, config.max_memory, len(group))

            def run(a: int, b: int, layer=layer, name=name, patch=patch, mask=mask, first=first, run_layer=run_layer) -> Tensor:
                n = b - a
                with torch.no_grad():
                    if inject:  # no hook: start from the residual stream with the patch in it
                        start = _inject(model, act, layer, mask[a:b], patch, base_acts[name], base_acts)
                        if run_layer == cfg.n_layers:
                            return final_resid(model, start, small.positions)
                        return run_from_layer(model, start, None, run_layer, small.positions, [], first, base_acts, False, prep.read_tokens,
                                              last_free=True)
                    hooks = [(name, _swap_hook(mask[a:b, first:], patch[:, first:], n))]
                    start = repeat_variants(base_acts[starts[layer]], n)
                    read = run_from_layer(model, start, repeat_variants(base_inputs, n), layer, small.positions, hooks, first, base_acts,
                                          not deferred, prep.read_tokens, last_free=layer < cfg.n_layers - 1)
                return read if deferred else metric_per_variant(prep.read_task, read, n).cpu()

            done += group
            reads.append(run_chunked(len(group), chunk, run, config.progress, f"patch {act} L{layer}"))
    if done:
        if deferred:
            chunk = config.chunk or chunk_size(model, batch, 1, config.max_memory, len(done))
            values[done] = metrics_from_reads(prep.read_task, model, torch.cat(reads), len(done), chunk, prep.read_tokens)
        else:
            values[done] = torch.cat(reads)
    raw = values - base_metric if denoise else base_metric - values
    table = pd.DataFrame(rows, columns=list(axes))
    table.insert(0, "act", act)
    table["metric"] = values.numpy()
    table["score"] = (raw if small.higher_is_better else -raw).numpy()
    if config.normalize:
        table["normalized"] = normalized(raw, prep.clean_metric, prep.corrupt_metric, task.name).numpy()
    shape = [sizes[a] for a in axes]
    return ActivationPatchResult(values.view(shape), table, prep.clean_metric, prep.corrupt_metric)
