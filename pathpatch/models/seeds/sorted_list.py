"""S2, sorted list (document ``002``): sort ten distinct values in 0..50.

Sequence: ``[x0 .. x9, SEP, s0 .. s9]`` (SEP=51), ``s`` the sorted ``x``. The model predicts ``s0`` at
SEP and ``s_{i+1}`` at ``s_i`` (positions 10..19). The document's model is one attention-only layer
of two heads with LayerNorm: each head attends from ``s_i`` to the smallest listed value larger than
it and copies it (OV copying, QK "next larger"); head L0H1 covers most of the vocabulary, L0H0 a band
around 28..37, and mean-ablating L0H1 costs far more than L0H0.

Corruption ``resample`` (default): an independent list, whose sorted tokens are the wrong answers.
"""

import torch
from torch import Tensor

from pathpatch.models.seeds.common import Batch, distinct_values, next_token_task
from pathpatch.task.task import Task

LIST_LEN = 10
LABELS = tuple(f"x{i}" for i in range(LIST_LEN)) + ("SEP",) + tuple(f"s{i}" for i in range(LIST_LEN))
MAX_VALUE = 50
SEP = MAX_VALUE + 1
POSITIONS = tuple(range(LIST_LEN, 2 * LIST_LEN))
CORRUPTIONS = ("resample",)

CONFIG = dict(
    n_layers=1,
    n_heads=2,
    d_model=96,
    d_head=48,
    n_ctx=2 * LIST_LEN + 1,
    d_vocab=MAX_VALUE + 2,
    d_vocab_out=MAX_VALUE + 1,
    attn_only=True,
    normalization_type="LN",
    seed=0,
)


def sequences(values: Tensor) -> Tensor:
    """Return ``[batch 21]`` tokens: the unsorted values, SEP, the sorted values."""
    sep = torch.full((values.shape[0], 1), SEP, dtype=torch.long)
    return torch.cat([values, sep, values.sort(-1).values], dim=1)


def _batch(n: int, generator: torch.Generator) -> Tensor:
    return sequences(distinct_values(n, LIST_LEN, MAX_VALUE + 1, generator))


def sample(n: int, generator: torch.Generator) -> Batch:
    """Return a batch of lists drawn without replacement, with the sorted tokens as targets."""
    tokens = _batch(n, generator)
    targets = tokens[:, [p + 1 for p in POSITIONS]]
    return Batch(tokens, targets, torch.ones_like(targets, dtype=torch.bool))


def make_task(n: int, seed: int, corruption: str | None = None) -> Task:
    """Return ``n`` clean lists, each paired with an independently drawn corrupt list."""
    generator = torch.Generator().manual_seed(seed)
    clean, corrupt = _batch(n, generator), _batch(n, generator)
    return next_token_task("sorted-list", clean, corrupt, POSITIONS, corruption or "resample", LABELS)
