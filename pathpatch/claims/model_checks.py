"""Claims measured on the model itself rather than on circuit runs: where heads attend, what a forced
pattern leaves, what the weights compose and copy, what a head or neuron costs when ablated, a neuron's
direct effect or correlation, direct logit attribution, the task's metric, and weight structure.
"""

import math

import torch
from torch import Tensor

from pathpatch.claims.attention import combined_pattern, destinations, forced_pattern_metric, role_attention
from pathpatch.claims.claim_keys import claim_heads
from pathpatch.claims.context import Context, feature_of, fixed_result, threshold_result, token_list
from pathpatch.claims.hypotheses import Claim
from pathpatch.claims.neurons import activation, direct_effect, neuron_ablation, parse_neuron, pearson, require_neuron
from pathpatch.claims.structure import measure_structure
from pathpatch.claims.verdicts import ClaimResult, verdict_of
from pathpatch.claims.weights import composition_score, copying_score, virtual_ov_accuracy
from pathpatch.errors import InputError
from pathpatch.names import hook_name
from pathpatch.patch.lens import dla_per_prompt
from pathpatch.patch.runner import is_causal, prepare
from pathpatch.task.groups import n_prompts, task_groups, with_metric
from pathpatch.task.task import Task


def attention_per_prompt(ctx: Context, claim: Claim) -> Tensor:
    """Return each prompt's mean attention of ``head`` along the claim's role ``[batch]``.

    previous_token / attends_to offset K: attention from p to p - K (positions with no p - K are left
    out); attends_to token: attention mass on positions holding that token; induction: on a random
    sequence repeated twice, attention from the second copy to the token after the earlier occurrence
    of the current one.
    """
    if claim.params["role"] == "induction":
        return _induction_attention(ctx, ctx.graph.node(claim_heads(claim.params)[0]), n_prompts(ctx.task))
    return torch.cat([_attention(ctx, claim, group) for group in task_groups(ctx.task)])


