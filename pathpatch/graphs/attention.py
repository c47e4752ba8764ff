"""Attention measurements for hypothesis claims: where a head looks, and what a forced pattern does.

A head's attention pattern ``[batch dest src]`` is read from ``hook_pattern``. A claim names the
destination positions it is about (all, the task's read positions, or a list) and what the head
should attend to from each of them:

- ``offset`` K: position ``p - K`` (``previous_token`` is K = 1);
- ``token`` T: every position holding token T;
- ``to`` a list of positions: that set (negative positions count from the end);
- ``to`` a rule that picks positions from the prompt itself: ``smallest`` / ``largest`` (the smallest
  or largest token among ``among`` positions), ``smallest_larger`` / ``largest_smaller`` (the smallest
  token larger than the destination's own token, or the largest smaller one: document 002's sorting
  heads), ``mismatch`` (positions where clean and corrupt differ), ``same_token`` (earlier positions
  holding the destination's token).

The value is the attention mass on the chosen positions, averaged over destinations and prompts
(destinations where a rule picks nothing are left out). ``uniform`` measures instead the total-variation
distance between each row and the uniform distribution over the positions it may attend to.
``forced_pattern`` runs the model with a head's attention at some destinations replaced by one-hot
attention to a position: document 003's "simplified model".
"""

import torch
from torch import Tensor

from pathpatch.errors import InputError, listed
from pathpatch.models.tasks import Task
from pathpatch.names import hook_name

RULES = ("smallest", "largest", "smallest_larger", "largest_smaller", "mismatch", "same_token")


def pattern_of(model: torch.nn.Module, layer: int, head: int, inputs: Tensor) -> Tensor:
    """The head's attention pattern ``[batch dest src]`` on ``inputs``."""
    name = hook_name("pattern", layer)
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs.to(next(model.parameters()).device), names_filter=name)
    return cache[name][:, head].float().cpu()


def destinations(spec: "str | list[int]", task: Task, n_pos: int) -> Tensor:
    """Destination positions ``[dest]``: ``all``, ``read`` (the task's read positions) or a list."""
    if spec == "all":
        return torch.arange(n_pos)
    if spec == "read":
        return task.positions.cpu() % n_pos
    return _positions(spec, n_pos, "positions")


def _positions(values: list[int], n_pos: int, key: str) -> Tensor:
    bad = [p for p in values if not -n_pos <= p < n_pos]
    if bad:
        raise InputError(f"{key} = {listed(values)}: positions {listed(bad)} lie outside prompts of length {n_pos}; use 0..{n_pos - 1} or negatives from the end.")
    return torch.tensor(values) % n_pos


def target_mask(rule: "str | list[int]", task: Task, dest: Tensor, among: "list[int] | None") -> Tensor:
    """Which source positions each destination should attend to ``[batch dest src]`` (bool)."""
    tokens = task.clean.cpu()  # [batch pos]
    batch, n_pos = tokens.shape
    allowed = torch.zeros(n_pos, dtype=torch.bool)
    allowed[_positions(among, n_pos, "among") if among is not None else torch.arange(n_pos)] = True
    if not isinstance(rule, str):
        mask = torch.zeros(batch, len(dest), n_pos, dtype=torch.bool)
        mask[:, :, _positions(rule, n_pos, "to")] = True
        return mask
    if rule not in RULES:
        raise InputError(f"Unknown attention rule {rule!r}; choose one of {', '.join(RULES)} or give a list of positions.")
    src = tokens[:, None, :].expand(batch, len(dest), n_pos)  # [batch dest src]
    own = tokens[:, dest][:, :, None]  # [batch dest 1]
    if rule == "mismatch":
        return (task.clean.cpu() != task.corrupt.cpu())[:, None, :].expand(batch, len(dest), n_pos) & allowed
    if rule == "same_token":
        earlier = torch.arange(n_pos)[None, None, :] < dest[None, :, None]
        return (src == own) & earlier & allowed
    big = torch.iinfo(tokens.dtype).max
    if rule in ("smallest", "smallest_larger"):
        keep = allowed & (src > own if rule == "smallest_larger" else True)
        best = torch.where(keep, src, big).min(-1, keepdim=True).values  # [batch dest 1]
        return keep & (src == best)
    keep = allowed & (src < own if rule == "largest_smaller" else True)
    best = torch.where(keep, src, -big).max(-1, keepdim=True).values
    return keep & (src == best)


def attention_to(pattern: Tensor, dest: Tensor, mask: Tensor) -> Tensor:
    """Per-prompt attention mass on the masked sources ``[batch]``, averaged over destinations that have any.

    A prompt where no destination has a target has no such mass: NaN (undefined), never 0.
    """
    mass = (pattern[:, dest] * mask).sum(-1)  # [batch dest]
    has = mask.any(-1).to(mass.dtype)  # [batch dest]
    count = has.sum(-1)  # [batch]
    return torch.where(count > 0, (mass * has).sum(-1) / count.clamp(min=1), torch.full_like(count, float("nan")))


def distance_from_uniform(pattern: Tensor, dest: Tensor, causal: bool) -> Tensor:
    """Per-prompt total-variation distance between attention rows and uniform attention ``[batch]``.

    Causal rows are compared with the uniform distribution over positions ``0..p``.
    """
    n_pos = pattern.shape[-1]
    allowed = (torch.arange(n_pos)[None, :] <= dest[:, None]) if causal else torch.ones(len(dest), n_pos, dtype=torch.bool)
    uniform = allowed.float() / allowed.float().sum(-1, keepdim=True)  # [dest src]
    return 0.5 * (pattern[:, dest] - uniform[None]).abs().sum(-1).mean(-1)


def forced_pattern_metric(model: torch.nn.Module, task: Task, heads: list[tuple[int, int]], dest: Tensor, offset: int) -> Tensor:
    """Per-prompt task metric ``[batch]`` with each head's attention at ``dest`` replaced by one-hot
    attention to position ``p - offset`` (clamped to 0): a model simplified to the claimed mechanism."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def force(pattern: Tensor, hook, chosen: list[int]) -> Tensor:
        out = pattern.clone()
        target = (dest - offset).clamp(min=0, max=pattern.shape[-1] - 1)
        for h in chosen:
            out[:, h, dest] = 0.0
            out[:, h, dest, target] = 1.0
        return out

    hooks = [(hook_name("pattern", layer), lambda p, hook, chosen=chosen: force(p, hook, chosen)) for layer, chosen in by_layer.items()]
    with torch.no_grad():
        logits = model.run_with_hooks(task.clean.to(next(model.parameters()).device), fwd_hooks=hooks)
    return task.score_per_prompt(logits).cpu()
