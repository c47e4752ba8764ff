"""Batched forward passes shared by every patching method.

Many patched variants of one task run as one forward pass: the variants are stacked along the batch
dimension (variant-major, ``[variant * batch, ...]``), each variant's hooks edit only its own slice,
and the metric is read per variant. These savings make a variant cheaper than a plain forward:

- *prefix reuse*: a patch that first acts at layer ``l`` starts from the cached residual stream at
  ``blocks.{l}.hook_resid_pre`` (TransformerLens' ``start_at_layer``), skipping layers ``< l``;
- *causal trimming*: positions after the last position the metric reads cannot affect it, so
  inputs are cut there;
- *reading only what the metric reads*: the final LayerNorm and unembedding run only at the read
  positions;
- *suffix reuse*: a patch at position ``p`` cannot change earlier positions, so only positions
  ``>= p`` run, with earlier keys and values from the unpatched run as a frozen key/value cache;
- *a read-only last layer*: when no patch acts in the last layer, its queries run at the read
  positions only; the positions before them contribute just their keys and values.

Chunks of variants are sized from a memory budget; on a CUDA out-of-memory error the chunk is halved
and retried, which gives identical results because variants never interact.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.names import hook_name
from pathpatch.patch.architecture import Architecture
from pathpatch.task.groups import trim_task
from pathpatch.task.task import Task

Hook = tuple[str, Callable]


@dataclass(frozen=True)
class Prepared:
    """A task trimmed to the positions the metric can see, with its clean and corrupt metrics.

    Attributes:
        task: The task with inputs cut after the last read position and non-negative positions.
        clean_metric: Task metric of the clean run.
        corrupt_metric: Task metric of the corrupt run.
        clean_per_prompt: The clean metric of each prompt ``[batch]`` (for bootstrap intervals).
        corrupt_per_prompt: The corrupt metric of each prompt ``[batch]``.
        clean_acts: Activations asked for, on the clean inputs (hook name -> tensor).
        corrupt_acts: The same activations on the corrupt inputs.
        read_task: The task that scores patched runs' read logits: for ``logit_diff`` a compact copy
            over two columns (``Task.compact``), else ``task`` itself.
        read_tokens: The vocabulary columns patched runs unembed ``[batch pos 2]``; None for all.
    """

    task: Task
    clean_metric: float
    corrupt_metric: float
    clean_per_prompt: Tensor
    corrupt_per_prompt: Tensor
    clean_acts: dict[str, Tensor]
    corrupt_acts: dict[str, Tensor]
    read_task: Task
    read_tokens: Tensor | None


def is_causal(model: torch.nn.Module) -> bool:
    """Whether attention looks only backwards, so later positions cannot change earlier ones.

    Causal trimming and suffix reuse rely on it; a bidirectional model runs every position.
    """
    return Architecture.of(model).causal


def supports_prefix_reuse(model: torch.nn.Module) -> bool:
    """Whether the model can start a forward pass at a layer (HookedTransformer can, the bridge cannot)."""
    return Architecture.of(model).starts_midway


def final_resid(model: torch.nn.Module, resid: Float[Tensor, "batch pos d_model"], positions: Tensor) -> Tensor:
    """Return the final residual stream at ``positions`` after the final LayerNorm ``[batch pos d_model]``."""
    x = resid[:, positions]
    return model.ln_final(x) if model.cfg.normalization_type is not None else x


def unembed(model: torch.nn.Module, x: Float[Tensor, "batch pos d_model"], tokens: Tensor | None = None) -> Tensor:
    """Logits ``[batch pos d_vocab]`` of a final residual, or only columns ``tokens`` ``[prompt pos k]``.

    ``x`` may stack several copies of the prompts variant-major; ``tokens`` holds one row per prompt.
    Not ``model.unembed(x)``: TransformerLens 3.9 copies ``W_U.T`` into a contiguous tensor on every
    call (154 MB for GPT-2), which dominated small patching runs.
    """
    W_U, b_U = model.unembed.W_U, model.unembed.b_U
    if tokens is None:
        return soft_cap(model, x @ W_U + b_U)
    columns = W_U.T[tokens]  # [prompt pos k d_model]
    stacked = x.view(-1, *columns.shape[:2], x.shape[-1])  # [variant prompt pos d_model]
    out = einsum(stacked, columns, "variant prompt pos d_model, prompt pos k d_model -> variant prompt pos k") + b_U[tokens]
    return soft_cap(model, out.flatten(0, 1))


def soft_cap(model: torch.nn.Module, logits: Tensor) -> Tensor:
    """Apply the model's output soft cap ``cap * tanh(logits / cap)`` (Gemma 2), as its own forward does.

    The cap acts on each logit alone, so capping only the columns a metric reads is exact.
    """
    cap = Architecture.of(model).soft_cap
    return logits if cap is None else cap * torch.tanh(logits / cap)


def read_logits(model: torch.nn.Module, resid: Float[Tensor, "batch pos d_model"], positions: Tensor, tokens: Tensor | None = None) -> Tensor:
    """Return logits ``[batch pos d_vocab]`` (or columns ``tokens``) at ``positions`` from the final residual stream."""
    return unembed(model, final_resid(model, resid, positions), tokens)


def take_columns(logits: Tensor, tokens: Tensor | None) -> Tensor:
    """Columns ``tokens`` ``[prompt pos k]`` of full read logits ``[variant * prompt pos d_vocab]``."""
    if tokens is None:
        return logits
    return logits.gather(-1, tokens.repeat(logits.shape[0] // tokens.shape[0], 1, 1))


def metrics_from_reads(
    task: Task, model: torch.nn.Module, reads: Tensor, n_variants: int, chunk: int, tokens: Tensor | None = None
) -> Float[Tensor, " variant"]:
    """Unembed final residuals ``[variant * batch pos d_model]`` (variant-major) ``chunk`` variants at a time; return each variant's metric.

    Deferring the unembedding lets many small patching runs share one pass over ``W_U``.
    """
    batch = task.clean.shape[0]
    with torch.no_grad():
        out = [metric_per_variant(task, unembed(model, reads[a * batch : min(a + chunk, n_variants) * batch], tokens), min(chunk, n_variants - a)).cpu()
               for a in range(0, n_variants, chunk)]
    return torch.cat(out) if out else torch.zeros(0)


def supports_suffix_reuse(model: torch.nn.Module) -> bool:
    """Whether earlier positions' keys and values can be fed as a frozen cache (``Architecture.suffix_reuse``)."""
    return Architecture.of(model).suffix_reuse


