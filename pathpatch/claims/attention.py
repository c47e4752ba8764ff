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

- ``to`` an expression over the prompt (``graphs.expressions``): ``"pos == tok[dest]"`` and the like;
  on a causal model only the positions a destination can see count as its targets.

``from`` (an expression) picks destinations per prompt instead of ``positions``; ``where`` (an
expression reading no position) keeps only the prompts it holds for. The pattern may be one head's,
several heads' summed or averaged (``heads``, ``combine``), or a virtual pattern: the head's pattern
times the patterns of earlier heads it reads through (``through``), the attention a later head pays to a
source by way of the positions an earlier head attended from.

The value is the attention mass on the chosen positions, averaged over destinations and prompts
(destinations where a rule picks nothing are left out). ``uniform`` measures instead the total-variation
distance between each row and the uniform distribution over the positions it may attend to.
``forced_pattern`` runs the model with a head's attention at some destinations replaced by one-hot
attention to a position: document 003's "simplified model".
"""

import torch
from torch import Tensor

from pathpatch.claims.expressions import NAMES, Scope, parse
from pathpatch.errors import InputError, listed
from pathpatch.names import hook_name
from pathpatch.task.task import Task

RULES = ("smallest", "largest", "smallest_larger", "largest_smaller", "mismatch", "same_token")


def combined_pattern(model: torch.nn.Module, heads: list[tuple[int, int]], inputs: Tensor, combine: str = "sum",
                     through: "list[tuple[int, int]]" = ()) -> Tensor:
    """The attention pattern ``[batch dest src]`` of ``heads`` (summed or averaged), read through ``through``.

    ``through`` lists earlier heads, latest first: the result is ``A_heads @ A_through[0] @ A_through[1] ...``,
    the mass reaching each source by way of the positions each earlier head attended from.
    """
    layers = {layer for layer, _ in [*heads, *through]}
    names = {hook_name("pattern", layer) for layer in layers}
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs.to(next(model.parameters()).device), names_filter=lambda name: name in names)
    read = lambda layer, head: cache[hook_name("pattern", layer)][:, head].double().cpu()  # noqa: E731
    pattern = torch.stack([read(layer, head) for layer, head in heads]).sum(0)
    if combine == "mean":
        pattern = pattern / len(heads)
    for layer, head in through:
        pattern = pattern @ read(layer, head)
    return pattern


def role_attention(model: torch.nn.Module, task: Task, params: dict, heads: list[tuple[int, int]],
                   through: "list[tuple[int, int]]" = ()) -> Tensor:
    """Per-prompt attention along an ``attends_to``/``previous_token``/``uniform`` claim ``[batch]``; NaN where
    the prompt has no destination with a target, or ``where`` leaves it out."""
    pattern = combined_pattern(model, heads, task.clean, params.get("combine", "sum"), through)  # [batch dest src]
    n_pos = pattern.shape[-1]
    causal = model.cfg.attention_dir == "causal"
    if "from" in params:
        dest = torch.arange(n_pos)
        chosen = parse(params["from"], "from").mask(Scope(task, dest, from_dest=True))[:, :, 0]  # [batch dest]
    else:
        dest = destinations(params.get("positions", "all"), task, n_pos)
        chosen = torch.ones(pattern.shape[0], len(dest), dtype=torch.bool)
    if params["role"] == "uniform":
        values = distance_from_uniform(pattern, dest, causal)
    else:
        values = attention_to(pattern, dest, _targets(params, task, dest, n_pos, model.cfg.d_vocab, causal) & chosen[:, :, None])
    if "where" in params:
        values = torch.where(parse(params["where"], "where").per_prompt(Scope(task, dest)), values, float("nan"))
    return values


def _targets(params: dict, task: Task, dest: Tensor, n_pos: int, d_vocab: int, causal: bool) -> Tensor:
    """The positions each destination should attend to ``[batch dest src]`` (bool), by ``token``, ``to`` or ``offset``."""
    batch = task.clean.shape[0]
    if "token" in params:
        if not 0 <= int(params["token"]) < d_vocab:
            raise InputError(f"token = {params['token']} is outside the model's vocabulary (0..{d_vocab - 1}); give a token id the model reads.")
        return (task.clean.cpu() == int(params["token"]))[:, None, :].expand(-1, len(dest), -1)
    to = params.get("to")
    if isinstance(to, str) and to not in RULES:  # an expression over the prompt
        visible = (torch.arange(n_pos)[None, :] <= dest[:, None]) if causal else torch.ones(len(dest), n_pos, dtype=torch.bool)
        expression = parse(to, "to")
        unknown = expression.names - set(NAMES) - {f"{name}[]" for name in NAMES} - set(task.features or {})
        if unknown:
            raise InputError(f"to = {to!r}: {listed(sorted(unknown))} is neither an attention rule ({', '.join(RULES)}) nor a name of the "
                             f"expression language ({', '.join(NAMES)}) nor a feature of task {task.name!r}; check the spelling.")
        return expression.mask(Scope(task, dest)) & visible[None] & _allowed(params.get("among"), n_pos)[None, None]
    if to is not None:
        return target_mask(to, task, dest, params.get("among"))
    offset = int(params.get("offset", 1))
    if not bool(((dest - offset >= 0) & (dest - offset < n_pos)).any()):
        raise InputError(f"offset {offset} leaves no position p with p - {offset} in 0..{n_pos - 1}; "
                         f"use an offset between {-(n_pos - 1)} and {n_pos - 1}.")
    return (torch.arange(n_pos)[None, :] == (dest - offset)[:, None])[None].expand(batch, -1, -1)


def _allowed(among: "list[int] | None", n_pos: int) -> Tensor:
    """The source positions a target may be at ``[src]``: ``among``, else all."""
    allowed = torch.zeros(n_pos, dtype=torch.bool)
    allowed[_positions(among, n_pos, "among") if among is not None else torch.arange(n_pos)] = True
    return allowed


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
    allowed = _allowed(among, n_pos)
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
