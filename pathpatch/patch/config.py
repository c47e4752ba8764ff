"""Options shared by the patching methods, and where the "corrupt" activations come from.

``corruption`` says what a patched-out component carries instead of its clean activation:
``paired`` (default) its activation on the task's corrupt inputs; ``resample`` its activation on
another prompt of the clean batch (a fixed random permutation from ``seed``); ``mean`` its mean over
the clean batch at the same position; ``zero`` zeros.

``direction`` says which run is patched: ``noise`` (the default everywhere, ``DEFAULT_DIRECTION``) runs
the clean input and patches corrupt activations in (the score is how much behaviour is lost);
``denoise`` runs the corrupt input and patches clean activations in (TransformerLens' ``patching``
module does this; the score is how much of the clean behaviour one component restores). Either way a
positive score means the component helps the clean answer.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.task.task import Task
from pathpatch.vocabulary import ABLATIONS, CORRUPTIONS, DEFAULT_CORRUPTION, DEFAULT_DIRECTION, DIRECTIONS, Corruption, Direction


@dataclass(frozen=True, kw_only=True)
class PatchConfig:
    """How patching runs.

    Attributes:
        corruption: What patched-out activations carry (``paired``, ``resample``, ``mean``, ``zero``).
        direction: ``noise`` (default: patch corrupt into clean) or ``denoise`` (patch clean into corrupt, as
            TransformerLens' ``patching`` helpers do).
        max_memory: Activation memory budget per forward pass, in bytes; sets variants per chunk.
            None (default): half the free memory of a CUDA device at call time, 1.5 GB on CPU
            (``schedule.memory_budget``); a chunk that still runs out of CUDA memory is halved and retried.
        chunk: Variants per forward pass; overrides ``max_memory`` when given.
        normalize: Add ``normalized`` = score / (clean - corrupt metric) to score tables.
        seed: Seed of the ``resample`` permutation.
        progress: Show a tqdm progress bar.
    """

    corruption: Corruption = DEFAULT_CORRUPTION
    direction: Direction = DEFAULT_DIRECTION
    max_memory: int | float | None = None
    chunk: int | None = None
    normalize: bool = True
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.corruption not in CORRUPTIONS:
            raise InputError(f"Unknown corruption {self.corruption!r}; choose one of {', '.join(CORRUPTIONS)}.")
        if self.direction not in DIRECTIONS:
            raise InputError(f"Unknown direction {self.direction!r}; choose 'noise' or 'denoise'.")
        if self.direction == "denoise" and self.corruption in ABLATIONS:
            raise InputError(
                f"direction='denoise' patches clean activations into a corrupt run, but corruption="
                f"{self.corruption!r} has no corrupt run; use direction='noise' for ablations."
            )
        if self.chunk is not None and (isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1):
            raise InputError(f"chunk={self.chunk!r}; give at least 1 variant per forward pass (an int), or None for automatic.")
        memory = self.max_memory
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, (int, float)) or not math.isfinite(memory) or memory <= 0):
            raise InputError(f"max_memory={memory!r}; give a positive, finite budget in bytes (e.g. 2 * 2**30), or None for automatic.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"seed={self.seed!r}; give an integer.")
        for key in ("normalize", "progress"):
            if not isinstance(getattr(self, key), bool):
                raise InputError(f"{key}={getattr(self, key)!r}; give True or False.")


def corrupt_inputs(task: Task, config: PatchConfig) -> Tensor | None:
    """Return the inputs whose activations are the corrupt ones, or None for mean/zero ablation."""
    if config.corruption == "paired":
        return task.corrupt
    if config.corruption == "resample":
        generator = torch.Generator().manual_seed(config.seed)
        order = torch.randperm(task.clean.shape[0], generator=generator).to(task.clean.device)
        return task.clean[order]
    return None


def ablate(clean: Tensor, corrupt: Tensor | None, corruption: Corruption) -> Tensor:
    """Return the corrupt value of an activation ``[batch ...]`` given its clean value."""
    if corruption == "mean":
        return clean.mean(0, keepdim=True).expand_as(clean)
    if corruption == "zero":
        return torch.zeros_like(clean)
    assert corrupt is not None
    return corrupt


NOISE = PatchConfig(direction="noise")  # the default of every engine entry point