def pos_embed(model: torch.nn.Module, first: int, n_pos: int, batch: int) -> Tensor | None:
    """Shortformer positional embeddings of positions ``first..first + n_pos`` ``[batch pos d_model]``, else None.

    Shortformer models add these to every head's query and key inputs after ``ln1``, never to the
    residual stream; a run that starts mid-way must hand them to TransformerLens itself.
    """
    if model.cfg.positional_embedding_type != "shortformer":
        return None
    return model.pos_embed.W_pos[first : first + n_pos][None].expand(batch, -1, -1)


def kv_hooks(n_layers: int) -> list[str]:
    """Hook names of every layer's keys and values (what a suffix run needs of earlier positions)."""
    return [hook_name(act, layer) for layer in range(n_layers) for act in ("k", "v")]


def frozen_cache(model: torch.nn.Module, acts: dict[str, Tensor], first: int, n_variants: int, layer: int):
    """A frozen TransformerLens key/value cache of positions ``< first`` of ``acts``, once per variant.

    Layers before ``layer`` are never run, so their entries stay empty.
    """
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    entries = []
    for index in range(model.cfg.n_layers):
        stop = first if index >= layer else 0
        k, v = (repeat_variants(acts[hook_name(a, index)][:, :stop], n_variants) for a in ("k", "v"))
        entries.append(TransformerLensKeyValueCacheEntry(k, v, frozen=True))
    mask = torch.ones(entries[-1].past_keys.shape[:2], dtype=torch.long, device=entries[-1].past_keys.device)
    return TransformerLensKeyValueCache(entries, mask, frozen=True)


def supports_read_suffix(model: torch.nn.Module, first: int, positions: Tensor) -> bool:
    """Whether a run of positions ``first..`` can run its last layer at the read positions only (given
    no hook acts there): the frozen-cache conditions hold and some position before the first read runs."""
    return supports_suffix_reuse(model) and int(positions.min()) > first


