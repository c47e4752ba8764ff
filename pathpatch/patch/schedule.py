"""How a run is cut to fit: the activation memory budget, chunks of prompts and variants sized to it, halving
a chunk that still runs out of memory, and which variants share one suffix run (by a FLOP cost model).

The budget (``memory_budget``) is the one estimate of activation memory the command line's preflight check
shares (``layer_floats``); runs chunk rather than crash, and a chunk that fails with out-of-memory is halved
until it fits or cannot shrink further.
"""

import logging
from collections import Counter
from collections.abc import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# What one extra forward call costs, in floating-point operations of useful work it could have done
# (CPU: ~5 ms of Python and hook overhead at ~40 GFLOP/s; CUDA: ~2 ms of launches at ~25 TFLOP/s).
CALL_COST_FLOPS = {"cpu": 2e8, "cuda": 5e10}


def token_flops(model: torch.nn.Module, layers: int) -> float:
    """Approximate floating-point operations to run one token through ``layers`` blocks."""
    cfg = model.cfg
    return 2.0 * layers * (4 * cfg.d_model * cfg.n_heads * cfg.d_head + 2 * cfg.d_model * (cfg.d_mlp or 0))


def merge_suffixes(counts: dict[int, int], position_cost: float, call_cost: float) -> dict[int, int]:
    """Map each suffix start to the start its variants run from.

    ``counts`` holds how many variants start at each position. Going from the latest start down, a
    start joins the next earlier one while the extra positions its variants would then run cost less
    (``position_cost`` per variant and position) than one more forward call (``call_cost``).
    """
    starts = sorted(counts, reverse=True)
    mapping: dict[int, int] = {}
    group = [starts[0]] if starts else []
    for start in starts[1:]:
        extra = sum(counts[m] * (m - start) for m in group) * position_cost
        if extra >= call_cost:
            mapping.update({m: group[-1] for m in group})
            group = []
        group.append(start)
    mapping.update({m: group[-1] for m in group})
    return mapping


def suffix_groups(model: torch.nn.Module, firsts: list[int], batch: int, layer: int, device: torch.device) -> dict[int, list[int]]:
    """Group variants (indices into ``firsts``, each variant's first patched position) by the position
    their run starts from, in increasing order; starts that save less than a forward call are merged
    (``merge_suffixes``, priced for runs from ``layer`` on ``device``)."""
    call_cost = CALL_COST_FLOPS.get(device.type, CALL_COST_FLOPS["cuda"])
    merged = merge_suffixes(Counter(firsts), batch * token_flops(model, model.cfg.n_layers - layer), call_cost)
    groups: dict[int, list[int]] = {}
    for i, first in enumerate(firsts):
        groups.setdefault(merged[first], []).append(i)
    return dict(sorted(groups.items()))


CPU_MEMORY_BUDGET = 1.5e9  # bytes of activations at once on CPU, unless told otherwise (a 135M-parameter LM then peaks below 3 GB)


def memory_budget(max_memory: int | float | None, device: torch.device) -> int | float:
    """Bytes one forward pass may use: ``max_memory``, or by default half the free memory of a CUDA
    device (what is free when asked) and ``CPU_MEMORY_BUDGET`` elsewhere."""
    if max_memory is not None:
        return max_memory
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / 2
    return CPU_MEMORY_BUDGET


def layer_floats(cfg, n_pos: int, copies: int) -> int:
    """Activation values one sequence of ``n_pos`` positions holds per layer of a forward pass: residual stream and
    norms, ``copies`` per-head q/k/v inputs of d_model, attention scores, q/k/v/z, MLP hidden states. The one
    per-layer estimate behind the variant chunks here and the command line's memory check."""
    return n_pos * (4 * copies * cfg.d_model + cfg.n_heads * (n_pos + 4 * cfg.d_head) + 4 * (cfg.d_mlp or 0) + 8 * cfg.d_model)


def chunk_size(model: torch.nn.Module, batch: int, n_pos: int, max_memory: int | float | None, n_variants: int) -> int:
    """Return how many variants fit in ``max_memory`` bytes (None: ``memory_budget``'s default), from a
    per-sequence activation estimate.

    Per-head input copies (``use_split_qkv_input``) count only while the flag is on.
    """
    cfg = model.cfg
    copies = cfg.n_heads if getattr(cfg, "use_split_qkv_input", False) else 1
    bytes_per_variant = 4 * batch * layer_floats(cfg, n_pos, copies) * 3  # three layers' worth live at once, float32
    budget = memory_budget(max_memory, next(model.parameters()).device)
    return max(1, min(n_variants, int(budget // max(bytes_per_variant, 1))))


def run_chunked(
    n_variants: int, chunk: int, run: Callable[[int, int], Tensor], progress: bool = False, desc: str = "patching"
) -> Tensor:
    """Run ``run(start, stop)`` over chunks of ``chunk`` variants and concatenate the results.

    In a distributed run each rank takes every ``world_size``-th chunk and the results are gathered
    (``distributed``); chunk boundaries do not depend on the number of processes, so neither do the
    numbers. A chunk that runs out of CUDA memory is run in halves, which gives identical results.
    """
    from pathpatch.patch.distributed import gather_chunks, my_chunks
    from pathpatch.progress import Progress

    bounds = [(a, min(a + chunk, n_variants)) for a in range(0, n_variants, chunk)]
    mine = my_chunks(len(bounds))
    bar = Progress(sum(b - a for a, b in (bounds[i] for i in mine)), desc, bar=progress)
    local, size = {}, chunk
    for i in mine:
        a, b = bounds[i]
        local[i], size = _run_halving(run, a, b, size)
        bar.update(b - a)
    bar.close()
    results = gather_chunks(local, len(bounds))
    return torch.cat(results) if results else torch.zeros(0)


def _run_halving(run: Callable[[int, int], Tensor], a: int, b: int, size: int) -> tuple[Tensor, int]:
    """Run variants ``a..b`` in pieces of at most ``size``, halving it on CUDA out-of-memory; return the
    joined result and the piece size that worked."""
    parts, start = [], a
    while start < b:
        stop = min(start + size, b)
        try:
            parts.append(run(start, stop))
        except torch.OutOfMemoryError:
            if size == 1:
                raise
            size = max(1, size // 2)
            log.warning("out of memory; retrying with %d variants per forward pass", size)
            torch.cuda.empty_cache()
            continue
        start = stop
    return torch.cat(parts), size
