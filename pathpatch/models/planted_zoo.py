"""Every planted-circuit model by name: the building blocks live in ``planted``, each family of models in
its own module, and this registry joins them for loading, tasks and benchmarks."""

import torch
from transformer_lens import HookedTransformer

from pathpatch.errors import InputError
from pathpatch.models import planted, planted_chain, planted_gates
from pathpatch.models.planted import PlantedSpec

PLANTED: dict[str, PlantedSpec] = {spec.name: spec for spec in (*planted.SPECS, *planted_chain.SPECS, *planted_gates.SPECS)}


def get_planted(name: str) -> PlantedSpec:
    """Return a planted model's spec; raise InputError listing the known names."""
    if name not in PLANTED:
        raise InputError(f"Unknown planted model {name!r}; planted models are {', '.join(PLANTED)}.")
    return PLANTED[name]


def build_planted(name: str, device: str | torch.device = "cpu", seed: int = 0) -> HookedTransformer:
    """Return the planted model ``name`` with its weights set (distractors drawn from ``seed``)."""
    return planted.build(get_planted(name), device, seed)
