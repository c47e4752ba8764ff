"""Check a hypothesis against a circuit, the model's activations and its weights.

Each claim becomes one measured value with a threshold, a pass/fail verdict and a 95% bootstrap
confidence interval over prompts (prompts resampled with replacement, ``bootstrap`` times, seeded);
claims read off the weights alone (copying, composition, virtual OV) have no interval. Effects are
exact normalized effects under the file's pinned corruption and direction: noising
``(clean - patched) / (clean - corrupt)`` (what the component contributes), denoising
``(patched - corrupt) / (clean - corrupt)`` (what it restores on its own). Tasks whose prompts differ
in length run group by group; per-prompt values are joined, so intervals resample every prompt. A path passes when each of its scored hops is in the circuit and has at least
``min_effect``; its value is the weakest hop. A ``dla`` claim bounds a component's mean direct logit
attribution (``discovery.lens``), read off the clean run alone.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import pandas as pd
import torch
from torch import Tensor

from pathpatch.discovery.config import PatchConfig, normalized
from pathpatch.discovery.edges import patch_edges, run_circuits_with_baselines
from pathpatch.discovery.graph import ComputeGraph
from pathpatch.discovery.lens import dla_per_prompt
from pathpatch.errors import InputError, listed
from pathpatch.graphs.circuit import Circuit
from pathpatch.graphs.claim_keys import claim_heads
from pathpatch.graphs.hypotheses import Claim, Hypothesis, group_parts
from pathpatch.graphs.weights import canonical, composition_score, copying_score, virtual_ov_accuracy
from pathpatch.graphs.attention import destinations, forced_pattern_metric, pattern_of, role_attention
from pathpatch.graphs.structure import measure_structure
from pathpatch.graphs.neurons import activation, direct_effect, require_neuron, neuron_ablation, neuron_patched, parse_neuron, pearson
from pathpatch.graphs.verdicts import ClaimResult, bootstrap, group_result, verdict_of
from pathpatch.models.tasks import AnyTask, Task, task_groups, with_metric
from pathpatch.discovery.runner import is_causal, prepare
from pathpatch.names import edge_at, hook_name, split_pos
from pathpatch.positions import Layout, layout


@dataclass(frozen=True)
class Context:
    """What every claim may read: model, task, circuit, settings."""

    model: torch.nn.Module
    task: AnyTask
    circuit: Circuit | None  # None when no claim reads a circuit
    graph: ComputeGraph
    config: PatchConfig
    resamples: int
    seed: int
    tasks: dict | None = None  # further tasks by name, for claims that name one (``Hypothesis.tasks``), loaded

    def for_claim(self, claim: Claim) -> "Context":
        """This context, or the one measuring on the task the claim names (built once per task, sharing the weights)."""
        name = claim.params.get("task")
        if name is None:
            return self
        if name not in (self.tasks or {}):
            raise InputError(f"Claim {claim.name!r}: task = {name!r} is not among the loaded tasks ({listed(sorted(self.tasks or {})) or 'none'}); "
                             "define it under [tasks] in the hypothesis file.")
        if name not in self._by_task:
            other = replace(self, task=self.tasks[name])
            if "weights" in self.__dict__:
                other.__dict__["weights"] = self.__dict__["weights"]
            self._by_task[name] = other
        return self._by_task[name]

    @cached_property
    def _by_task(self) -> dict:
        return {}

    @cached_property
    def positions(self) -> Layout:
        """The task's position labels, for claims that name positions (``L1H0@END``)."""
        return layout(self.task, causal=is_causal(self.model))

    @cached_property
    def weights(self) -> torch.nn.Module:
        """The model with norms folded and weights centred, for scores read off the weights (``weights.canonical``)."""
        return canonical(self.model)

    def task_size(self) -> int:
        """Number of prompts over every group."""
        return sum(g.clean.shape[0] for g in task_groups(self.task))


def direction_of(ctx: Context, claim: Claim) -> str:
    """The claim's own ``direction``, else the file's pinned one."""
    return claim.params.get("direction", ctx.config.direction)