def keys_values(model: torch.nn.Module, layer: int, resid: Float[Tensor, "batch pos d_model"], first: int = 0) -> tuple[Tensor, Tensor]:
    """Keys and values ``[batch pos head d_head]`` that ``layer`` computes from ``resid`` (positions ``first..``),
    as ``hook_k``/``hook_v`` record them."""
    block = model.blocks[layer]
    attn, x = block.attn, block.ln1(resid)
    pos = pos_embed(model, first, resid.shape[1], resid.shape[0])
    key_input = x if pos is None else x + pos
    project = lambda x, W, b: einsum(x, W, "batch pos d_model, head d_model d_head -> batch pos head d_head") + b  # noqa: E731
    return project(key_input, attn.W_K, attn.b_K), project(x, attn.W_V, attn.b_V)


def run_blocks(model: torch.nn.Module, start: Float[Tensor, "batch pos d_model"], layer: int, stop: int, first: int = 0, cache=None) -> Tensor:
    """Run blocks ``layer..stop - 1`` on ``start`` (positions ``first..``, earlier ones in ``cache``); return the residual."""
    pos = pos_embed(model, first, start.shape[1], start.shape[0])
    return model(start, start_at_layer=layer, stop_at_layer=stop, past_kv_cache=cache, shortformer_pos_embed=pos)


def read_suffix(
    model: torch.nn.Module, start: Float[Tensor, "batch pos d_model"], layer: int, first: int, tail: int, cache
) -> Float[Tensor, "batch tail_pos d_model"]:
    """Run ``start`` (positions ``first..``, earlier ones in the frozen ``cache`` or None) from ``layer``,
    with the last layer at positions ``tail..`` only; return its residual output.

    The last layer's queries at positions before ``tail`` (the first read position) feed nothing the
    metric reads, so that layer needs only their keys and values: they are projected here and handed
    to TransformerLens' block as a frozen cache, in front of the read positions.
    """
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    last = model.cfg.n_layers - 1
    resid = run_blocks(model, start, layer, last, first, cache)  # [batch pos-first d_model]
    keys, values = keys_values(model, last, resid[:, : tail - first], first)
    if cache is not None:
        keys, values = torch.cat([cache[last].past_keys, keys], 1), torch.cat([cache[last].past_values, values], 1)
    rest = resid[:, tail - first :]
    return model.blocks[last](rest, past_kv_cache_entry=TransformerLensKeyValueCacheEntry(keys, values, frozen=True),
                              shortformer_pos_embed=pos_embed(model, tail, rest.shape[1], rest.shape[0]))


