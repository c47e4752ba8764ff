"""Data records shared by the seed modules: a training batch and its read positions."""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from pathpatch.task.task import Task


@dataclass(frozen=True)
class Batch:
    """A batch of model inputs with the targets read at ``positions``.

    Attributes:
        inputs: Tokens ``[batch pos]`` or continuous vectors ``[batch pos d_vocab]``.
        targets: Next tokens ``[batch pos]`` or next vectors ``[batch pos d_vocab]`` at the read
            positions, in the order of ``positions``.
        mask: Which read positions count towards accuracy ``[batch pos]`` (all of them, except in
            the trigram task, where only trigram completions do).
    """

    inputs: Tensor
    targets: Tensor
    mask: Bool[Tensor, "batch pos"]


def distinct_values(n: int, k: int, n_values: int, generator: torch.Generator) -> Tensor:
    """Return ``[n, k]`` integers in ``[0, n_values)`` with no repeat inside a row."""
    return torch.rand(n, n_values, generator=generator).argsort(-1)[:, :k]  # [batch k]


def distinct_values_avoiding(avoid: Tensor, n_values: int, generator: torch.Generator) -> Tensor:
    """Return rows of distinct values, the same shape as ``avoid``, sharing no value with its row."""
    n, k = avoid.shape
    scores = torch.rand(n, n_values, generator=generator)  # [batch n_values]
    scores.scatter_(1, avoid, 2.0)  # sorted last, so never picked while n_values >= 2k
    return scores.argsort(-1)[:, :k]


def next_token_task(
    name: str, clean: Int[Tensor, "batch pos"], corrupt: Int[Tensor, "batch pos"], positions: tuple[int, ...], corruption: str,
    labels: tuple[str, ...] | None = None,
) -> Task:
    """Return a logit-difference task read at ``positions``: the clean next tokens against the corrupt ones
    (``labels`` names the template's positions for position-aware circuits)."""
    read_next = [p + 1 for p in positions]
    return Task(
        name=name,
        clean=clean,
        corrupt=corrupt,
        answers=clean[:, read_next],
        wrong_answers=corrupt[:, read_next],
        positions=torch.tensor(positions),
        metric="logit_diff",
        corruption=corruption,
        labels=labels,
    )
