"""TransformerLens' hook settings that patching reads, switched in this one place.

Edge patching reads each head's own q/k/v input (``use_split_qkv_input``), each MLP's input (``use_hook_mlp_in``)
and, for grouped-query models, every query head's own keys and values (``ungroup_grouped_query_attention``).
Models pathpatch loads come with the first two on (``enable_patching_hooks``); every engine call switches on
what is missing for its duration and restores the user's settings after (``hook_flags``).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def patching_flags(cfg, ungroup: bool = True) -> dict[str, bool]:
    """The flags patching needs on ``cfg``'s model: per-head inputs, MLP inputs (models with MLPs) and, with
    ``ungroup``, per-query-head keys and values (grouped-query models)."""
    flags = {"use_split_qkv_input": True}
    if not cfg.attn_only:
        flags["use_hook_mlp_in"] = True
    if ungroup and grouped(cfg):
        flags["ungroup_grouped_query_attention"] = True
    return flags


def grouped(cfg) -> bool:
    """Whether key/value heads are shared by several query heads (grouped-query attention)."""
    return getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads)


def set_flags(model: torch.nn.Module, flags: dict[str, bool]) -> dict[str, bool]:
    """Set each flag with the model's own setter (``set_use_split_qkv_input``...); return the values they replaced.
    Flags the model has no setter for (an older TransformerLens) are left alone."""
    before = {}
    for flag, on in flags.items():
        setter = getattr(model, f"set_{flag}", None)
        if setter is not None and bool(getattr(model.cfg, flag, False)) != on:
            before[flag] = bool(getattr(model.cfg, flag, False))
            setter(on)
    return before


@contextmanager
def hook_flags(model: torch.nn.Module, flags: dict[str, bool]) -> Iterator[None]:
    """Set ``flags`` for the duration, then put back each one that changed."""
    before = set_flags(model, flags)
    try:
        yield
    finally:
        set_flags(model, before)


def enable_patching_hooks(model: torch.nn.Module) -> torch.nn.Module:
    """Switch on the per-head input hooks (and MLP input hooks) that edge patching reads; return the model."""
    set_flags(model, patching_flags(model.cfg, ungroup=False))
    return model
