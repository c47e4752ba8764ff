"""What every claim check reads and the statistics they share: the context (model, task, circuit, settings),
effects normalised by clean - corrupt, and a measured value turned into a verdict.

A value measured over prompts gets a 95% bootstrap interval (``threshold_result``); a value read off the
weights has none (``fixed_result``). ``Context.for_claim`` gives a claim that names one of the file's
``[tasks]`` the same context on that task.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import torch
from torch import Tensor

from pathpatch.circuit.circuit import Circuit
from pathpatch.claims.hypotheses import Claim
from pathpatch.claims.verdicts import ClaimResult, bootstrap, verdict_of
from pathpatch.claims.weights import canonical
from pathpatch.errors import InputError, listed
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph
from pathpatch.patch.runner import is_causal
from pathpatch.patch.scores import normalized
from pathpatch.task.groups import AnyTask
from pathpatch.task.positions import Layout, layout
from pathpatch.task.task import Task


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


def token_list(claim: Claim) -> list[int] | None:
    """The token ids a copying claim is limited to: ``tokens = [3, 5]`` or ``tokens = {from = 28, to = 37}`` (inclusive)."""
    tokens = claim.params.get("tokens")
    if tokens is None:
        return None
    if isinstance(tokens, dict):
        return list(range(int(tokens["from"]), int(tokens["to"]) + 1))
    return [int(t) for t in tokens]


def feature_of(task: Task, name: str) -> Tensor:
    """A per-prompt feature ``[batch]`` the task carries (``Task.features``)."""
    features = getattr(task, "features", None) or {}
    if name not in features:
        raise InputError(f"Task '{task.name}' has no feature {name!r} (it has {sorted(features) or 'none'}); "
                         'add "features": {"' + name + '": ...} to each prompt of the task file.')
    return features[name].double().cpu()


def fixed_result(claim: Claim, value: float) -> ClaimResult:
    """A value read off the weights: nothing is resampled, so the interval is the value itself."""
    return verdict_of(claim.name, claim.kind, claim.params, value, value, value, 0)


def threshold_result(ctx: Context, claim: Claim, stat: Callable[[Tensor], Tensor], n: int, detail: str = "",
                      bound: dict | None = None) -> ClaimResult:
    """A value over the prompts, judged by its bootstrap interval against the claim's bound (or ``bound``)."""
    low, high = bootstrap(lambda idx: float(stat(idx)), n, ctx.resamples, ctx.seed)
    params = claim.params if bound is None else {**claim.params, **bound}
    return verdict_of(claim.name, claim.kind, params, float(stat(torch.arange(n))), low, high, n, detail)