def _induction_attention(ctx: Context, node, n: int) -> Tensor:
    """Attention from a repeated random sequence's second half to the token after each earlier occurrence."""
    g = torch.Generator().manual_seed(ctx.seed)
    half = max(2, min(ctx.model.cfg.n_ctx // 2, 10))
    rand = torch.randint(0, ctx.model.cfg.d_vocab, (n, half), generator=g)
    pattern = combined_pattern(ctx.model, [(node.layer, node.head)], torch.cat([rand, rand], dim=1)).float()
    dest = torch.arange(half, 2 * half)
    return pattern[:, dest, dest - (half - 1)].mean(-1).cpu()


def _attention(ctx: Context, claim: Claim, task: Task) -> Tensor:
    """Attention along an ``attends_to``/``previous_token``/``uniform`` role on one same-shape group ``[batch]``."""
    heads = [ctx.graph.node(h) for h in claim_heads(claim.params)]
    through = [ctx.graph.node(h) for h in _names(claim.params.get("through", []))]
    layers = [min(h.layer for h in heads), *(h.layer for h in through)]
    if any(later <= earlier for later, earlier in zip(layers, layers[1:])):
        raise InputError(f"Claim {claim.name!r}: through = {claim.params['through']!r}; each head read through must sit in an earlier "
                         f"layer than the one before it (the claim's heads start at layer {layers[0]}), latest first.")
    try:
        return role_attention(ctx.model, task, claim.params, [(h.layer, h.head) for h in heads], [(h.layer, h.head) for h in through])
    except InputError as err:
        raise InputError(f"Claim {claim.name!r}: {err}") from None


def _names(value: "str | list[str]") -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def check_head_role(ctx: Context, claim: Claim) -> ClaimResult:
    role = claim.params["role"]
    if role in ("copying", "negative_copy"):
        value = copying_score(ctx.weights, ctx.graph.node(claim_heads(claim.params)[0]), claim.params.get("space", "vocab"), token_list(claim))
        return fixed_result(claim, -value if role == "negative_copy" else value)  # negative copying as a strength
    per_prompt = attention_per_prompt(ctx, claim)
    defined = ~per_prompt.isnan()  # prompts with no target position have no attention to measure
    if not defined.any():
        raise InputError(f"Claim {claim.name!r}: no prompt has a position that {claim.params['head']}'s target rule picks out; "
                         "check 'to', 'among', 'token' and 'positions' against the task's prompts.")
    left_out = int((~defined).sum())
    per_prompt = per_prompt[defined]
    detail = f"{left_out} of {len(defined)} prompts have no target and are left out" if left_out else ""
    return threshold_result(ctx, claim, lambda idx: per_prompt[idx].mean(), len(per_prompt), detail)


def check_forced_attention(ctx: Context, claim: Claim) -> ClaimResult:
    """The task metric (default accuracy) of the model with the heads' attention forced to ``p - offset``
    at the claim's positions (default: read): how well the claimed mechanism alone does (document 003)."""
    heads = [ctx.graph.node(h) for h in claim.params["heads"]]
    metric = claim.params.get("metric", "accuracy")
    values = []
    offset = int(claim.params.get("offset", 1))
    for task in task_groups(ctx.task):
        scored = with_metric(task, metric)
        dest = destinations(claim.params.get("positions", "read"), task, task.clean.shape[1])
        reachable = (dest - offset >= 0) & (dest - offset < task.clean.shape[1]) & ((offset >= 0) | (not is_causal(ctx.model)))
        if not bool(reachable.all()):
            raise InputError(f"Claim {claim.name!r}: offset {offset} sends position {int(dest[~reachable][0])} to "
                             f"{int(dest[~reachable][0]) - offset}, which {'a causal head cannot see' if offset < 0 else 'the prompt lacks'}; "
                             f"give an offset from 0 to {int(dest.min())} for these positions.")
        values.append(forced_pattern_metric(ctx.model, scored, [(h.layer, h.head) for h in heads], dest, offset))
    per_prompt = torch.cat(values)
    return threshold_result(ctx, claim, lambda idx: per_prompt[idx].mean(), len(per_prompt))


def check_composition(ctx: Context, claim: Claim) -> ClaimResult:
    src, dest = ctx.graph.node(claim.params["src"]), ctx.graph.node(claim.params["dest"])
    kind = claim.params["type"]
    if kind not in ("q", "k", "v"):
        raise InputError(f"Claim {claim.name!r}: composition type {kind!r}; choose q, k or v.")
    return fixed_result(claim, composition_score(ctx.weights, src, dest, kind))


def check_virtual_ov(ctx: Context, claim: Claim) -> ClaimResult:
    return fixed_result(claim, virtual_ov_accuracy(ctx.weights, [ctx.graph.node(h) for h in claim.params["heads"]]))


def ablation_per_prompt(ctx: Context, subject: str) -> Tensor:
    """Increase of the task loss ``[batch]`` when a head's output (or a neuron's activation, ``MLP0.n5``) is replaced by
    its mean over prompts (of each length)."""
    if (neuron := parse_neuron(subject)) is not None:
        return torch.cat([neuron_ablation(ctx.model, group, *neuron) for group in task_groups(ctx.task)])
    node = ctx.graph.node(subject)
    if node.kind != "head":
        raise InputError(f"Ablation of {subject!r}: mean ablation takes a head such as 'L0H1' or a neuron such as 'MLP0.n5'.")
    name = hook_name("z", node.layer)  # output = z @ W_O, so ablating z ablates the head's output

    def mean_ablate(act: Tensor, hook) -> Tensor:
        act = act.clone()
        act[:, :, node.head] = act[:, :, node.head].mean(0, keepdim=True)
        return act

    deltas = []
    for task in task_groups(ctx.task):
        with torch.no_grad():
            clean = task.score_per_prompt(ctx.model(task.clean))
            ablated = task.score_per_prompt(ctx.model.run_with_hooks(task.clean, fwd_hooks=[(name, mean_ablate)]))
        loss = (lambda m: -m) if task.higher_is_better else (lambda m: m)
        deltas.append((loss(ablated) - loss(clean)).cpu())
    return torch.cat(deltas)


def check_ablation(ctx: Context, claim: Claim) -> ClaimResult:
    delta = ablation_per_prompt(ctx, claim.params.get("head") or claim.params["node"])
    return threshold_result(ctx, claim, lambda idx: delta[idx].mean(), len(delta))


def check_neuron(ctx: Context, claim: Claim) -> ClaimResult:
    """A neuron's direct effect on the logits, or the correlation of its activation with a task feature."""
    layer, neuron = int(claim.params["layer"]), int(claim.params["neuron"])
    groups = task_groups(ctx.task)
    if "correlates_with" in claim.params:
        feature = claim.params["correlates_with"]
        acts = torch.cat([activation(ctx.model, g, layer, neuron) for g in groups])
        values = torch.cat([feature_of(g, feature) for g in groups])
        if math.isnan(pearson(acts, values)):
            raise InputError(f"Claim {claim.name!r}: the correlation of neuron {layer}.{neuron} with {feature!r} is undefined: "
                             f"{'the neuron' if acts.std() == 0 else 'the feature'} is constant over the task's prompts; "
                             "give prompts where both vary.")
        return threshold_result(ctx, claim, lambda idx: torch.tensor(pearson(acts[idx], values[idx])), len(acts))
    tokens = claim.params.get("tokens")
    effect = torch.cat([direct_effect(ctx.model, g, layer, neuron, tokens) for g in groups])
    return threshold_result(ctx, claim, lambda idx: effect[idx].mean(), len(effect))


def check_dla(ctx: Context, claim: Claim) -> ClaimResult:
    """Mean direct logit attribution of one component (``discovery.lens``), in logit-difference units, over the prompts."""
    per_prompt = dla_per_prompt(ctx.model, ctx.task, claim.params["node"]).double()
    return threshold_result(ctx, claim, lambda idx: per_prompt[idx].mean(), len(per_prompt))


def check_metric(ctx: Context, claim: Claim) -> ClaimResult:
    """The task's metric on unpatched clean (or corrupt) prompts, e.g. the mean logit difference."""
    preps = [prepare(ctx.model, group) for group in task_groups(ctx.task)]  # both runs, as every patching run measures them
    per_prompt = torch.cat([getattr(prep, f"{claim.params.get('run', 'clean')}_per_prompt").double() for prep in preps])
    return threshold_result(ctx, claim, lambda idx: per_prompt[idx].mean(), len(per_prompt))


def check_structure(ctx: Context, claim: Claim) -> ClaimResult:
    """A claim on the structure of the weights (``graphs.structure``): read off the weights, no interval."""
    node = ctx.graph.node(claim.params["head"]) if "head" in claim.params else None
    grid = claim.kind == "fourier" and claim.params.get("of") in ("neurons", "logits")  # runs the model itself on the task
    if grid and "layer" in claim.params:
        require_neuron(ctx.model, int(claim.params["layer"]), 0)
    model = ctx.model if grid else ctx.weights
    value, detail = measure_structure(model, claim.kind, claim.params, node, token_list(claim), ctx.task if grid else None)
    return verdict_of(claim.name, claim.kind, claim.params, value, value, value, 0, detail)