def effects_per_prompt(ctx: Context, edges: list[str], direction: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Return per-prompt patched metrics ``[edge batch]`` and clean/corrupt metrics ``[batch]``."""
    config = ctx.config if direction is None else replace(ctx.config, direction=direction)
    table = patch_edges(ctx.model, ctx.task, edges, config=config)
    return table.attrs["per_prompt"], table.attrs["clean_per_prompt"], table.attrs["corrupt_per_prompt"]


def check_gap(ctx: Context, clean: Tensor, corrupt: Tensor) -> None:
    """Refuse to normalise by a clean - corrupt gap that is zero or lost in rounding (every effect would divide by it)."""
    normalized(torch.zeros(1), float(clean.double().mean()), float(corrupt.double().mean()),
               f"{ctx.task.name}' (corruption {ctx.config.corruption!r})")


def normalized_effect(patched: Tensor, clean: Tensor, corrupt: Tensor, direction: str = "noise") -> Callable[[Tensor], Tensor]:
    """Return ``idx ->`` the normalized effect over the chosen prompts.

    ``noise``: ``(clean - patched) / (clean - corrupt)``, the share lost when the component is corrupted.
    ``denoise``: ``(patched - corrupt) / (clean - corrupt)``, the share restored when it alone is clean.
    """
    gap = lambda idx: clean[idx].mean() - corrupt[idx].mean()  # noqa: E731
    if direction == "denoise":
        return lambda idx: (patched[..., idx].mean(-1) - corrupt[idx].mean()) / gap(idx)
    return lambda idx: (clean[idx].mean() - patched[..., idx].mean(-1)) / gap(idx)


def check_path(ctx: Context, claim: Claim) -> ClaimResult:
    """The weakest normalized effect of a path's hops; every hop must be in the circuit.

    Nodes may sit at positions (``embed@a0, L0H0.v@a0, L0H0@p0, L1H0.v@p0, L1H0@END, logits@END``): a
    residual hop joins one position, a head moves information from a key/value position to a later one.
    """
    nodes = [_positioned(ctx, n) for n in claim.params["nodes"]]
    hops = []
    for a, b in zip(nodes, nodes[1:]):
        if a.kind == "head_input":
            if a.owner != b.base:
                raise InputError(f"Path {claim.name!r}: input {a.name} belongs to {a.owner}, not {b.name}.")
            _check_move(ctx, claim, a, b)
            continue
        if a.pos != b.pos:
            raise InputError(f"Path {claim.name!r}: hop {a.name}->{b.name} joins two positions; the residual stream joins a writer "
                             f"and a reader at one position (heads move information between positions: through {b.owner}'s input).")
        hops.append(edge_at(f"{a.base}->{b.base}", b.pos))
    for hop in hops:
        ctx.graph.edge(split_pos(hop)[0])  # raises on a hop that is no edge
    direction = direction_of(ctx, claim)
    patched, clean, corrupt = effects_per_prompt(ctx, hops, direction)
    check_gap(ctx, clean, corrupt)
    effect = normalized_effect(patched, clean, corrupt, direction)
    full = effect(torch.arange(len(clean)))  # [hop]
    weakest = lambda idx: float(effect(idx).min())  # noqa: E731
    missing = [h for h in hops if not _in_circuit(ctx.circuit, h)]
    low, high = bootstrap(weakest, len(clean), ctx.resamples, ctx.seed)
    link = int(full.argmin())
    detail = f"weakest link {hops[link]} ({float(full[link]):.3g})"
    bounded = {**claim.params, "min": claim.params["min_effect"]}
    result = verdict_of(claim.name, claim.kind, bounded, float(full.min()), low, high, len(clean), detail)
    if missing and not claim.params.get("report"):  # a hop the circuit lacks breaks the path, whatever its effect
        return replace(result, verdict="fail", detail=f"not in circuit: {', '.join(missing)}; {detail}")
    return result


def _positioned(ctx: Context, name: str):
    """Parse a node name, checking that its position (if any) is one the task has."""
    node = ctx.graph.node(name)
    if node.pos is not None:
        ctx.positions.index(node.pos)
    return node


def _check_move(ctx: Context, claim: Claim, a, b) -> None:
    """A head input at one position feeds the head at another only through keys/values, forwards."""
    if a.pos is None or b.pos is None or a.pos == b.pos:
        if (a.pos is None) != (b.pos is None):
            raise InputError(f"Path {claim.name!r}: {a.name} and {b.name} mix a position-aware node with a position-free one; "
                             "name positions on every node of the path or on none.")
        return
    if a.channel == "q" or (a.pos, b.pos) not in ctx.positions.reaches:
        raise InputError(f"Path {claim.name!r}: {a.name} cannot reach {b.name}: a head reads keys and values at earlier "
                         "positions, and its query only at its own.")


def _in_circuit(circuit: Circuit, edge: str) -> bool:
    """Whether the circuit keeps ``edge``; a position-free circuit keeps an edge at every position."""
    kept = circuit.scored_edges
    return edge in kept or (circuit.layout is None and split_pos(edge)[0] in kept)


def check_effect(ctx: Context, claim: Claim) -> ClaimResult:
    return _threshold_result(ctx, claim, *effect_statistic(ctx, claim.params.get("edge") or claim.params["node"], direction_of(ctx, claim)))


def effect_statistic(ctx: Context, subject: str, direction: str) -> tuple[Callable[[Tensor], Tensor], int]:
    """``idx ->`` normalized effect of an edge (``SRC->DEST``) or of a whole node's outputs, and the prompt count.

    A node's effect: every output of the node corrupt, the rest clean (noise), or only the node's
    outputs clean (denoise), as one circuit run.
    """
    if (neuron := parse_neuron(subject)) is not None:
        return _neuron_effect(ctx, *neuron, direction)
    if "->" in subject:
        base, pos = split_pos(subject)
        if pos is not None:
            ctx.positions.index(pos)
        patched, clean, corrupt = effects_per_prompt(ctx, [edge_at(ctx.graph.edge(base).name, pos)], direction)
        check_gap(ctx, clean, corrupt)
        return normalized_effect(patched[0], clean, corrupt, direction), len(clean)
    node = _positioned(ctx, subject)
    only = torch.zeros(len(ctx.graph.sources), len(ctx.graph.dests), dtype=torch.bool)
    only[ctx.graph.src_index(node)] = True
    columns = None if node.pos is None else ctx.positions
    if columns is not None:  # the node's outputs at one position: a position-aware circuit run
        at = torch.zeros(len(columns.labels), dtype=torch.bool)
        at[columns.index(node.pos)] = True
        only = only[..., None] & at
    valid = ctx.graph.valid_at(columns)
    mask = (valid & only) if direction == "denoise" else (valid & ~only)
    patched, clean, corrupt = run_circuits_with_baselines(ctx.model, ctx.task, mask, ctx.config, columns)
    check_gap(ctx, clean, corrupt)
    return normalized_effect(patched[0], clean, corrupt, direction), len(clean)


def _neuron_effect(ctx: Context, layer: int, neuron: int, direction: str) -> tuple[Callable[[Tensor], Tensor], int]:
    """``idx ->`` normalized effect of one MLP neuron, against the same clean and corrupt runs an edge's effect uses."""
    config = replace(ctx.config, direction=direction)
    patched = torch.cat([neuron_patched(ctx.model, group, layer, neuron, direction, config) for group in task_groups(ctx.task)])
    _, clean, corrupt = effects_per_prompt(ctx, [ctx.graph.edges[0].name], direction)  # the baselines every effect divides by
    check_gap(ctx, clean, corrupt)
    return normalized_effect(patched.to(clean.dtype), clean, corrupt, direction), len(clean)


def check_faithfulness(ctx: Context, claim: Claim) -> ClaimResult:
    """In the claim's direction, else the file's: denoise, the share of clean - corrupt the circuit alone
    recovers (everything else corrupt); noise, the share lost when only the circuit's edges are corrupt."""
    if not ctx.circuit.scored_edges:
        raise InputError("The circuit is empty; a faithfulness claim needs edges. Lower the threshold in [method].")
    mask, columns = ctx.circuit.mask(), ctx.circuit.layout
    valid = ctx.graph.valid_at(columns)
    noise = direction_of(ctx, claim) == "noise"
    runs, clean, corrupt = run_circuits_with_baselines(ctx.model, ctx.task, (valid & ~mask) if noise else mask, ctx.config, columns)
    check_gap(ctx, clean, corrupt)
    gap = lambda idx: clean[idx].mean() - corrupt[idx].mean()  # noqa: E731
    if noise:
        share = lambda idx: (clean[idx].mean() - runs[0, idx].mean()) / gap(idx)  # noqa: E731
    else:
        share = lambda idx: (runs[0, idx].mean() - corrupt[idx].mean()) / gap(idx)  # noqa: E731
    return _threshold_result(ctx, claim, share, len(clean))


def attention_per_prompt(ctx: Context, claim: Claim) -> Tensor:
    """Return each prompt's mean attention of ``head`` along the claim's role ``[batch]``.

    previous_token / attends_to offset K: attention from p to p - K (positions with no p - K are left
    out); attends_to token: attention mass on positions holding that token; induction: on a random
    sequence repeated twice, attention from the second copy to the token after the earlier occurrence
    of the current one.
    """
    if claim.params["role"] == "induction":
        return _induction_attention(ctx, ctx.graph.node(claim_heads(claim.params)[0]), ctx.task_size())
    return torch.cat([_attention(ctx, claim, group) for group in task_groups(ctx.task)])


def _induction_attention(ctx: Context, node, n: int) -> Tensor:
    """Attention from a repeated random sequence's second half to the token after each earlier occurrence."""
    g = torch.Generator().manual_seed(ctx.seed)
    half = max(2, min(ctx.model.cfg.n_ctx // 2, 10))
    rand = torch.randint(0, ctx.model.cfg.d_vocab, (n, half), generator=g)
    pattern = pattern_of(ctx.model, node.layer, node.head, torch.cat([rand, rand], dim=1))
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
        return _fixed_result(claim, -value if role == "negative_copy" else value)  # negative copying as a strength
    per_prompt = attention_per_prompt(ctx, claim)
    defined = ~per_prompt.isnan()  # prompts with no target position have no attention to measure
    if not defined.any():
        raise InputError(f"Claim {claim.name!r}: no prompt has a position that {claim.params['head']}'s target rule picks out; "
                         "check 'to', 'among', 'token' and 'positions' against the task's prompts.")
    left_out = int((~defined).sum())
    per_prompt = per_prompt[defined]
    detail = f"{left_out} of {len(defined)} prompts have no target and are left out" if left_out else ""
    return _threshold_result(ctx, claim, lambda idx: per_prompt[idx].mean(), len(per_prompt), detail)


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
    return _threshold_result(ctx, claim, lambda idx: per_prompt[idx].mean(), len(per_prompt))


def check_composition(ctx: Context, claim: Claim) -> ClaimResult:
    src, dest = ctx.graph.node(claim.params["src"]), ctx.graph.node(claim.params["dest"])
    kind = claim.params["type"]
    if kind not in ("q", "k", "v"):
        raise InputError(f"Claim {claim.name!r}: composition type {kind!r}; choose q, k or v.")
    return _fixed_result(claim, composition_score(ctx.weights, src, dest, kind))


def check_virtual_ov(ctx: Context, claim: Claim) -> ClaimResult:
    return _fixed_result(claim, virtual_ov_accuracy(ctx.weights, [ctx.graph.node(h) for h in claim.params["heads"]]))


def token_list(claim: Claim) -> list[int] | None:
    """The token ids a copying claim is limited to: ``tokens = [3, 5]`` or ``tokens = {from = 28, to = 37}`` (inclusive)."""
    tokens = claim.params.get("tokens")
    if tokens is None:
        return None
    if isinstance(tokens, dict):
        return list(range(int(tokens["from"]), int(tokens["to"]) + 1))
    return [int(t) for t in tokens]


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
    return _threshold_result(ctx, claim, lambda idx: delta[idx].mean(), len(delta))


def measure(ctx: Context, subject: str, by: str, direction: str) -> tuple[Callable[[Tensor], Tensor], int]:
    """``idx ->`` a subject's importance by ``effect`` (normalized) or ``ablation`` (loss increase)."""
    if by == "ablation":
        delta = ablation_per_prompt(ctx, subject)
        return (lambda idx: delta[idx].mean()), len(delta)
    return effect_statistic(ctx, subject, direction)


def check_compare(ctx: Context, claim: Claim) -> ClaimResult:
    """``a`` matters more than ``b`` by ``margin``: the value is measure(a) - measure(b)."""
    by, direction = claim.params.get("by", "effect"), direction_of(ctx, claim)
    (a, n), (b, _) = (measure(ctx, claim.params[key], by, direction) for key in ("a", "b"))
    margin = float(claim.params.get("margin", 0.0))
    return _threshold_result(ctx, claim, lambda idx: a(idx) - b(idx), n, bound={"min": margin})


def check_rank(ctx: Context, claim: Claim) -> ClaimResult:
    """The claimed ``nodes`` are the strongest of ``among`` by ``by``: the value is the share of them in the top |nodes|,
    judged against ``min`` (default 1: every claimed node in the top)."""
    by, direction = claim.params.get("by", "effect"), direction_of(ctx, claim)
    claimed, among = list(claim.params["nodes"]), list(claim.params["among"])
    missing = [n for n in claimed if n not in among]
    if missing:
        raise InputError(f"Claim {claim.name!r}: {missing} are not among the candidates {among}; list every claimed node in 'among'.")
    stats = {name: measure(ctx, name, by, direction) for name in among}
    n = next(iter(stats.values()))[1]

    def share(idx: Tensor) -> float:
        values = {name: float(stat(idx)) for name, (stat, _) in stats.items()}
        top = sorted(among, key=lambda name: -values[name])[: len(claimed)]
        return len(set(top) & set(claimed)) / len(claimed)

    values = {name: float(stat(torch.arange(n))) for name, (stat, _) in stats.items()}
    order = ", ".join(f"{k} {v:.3g}" for k, v in sorted(values.items(), key=lambda kv: -kv[1]))
    low, high = bootstrap(share, n, ctx.resamples, ctx.seed)
    bound = {"min": float(claim.params.get("min", 1.0))}
    return verdict_of(claim.name, claim.kind, {**claim.params, **bound}, share(torch.arange(n)), low, high, n, f"by {by}: {order}")


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
        return _threshold_result(ctx, claim, lambda idx: torch.tensor(pearson(acts[idx], values[idx])), len(acts))
    tokens = claim.params.get("tokens")
    effect = torch.cat([direct_effect(ctx.model, g, layer, neuron, tokens) for g in groups])
    return _threshold_result(ctx, claim, lambda idx: effect[idx].mean(), len(effect))


def check_dla(ctx: Context, claim: Claim) -> ClaimResult:
    """Mean direct logit attribution of one component (``discovery.lens``), in logit-difference units, over the prompts."""
    per_prompt = dla_per_prompt(ctx.model, ctx.task, claim.params["node"]).double()
    return _threshold_result(ctx, claim, lambda idx: per_prompt[idx].mean(), len(per_prompt))


def check_metric(ctx: Context, claim: Claim) -> ClaimResult:
    """The task's metric on unpatched clean (or corrupt) prompts, e.g. the mean logit difference."""
    preps = [prepare(ctx.model, group) for group in task_groups(ctx.task)]  # both runs, as every patching run measures them
    per_prompt = torch.cat([getattr(prep, f"{claim.params.get('run', 'clean')}_per_prompt").double() for prep in preps])
    return _threshold_result(ctx, claim, lambda idx: per_prompt[idx].mean(), len(per_prompt))


def check_structure(ctx: Context, claim: Claim) -> ClaimResult:
    """A claim on the structure of the weights (``graphs.structure``): read off the weights, no interval."""
    node = ctx.graph.node(claim.params["head"]) if "head" in claim.params else None
    grid = claim.kind == "fourier" and claim.params.get("of") in ("neurons", "logits")  # runs the model itself on the task
    if grid and "layer" in claim.params:
        require_neuron(ctx.model, int(claim.params["layer"]), 0)
    model = ctx.model if grid else ctx.weights
    value, detail = measure_structure(model, claim.kind, claim.params, node, token_list(claim), ctx.task if grid else None)
    return verdict_of(claim.name, claim.kind, claim.params, value, value, value, 0, detail)


def check_group(ctx: Context, claim: Claim) -> ClaimResult:
    """An ``any``/``all`` group: each part checked as a claim of its own, the verdicts combined (``verdicts.group_result``)."""
    return group_result(claim.name, claim.kind, [CHECKS[part.kind](ctx.for_claim(part), part) for part in group_parts(claim)])


def feature_of(task: Task, name: str) -> Tensor:
    """A per-prompt feature ``[batch]`` the task carries (``Task.features``)."""
    features = getattr(task, "features", None) or {}
    if name not in features:
        raise InputError(f"Task '{task.name}' has no feature {name!r} (it has {sorted(features) or 'none'}); "
                         'add "features": {"' + name + '": ...} to each prompt of the task file.')
    return features[name].double().cpu()


CHECKS: dict[str, Callable[[Context, Claim], ClaimResult]] = {
    "path": check_path, "effect": check_effect, "faithfulness": check_faithfulness, "head_role": check_head_role,
    "composition": check_composition, "virtual_ov": check_virtual_ov, "ablation": check_ablation,
    "compare": check_compare, "rank": check_rank, "neuron": check_neuron, "forced_attention": check_forced_attention,
    "dla": check_dla, "metric": check_metric, **dict.fromkeys(("ov_rank", "qk_term", "geometry", "fourier"), check_structure),
    "any": check_group, "all": check_group,
}


def _fixed_result(claim: Claim, value: float) -> ClaimResult:
    """A value read off the weights: nothing is resampled, so the interval is the value itself."""
    return verdict_of(claim.name, claim.kind, claim.params, value, value, value, 0)


def _threshold_result(ctx: Context, claim: Claim, stat: Callable[[Tensor], Tensor], n: int, detail: str = "",
                      bound: dict | None = None) -> ClaimResult:
    """A value over the prompts, judged by its bootstrap interval against the claim's bound (or ``bound``)."""
    low, high = bootstrap(lambda idx: float(stat(idx)), n, ctx.resamples, ctx.seed)
    params = claim.params if bound is None else {**claim.params, **bound}
    return verdict_of(claim.name, claim.kind, params, float(stat(torch.arange(n))), low, high, n, detail)


NEEDS_CIRCUIT = frozenset({"path", "faithfulness"})  # claim kinds measured on a circuit; the others on the model


def check_claims(hypothesis: Hypothesis, ctx: Context, on_result: Callable[[ClaimResult], None] | None = None) -> pd.DataFrame:
    """Return one row per claim (``results_table``'s columns).

    A claim with ``report = true`` is measured and recorded but never judged (its ``op`` and verdict are ``report``).
    ``on_result`` receives each verdict as soon as it is measured (to show it, or keep it if the run stops).
    """
    rows = []
    for claim in hypothesis.claims:
        rows.append(CHECKS[claim.kind](ctx.for_claim(claim), claim))
        if on_result is not None:
            on_result(rows[-1])
    return results_table(rows)


def results_table(rows: list[ClaimResult]) -> pd.DataFrame:
    """The verdicts as a table, one row per claim: the fields of ``ClaimResult`` and ``passed`` (pass or report)."""
    columns = [*ClaimResult.__dataclass_fields__, "passed"]
    return pd.DataFrame([{**r.__dict__, "passed": r.passed} for r in rows], columns=columns)