def run_from_layer(
    model: torch.nn.Module,
    start: Float[Tensor, "batch pos d_model"] | None,
    inputs: Tensor | None,
    layer: int,
    positions: Tensor,
    hooks: Sequence[Hook],
    first: int = 0,
    past: dict[str, Tensor] | None = None,
    logits: bool = True,
    tokens: Tensor | None = None,
    last_free: bool = False,
) -> Tensor:
    """Run the model from ``blocks.{layer}.hook_resid_pre`` = ``start`` with ``hooks``; return read logits.

    With ``first > 0`` only positions ``>= first`` run: earlier positions cannot change (attention is
    causal), so their keys and values come from ``past`` (``hook_k``/``hook_v`` of the unpatched run,
    ``[batch pos head d_head]`` per variant-free batch) as a frozen cache, and hooks see activations of
    positions ``first..`` only. ``positions`` must then all be ``>= first``. With ``logits=False``
    (models with prefix reuse only) the final residual at ``positions`` is returned, to unembed later;
    ``tokens`` ``[prompt pos k]`` limits the logits to those vocabulary columns (``Prepared.read_tokens``).
    Models that cannot start mid-way (TransformerBridge) run from ``inputs`` instead, which gives the same
    result because every hook acts at ``layer`` or later. ``last_free`` says no hook acts in the last
    layer, which then runs the read positions only (``read_suffix``).
    """
    with model.hooks(fwd_hooks=list(hooks)):
        if start is not None and supports_prefix_reuse(model):
            cache = frozen_cache(model, past, first, start.shape[0] // past[hook_name("k", 0)].shape[0], layer) if first > 0 else None
            if last_free and supports_read_suffix(model, first, positions):
                tail = int(positions.min())
                resid = read_suffix(model, start[:, first:], layer, first, tail, cache)
            else:
                tail = first
                resid = run_blocks(model, start[:, first:], layer, model.cfg.n_layers, first, cache)
            positions = positions - tail  # index into the positions that ran
            return read_logits(model, resid, positions, tokens) if logits else final_resid(model, resid, positions)
        return take_columns(model(inputs)[:, positions], tokens)


def cache_activations(model: torch.nn.Module, inputs: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
    """Return the named activations of one plain forward pass on ``inputs``."""
    wanted = set(names)
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names_filter=lambda name: name in wanted, return_type=None)
    missing = wanted - set(cache.keys())
    if missing:
        raise InputError(_missing_hooks(missing))
    return {name: cache[name] for name in names}


def metric_per_prompt(task: Task, read: Tensor, n_variants: int) -> Tensor:
    """Return the task metric ``[variant batch]`` of each prompt of each variant from stacked read logits.

    Metrics are computed in float32 whatever the model's dtype (half-precision logits are upcast).
    """
    return task.score_read(read.float()).view(n_variants, -1)  # [variant batch]


def metric_per_variant(task: Task, read: Tensor, n_variants: int) -> Float[Tensor, " batch"]:
    """Return the task metric of each variant (averaged over prompts) from read logits ``[variant * batch pos d_vocab]``."""
    return metric_per_prompt(task, read, n_variants).mean(-1)


def prepare(model: torch.nn.Module, task: Task, names: Sequence[str] = ()) -> Prepared:
    """Trim ``task``, move it to the model's device, measure clean and corrupt metrics, cache ``names``.

    Clean and corrupt inputs run as one batch of twice the size: one forward pass gives both metrics and
    both sets of activations.
    """
    task.check_model(model)
    device = next(model.parameters()).device
    task = trim_task(task, cut=is_causal(model)).to(device)
    dtype = getattr(model.cfg, "dtype", torch.float32)
    if task.clean.is_floating_point() and task.clean.dtype != dtype:  # vector inputs follow a half-precision model
        task = replace(task, clean=task.clean.to(dtype), corrupt=task.corrupt.to(dtype))
    batch = task.clean.shape[0]
    wanted = set(names)
    both = torch.cat([task.clean, task.corrupt])
    compact = task.compact()  # None for every metric but logit_diff
    tokens = compact[1] if compact is not None else None
    with torch.no_grad():
        if supports_prefix_reuse(model):  # unembed only the read positions (and columns)
            resid, cache = model.run_with_cache(both, names_filter=lambda name: name in wanted, stop_at_layer=model.cfg.n_layers)
            read = read_logits(model, resid, task.positions, tokens)
        else:
            logits, cache = model.run_with_cache(both, names_filter=lambda name: name in wanted)
            read = take_columns(logits[:, task.positions], tokens)
    read = read.float()
    missing = wanted - set(cache.keys())
    if missing:
        raise InputError(_missing_hooks(missing))
    if task.metric == "kl" and task.reference is None:
        task = replace(task, reference=read[:batch].log_softmax(-1))
    read_task = compact[0] if compact is not None else task  # kl: the task now holding its reference
    clean_each, corrupt_each = read_task.score_read(read[:batch]), read_task.score_read(read[batch:])
    clean, corrupt = clean_each.mean().item(), corrupt_each.mean().item()
    for label, value in (("clean", clean), ("corrupt", corrupt)):
        if value != value or value in (float("inf"), float("-inf")):
            raise InputError(
                f"Task '{task.name}': the {label} run's metric is {value}; check the inputs and the model "
                "weights for NaN/inf (e.g. a half-precision overflow)."
            )
    clean_acts = {name: cache[name][:batch] for name in names}
    corrupt_acts = {name: cache[name][batch:] for name in names}
    return Prepared(task, clean, corrupt, clean_each.cpu(), corrupt_each.cpu(), clean_acts, corrupt_acts, read_task, tokens)


def _missing_hooks(missing: set[str]) -> str:
    """The message for hooks that never ran."""
    return (
        f"Hooks {sorted(missing)} never ran; load the model via pathpatch.models.load_model(), which switches "
        "on use_split_qkv_input and use_hook_mlp_in (for 'result' patching also call model.set_use_attn_result(True))."
    )


def repeat_variants(x: Tensor, n_variants: int) -> Tensor:
    """Stack ``n_variants`` copies of ``x`` along the batch dimension (variant-major)."""
    return x.repeat(n_variants, *([1] * (x.ndim - 1)))
