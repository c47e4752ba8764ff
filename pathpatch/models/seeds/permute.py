"""S0, permute lists (document ``000``): apply a permutation of pointers to a list of three values.

Sequence: ``[BOS, a0, a1, a2, MID, p0, p1, p2, END, ans0, ans1, ans2]`` with ``ans_i = a[p_i]``;
values in 0..49, BOS=52, MID=51, END=50. The model predicts ``ans_i`` at positions END, ans0, ans1
(8, 9, 10). The document's circuit is V-composition: head L0H0 at pointer position ``p_i`` attends to
the pointed-to value and copies it; head L1H0 at the prediction position attends to that pointer
position and reads the copied value through its V input.

Corruptions: ``values`` (default) changes all three list values and keeps the pointers, which exposes
the V path (``embed -> L0H0.v`` at the list positions, ``L0H0 -> L1H0.v`` at the pointers);
``pointers`` keeps the list and rotates the pointers, which exposes L0H0's query input.
"""

import torch
from torch import Tensor

from pathpatch.models.seeds.common import Batch, distinct_values, distinct_values_avoiding, next_token_task
from pathpatch.task.task import Task

LIST_LEN = 3
MAX_INT = 50
END, MID, BOS = 50, 51, 52
POSITIONS = (8, 9, 10)
LABELS = ("BOS", "a0", "a1", "a2", "MID", "p0", "p1", "p2", "END", "ans0", "ans1", "ans2")  # position-aware edges: L0H0->L1H0.v@p0
CORRUPTIONS = ("values", "pointers")

CONFIG = dict(
    n_layers=2,
    n_heads=1,
    d_model=128,
    d_head=128,
    n_ctx=3 * LIST_LEN + 3,
    d_vocab=MAX_INT + 3,
    d_vocab_out=MAX_INT,
    attn_only=True,
    normalization_type=None,
    seed=0,
)


def sequences(values: Tensor, pointers: Tensor) -> Tensor:
    """Return token sequences ``[batch 12]`` for list values and pointers, each ``[batch 3]``."""
    n = values.shape[0]
    answers = values.gather(1, pointers)  # [batch 3]

    def column(token: int) -> Tensor:
        return torch.full((n, 1), token, dtype=torch.long)

    return torch.cat([column(BOS), values, column(MID), pointers, column(END), answers], dim=1)


def random_pointers(n: int, generator: torch.Generator) -> Tensor:
    """Return one random permutation of 0..2 per row ``[batch 3]``."""
    return torch.rand(n, LIST_LEN, generator=generator).argsort(-1)


def sample(n: int, generator: torch.Generator) -> Batch:
    """Return a training batch: values drawn with replacement, as in the document."""
    values = torch.randint(0, MAX_INT, (n, LIST_LEN), generator=generator)
    tokens = sequences(values, random_pointers(n, generator))
    targets = tokens[:, [p + 1 for p in POSITIONS]]
    return Batch(tokens, targets, torch.ones_like(targets, dtype=torch.bool))


def make_task(n: int, seed: int, corruption: str | None = None) -> Task:
    """Return ``n`` clean/corrupt pairs with distinct list values, so every answer changes."""
    corruption = corruption or "values"
    generator = torch.Generator().manual_seed(seed)
    values = distinct_values(n, LIST_LEN, MAX_INT, generator)
    pointers = random_pointers(n, generator)
    if corruption == "values":
        corrupt = sequences(distinct_values_avoiding(values, MAX_INT, generator), pointers)
    else:
        corrupt = sequences(values, pointers.roll(1, dims=1))
    return next_token_task("permute", sequences(values, pointers), corrupt, POSITIONS, corruption, LABELS)
