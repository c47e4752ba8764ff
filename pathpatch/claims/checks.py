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

from collections.abc import Callable
from dataclasses import replace

import pandas as pd
import torch
from torch import Tensor

from pathpatch.circuit.circuit import Circuit
from pathpatch.claims.context import Context, check_gap, direction_of, effects_per_prompt, normalized_effect, threshold_result
from pathpatch.claims.hypotheses import Claim, Hypothesis, group_parts
from pathpatch.claims.model_checks import (ablation_per_prompt, check_ablation, check_composition, check_dla, check_forced_attention,
                                           check_head_role, check_metric, check_neuron, check_structure, check_virtual_ov)
from pathpatch.claims.neurons import neuron_patched, parse_neuron
from pathpatch.claims.verdicts import ClaimResult, bootstrap, group_result, verdict_of
from pathpatch.errors import InputError
from pathpatch.names import edge_at, split_pos
from pathpatch.patch.circuits import run_circuits_with_baselines
from pathpatch.task.groups import task_groups


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
    if b.pos not in ctx.positions.moves_to(a.pos, a.channel):
        raise InputError(f"Path {claim.name!r}: {a.name} cannot reach {b.name}: a head reads keys and values at earlier "
                         "positions, and its query only at its own.")


def _in_circuit(circuit: Circuit, edge: str) -> bool:
    """Whether the circuit keeps ``edge``; a position-free circuit keeps an edge at every position."""
    kept = circuit.scored_edges
    return edge in kept or (circuit.layout is None and split_pos(edge)[0] in kept)


def check_effect(ctx: Context, claim: Claim) -> ClaimResult:
    return threshold_result(ctx, claim, *effect_statistic(ctx, claim.params.get("edge") or claim.params["node"], direction_of(ctx, claim)))


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
    return threshold_result(ctx, claim, share, len(clean))


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
    return threshold_result(ctx, claim, lambda idx: a(idx) - b(idx), n, bound={"min": margin})


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


def check_group(ctx: Context, claim: Claim) -> ClaimResult:
    """An ``any``/``all`` group: each part checked as a claim of its own, the verdicts combined (``verdicts.group_result``)."""
    return group_result(claim.name, claim.kind, [CHECKS[part.kind](ctx.for_claim(part), part) for part in group_parts(claim)])


CHECKS: dict[str, Callable[[Context, Claim], ClaimResult]] = {
    "path": check_path, "effect": check_effect, "faithfulness": check_faithfulness, "head_role": check_head_role,
    "composition": check_composition, "virtual_ov": check_virtual_ov, "ablation": check_ablation,
    "compare": check_compare, "rank": check_rank, "neuron": check_neuron, "forced_attention": check_forced_attention,
    "dla": check_dla, "metric": check_metric, **dict.fromkeys(("ov_rank", "qk_term", "geometry", "fourier"), check_structure),
    "any": check_group, "all": check_group,
}


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
