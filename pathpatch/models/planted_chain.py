"""Planted models whose strong edges hang on weak links: ground truth for pruning's connectors.

A threshold keeps the edges with a large effect of their own, but an edge acts on the metric only
through a chain from ``embed`` and to ``logits``, and the links of that chain can be weak on their own.
Here the weakness comes from cancellation, as with a negative (copy-suppression) head in a trained model:

- ``planted-chain``: ``L0H0`` moves the token at position 1 into ``moved`` (there, and only there, it
  reads the token through its value). At the last position ``L1H0`` attends to position 1 and copies
  both ``tok`` and ``moved`` into ``out``; ``L1H1`` attends there too and writes ``-(1 - LEFT)`` times
  ``moved`` into ``out``. So ``L0H0->L1H0.v`` (+0.97 of the clean - corrupt gap) and ``L0H0->L1H1.v``
  (-0.94) are strong, while their one upstream link ``embed->L0H0.v`` moves the metric by only
  ``LEFT / (1 + LEFT)`` = 0.029, below the default threshold 0.05: corrupting it changes what both
  heads read, and the two changes cancel but for ``LEFT``. A pruning that keeps only paths through
  strong edges cannot reach ``L0H0`` from ``embed`` and drops both strong edges; the widest-chain rule
  keeps ``embed->L0H0.v`` as a connector.

``L0H1``, ``MLP0`` and ``MLP1`` are distractors writing ``junk`` only, so every other edge has no effect
(exactly, up to float rounding). ``WEAK`` names, per model, the true edges whose own effect is below the
default threshold: pruning must keep them as connectors, and nothing else.
"""

import torch
from transformer_lens import HookedTransformer

from pathpatch.models.planted import PlantedSpec, _distinct_pairs, _task, attend_to_position, copy, distract_head, distract_mlp
from pathpatch.task.task import Task

LEFT = 0.03  # share of the moved token that the negative head L1H1 leaves uncancelled


def wire_chain(model: HookedTransformer, g: torch.Generator) -> None:
    """L0H0 moves the token at position 1; L1H0 copies it (token and moved copy), L1H1 cancels most of the moved copy."""
    attend_to_position(model, 0, 0, 1)
    copy(model, 0, 0, "tok", "moved")
    distract_head(model, 0, 1, ("tok", "pos"), g)
    distract_mlp(model, 0, ("tok", "pos"), g)
    attend_to_position(model, 1, 0, 1)
    copy(model, 1, 0, "tok", "out")
    copy(model, 1, 0, "moved", "out")
    attend_to_position(model, 1, 1, 1)
    copy(model, 1, 1, "moved", "out", sign=-(1.0 - LEFT))
    distract_mlp(model, 1, ("moved", "out", "junk"), g)


def chain_task(n: int, seed: int) -> Task:
    """Answer: the token at position 1, against the corrupt run's (which shares no token with the clean one)."""
    clean, corrupt = _distinct_pairs(n, seed)
    return _task("planted-chain", clean, corrupt, clean[:, 1], corrupt[:, 1])


SPECS: tuple[PlantedSpec, ...] = (
    PlantedSpec(
        "planted-chain", "strong L0H0->L1H0.v and L0H0->L1H1.v (negative head) hang on the weak link embed->L0H0.v",
        ("embed->L0H0.v", "L0H0->L1H0.v", "L0H0->L1H1.v", "embed->L1H0.v", "L1H0->logits", "L1H1->logits"),
        wire_chain, chain_task,
    ),
)

WEAK: dict[str, tuple[str, ...]] = {"planted-chain": ("embed->L0H0.v",)}
