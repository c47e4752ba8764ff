"""Batched forward passes shared by every patching method.

Many patched variants of one task run as one forward pass: the variants are stacked along the batch
dimension (variant-major, ``[variant * batch, ...]``), each variant's hooks edit only its own slice,
and the metric is read per variant. Three savings make a variant cheaper than a plain forward:

- *prefix reuse*: a patch that first acts at layer ``l`` starts from the cached residual stream at
  ``blocks.{l}.hook_resid_pre`` (TransformerLens' ``start_at_layer``), skipping layers ``< l``;
- *causal trimming*: positions after the last position the metric reads cannot affect it, so
  inputs are cut there;
- *reading only what the metric reads*: the final LayerNorm and unembedding run only at the read
  positions.

Chunks of variants are sized from a memory budget; on a CUDA out-of-memory error the chunk is halved
and retried, which gives identical results because variants never interact.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from jaxtyping import Float
from torch import Tensor

from pathpatch.models.tasks import Task

log = logging.getLogger(__name__)

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
    """

    task: Task
    clean_metric: float
    corrupt_metric: float
    clean_per_prompt: Tensor
    corrupt_per_prompt: Tensor
    clean_acts: dict[str, Tensor]
    corrupt_acts: dict[str, Tensor]


def trim_task(task: Task) -> Task:
    """Return ``task`` with non-negative read positions and inputs cut after the last one."""
    n_pos = task.clean.shape[1]
    positions = task.positions % n_pos
    end = int(positions.max()) + 1
    return replace(task, clean=task.clean[:, :end], corrupt=task.corrupt[:, :end], positions=positions)


def supports_prefix_reuse(model: torch.nn.Module) -> bool:
    """Whether the model can start a forward pass at a layer (HookedTransformer can, the bridge cannot)."""
    from transformer_lens import HookedTransformer

    return isinstance(model, HookedTransformer)


def read_logits(model: torch.nn.Module, resid: Float[Tensor, "batch pos d_model"], positions: Tensor) -> Tensor:
    """Return logits ``[batch pos d_vocab]`` at ``positions`` from the final residual stream."""
    x = resid[:, positions]  # [batch pos d_model]
    if model.cfg.normalization_type is not None:
        x = model.ln_final(x)
    return model.unembed(x)


def run_from_layer(
    model: torch.nn.Module,
    start: Float[Tensor, "batch pos d_model"] | None,
    inputs: Tensor,
    layer: int,
    positions: Tensor,
    hooks: Sequence[Hook],
) -> Tensor:
    """Run the model from ``blocks.{layer}.hook_resid_pre`` = ``start`` with ``hooks``; return read logits.

    Models that cannot start mid-way (TransformerBridge) run from ``inputs`` instead, which gives the same
    result because every hook acts at ``layer`` or later.
    """
    with model.hooks(fwd_hooks=list(hooks)):
        if start is not None and supports_prefix_reuse(model):
            resid = model(start, start_at_layer=layer, stop_at_layer=model.cfg.n_layers)
            return read_logits(model, resid, positions)
        return model(inputs)[:, positions]


def cache_activations(model: torch.nn.Module, inputs: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
    """Return the named activations of one plain forward pass on ``inputs``."""
    wanted = set(names)
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names_filter=lambda name: name in wanted, return_type=None)
    missing = wanted - set(cache.keys())
    if missing:
        raise ValueError(_missing_hooks(missing))
    return {name: cache[name] for name in names}


def metric_per_prompt(task: Task, read: Tensor, n_variants: int) -> Tensor:
    """Return the task metric ``[variant batch]`` of each prompt of each variant from stacked read logits."""
    return task.score_read(read).view(n_variants, -1)  # [variant batch]


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
    task = trim_task(task).to(device)
    dtype = getattr(model.cfg, "dtype", torch.float32)
    if task.clean.is_floating_point() and task.clean.dtype != dtype:  # vector inputs follow a half-precision model
        task = replace(task, clean=task.clean.to(dtype), corrupt=task.corrupt.to(dtype))
    batch = task.clean.shape[0]
    wanted = set(names)
    with torch.no_grad():
        logits, cache = model.run_with_cache(torch.cat([task.clean, task.corrupt]), names_filter=lambda name: name in wanted)
    missing = wanted - set(cache.keys())
    if missing:
        raise ValueError(_missing_hooks(missing))
    if task.metric == "kl" and task.reference is None:
        task = task.with_reference(logits[:batch])
    read = logits[:, task.positions]
    clean_each, corrupt_each = task.score_read(read[:batch]), task.score_read(read[batch:])
    clean, corrupt = clean_each.mean().item(), corrupt_each.mean().item()
    for label, value in (("clean", clean), ("corrupt", corrupt)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(
                f"Task '{task.name}': the {label} run's metric is {value}; check the inputs and the model "
                "weights for NaN/inf (e.g. a half-precision overflow)."
            )
    clean_acts = {name: cache[name][:batch] for name in names}
    corrupt_acts = {name: cache[name][batch:] for name in names}
    return Prepared(task, clean, corrupt, clean_each.cpu(), corrupt_each.cpu(), clean_acts, corrupt_acts)


def _missing_hooks(missing: set[str]) -> str:
    """The message for hooks that never ran."""
    return (
        f"Hooks {sorted(missing)} never ran; load the model via pathpatch.models.load_model(), which switches "
        "on use_split_qkv_input and use_hook_mlp_in (for 'result' patching also call model.set_use_attn_result(True))."
    )


def chunk_size(model: torch.nn.Module, batch: int, n_pos: int, max_memory: int | float, n_variants: int) -> int:
    """Return how many variants fit in ``max_memory`` bytes, from a per-sequence activation estimate."""
    cfg = model.cfg
    per_layer = n_pos * (4 * cfg.n_heads * cfg.d_model + cfg.n_heads * (n_pos + 4 * cfg.d_head) + 4 * (cfg.d_mlp or 0) + 8 * cfg.d_model)
    bytes_per_variant = 4 * batch * per_layer * 3  # three layers' worth live at once, float32
    return max(1, min(n_variants, int(max_memory // max(bytes_per_variant, 1))))


def run_chunked(
    n_variants: int, chunk: int, run: Callable[[int, int], Tensor], progress: bool = False, desc: str = "patching"
) -> Tensor:
    """Run ``run(start, stop)`` over chunks, halving the chunk on CUDA out-of-memory; concatenate results."""
    from tqdm.auto import tqdm

    results, start = [], 0
    bar = tqdm(total=n_variants, desc=desc, disable=not progress, leave=False)
    while start < n_variants:
        stop = min(start + chunk, n_variants)
        try:
            results.append(run(start, stop))
        except torch.OutOfMemoryError:
            if chunk == 1:
                raise
            chunk = max(1, chunk // 2)
            log.warning("out of memory; retrying with %d variants per forward pass", chunk)
            torch.cuda.empty_cache()
            continue
        bar.update(stop - start)
        start = stop
    bar.close()
    return torch.cat(results) if results else torch.zeros(0)


def repeat_variants(x: Tensor, n_variants: int) -> Tensor:
    """Stack ``n_variants`` copies of ``x`` along the batch dimension (variant-major)."""
    return x.repeat(n_variants, *([1] * (x.ndim - 1)))
