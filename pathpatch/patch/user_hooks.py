"""Hooks a model brings with it: found before any patching run and refused, because the engine cannot honour them.

pathpatch puts hooks on a model only for the length of one run (``with model.hooks(...)``,
``run_with_cache``), so when a patching, attribution or activation-patching run begins, any hook the
model holds is its owner's: a TransformerLens hook point's hook (``add_hook``, or ``add_perma_hook``,
which survives ``reset_hooks()``) or a plain torch forward, pre-forward or backward hook on any
submodule. Such hooks often keep state between hook points, as in exercises that cache a padding mask
from the tokens at ``hook_tokens`` and apply it at every ``blocks.{l}.attn.hook_attn_scores``. The engine
cannot run them as their author meant: it stacks patched variants on the batch dimension (state kept
for one batch has the wrong size) and starts runs at a layer's residual stream (hooks before that layer
never fire, so what they keep is stale or missing). ``refuse_user_hooks`` therefore refuses such a model
with the hooks' places, their functions and the fix, rather than crash or score edges of another model.

Whole-model runs that only read activations (``patch/lens.py``: direct logit attribution and the
logit lens; attention patterns) run the model as its owner built it, hooks included, so they are exact
and do not check. Hooks that TransformerLens or Hugging Face transformers install themselves (a
``TransformerBridge``'s capture hooks, transformers' output capturing) are part of the model's machinery,
not the user's, and are not reported.
"""

import functools
from dataclasses import dataclass

import torch

from pathpatch.errors import InputError, listed

# torch's per-module hook tables and the kind of hook each holds
TORCH_HOOKS = (
    ("_forward_pre_hooks", "forward pre-hook"),
    ("_forward_hooks", "forward hook"),
    ("_backward_pre_hooks", "backward pre-hook"),
    ("_backward_hooks", "backward hook"),
)
SHOWN = 3  # places listed per hook function; the rest are counted
LIBRARIES = ("transformer_lens", "transformers")  # packages whose own hooks are part of a model's machinery


@dataclass(frozen=True)
class UserHook:
    """One hook found on a model.

    Attributes:
        place: The hook point or submodule it sits on (``hook_tokens``, ``blocks.0.attn``; ``model`` for the root).
        kind: What kind of hook: ``permanent forward hook``, ``forward hook``, ``forward pre-hook`` ...
        function: The hook's function and where it is defined (``mask_cache at f.py:7``).
    """

    place: str
    kind: str
    function: str


def find_user_hooks(model: torch.nn.Module) -> list[UserHook]:
    """Return every hook on ``model`` and its submodules that its libraries did not install, in module order."""
    from transformer_lens.hook_points import HookPoint  # here, not at import: drawing a saved circuit needs no TransformerLens

    found = []
    for name, module in model.named_modules():
        place = name or "model"
        seen = set()  # torch handles behind hook-point hooks, reported once, as hook-point hooks
        if isinstance(module, HookPoint):
            for direction, handles in (("forward", module.fwd_hooks), ("backward", module.bwd_hooks)):
                for handle in handles:
                    seen.add(handle.hook.id)
                    function = handle.user_hook  # the user's function, before TransformerLens wraps it for torch
                    if not _installed_by_library(function):
                        kind = f"{'permanent ' if handle.is_permanent else ''}{direction} hook"
                        found.append(UserHook(place, kind, _describe(function)))
        for table, kind in TORCH_HOOKS:
            for hook_id, function in getattr(module, table, {}).items():
                if hook_id not in seen and not _installed_by_library(function):
                    found.append(UserHook(place, kind, _describe(function)))
    return found


def refuse_user_hooks(model: torch.nn.Module) -> None:
    """Raise InputError naming the hooks ``model`` carries, if any (see the module docstring for why).

    Raises:
        InputError: The model has hooks pathpatch did not add.
    """
    found = find_user_hooks(model)
    if not found:
        return
    groups: dict[tuple[str, str], list[str]] = {}
    for hook in found:
        places = groups.setdefault((hook.kind, hook.function), [])
        if hook.place not in places:
            places.append(hook.place)
    where = "; ".join(f"{kind}{'s' if len(places) > 1 else ''} at {listed(places, SHOWN)} ({function})"
                       for (kind, function), places in groups.items())
    raise InputError(
        f"The model carries hooks pathpatch did not add: {where}. pathpatch cannot patch around them: it stacks patched "
        "variants on the batch and starts runs mid-model, so what such a hook keeps between runs or hook points (a cached "
        "padding mask, say) has the wrong batch size or is stale. Remove them (model.reset_hooks(including_permanent=True), "
        "or handle.remove() for torch hooks) and fold what they do into the model or the task's prompts (a prompt file "
        "may hold unpadded prompts of several lengths: edges are patched in groups of one length); `pathpatch lens` reads "
        "such a model as it is."
    )


def _unwrap(function: object) -> object:
    """The function under ``functools.partial`` layers and bound methods."""
    while isinstance(function, functools.partial):
        function = function.func
    return getattr(function, "__func__", function)


def _installed_by_library(function: object) -> bool:
    """Whether a hook's function comes from TransformerLens or transformers (their machinery, not a user's hook)."""
    module = getattr(_unwrap(function), "__module__", None) or ""
    return module.split(".")[0] in LIBRARIES


def _describe(function: object) -> str:
    """A hook function's name and where it is defined: ``mask_cache at /path/f.py:7``."""
    inner = _unwrap(function)
    name = getattr(inner, "__qualname__", None) or type(inner).__name__
    code = getattr(inner, "__code__", None)
    return f"{name} at {code.co_filename}:{code.co_firstlineno}" if code is not None else name
