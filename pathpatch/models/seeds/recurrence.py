"""S4, linear recurrences (document ``004``): predict the next vector of ``a_{i+1} = c * a_i + d``.

Each sequence holds 14 vectors of size 40: ``a_0`` uniform in [-3, 3], then ``a_{j} = c a_{j-1} + d``
with a scalar ``c`` and a vector ``d`` each uniform in [-2, 2]; the sequence is scaled so its largest
norm is uniform in [1, 2]. The model reads the first 13 vectors (``x @ W_E``) and, at positions 2..12,
predicts vectors 3..13 through its unembedding, trained with mean squared error. The document finds
layer-0 previous-token heads and negative copying heads (OV close to -I) in layer 2.

Corruption ``resample`` (default): an independent recurrence; the metric is the MSE against the
clean targets (lower is better).
"""

import torch
from torch import Tensor

from pathpatch.models.seeds.common import Batch
from pathpatch.task.task import Task

VECTOR_DIM = 40
SEQ_LEN = 14
COMPL = 1
POSITIONS = tuple(range(2 * COMPL, SEQ_LEN - 1))
CORRUPTIONS = ("resample",)

CONFIG = dict(
    n_layers=3,
    n_heads=8,
    d_model=128,
    d_head=64,
    d_mlp=3072,
    n_ctx=32,
    d_vocab=VECTOR_DIM,
    d_vocab_out=VECTOR_DIM,
    act_fn="gelu_new",
    normalization_type="LN",
    initializer_range=0.04,
    eps=1e-5,
    seed=0,
)


def uniform(low: float, high: float, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Return a tensor uniform in ``[low, high)``."""
    return torch.rand(shape, generator=generator) * (high - low) + low


def recurrences(n: int, generator: torch.Generator) -> Tensor:
    """Return ``[batch 14 40]`` linear recurrences, each scaled to a largest norm in [1, 2]."""
    c = uniform(-2, 2, (n, 1), generator)
    d = uniform(-2, 2, (n, VECTOR_DIM), generator)
    steps = [uniform(-3, 3, (n, VECTOR_DIM), generator)]
    for _ in range(SEQ_LEN - 1):
        steps.append(c * steps[-1] + d)
    seq = torch.stack(steps, dim=1)  # [batch pos d_vocab]
    max_norm = seq.norm(dim=-1).amax(dim=1)[:, None, None]  # [batch 1 1]
    cap = uniform(1, 2, (n, 1, 1), generator)
    return seq / (max_norm / cap)


def sample(n: int, generator: torch.Generator) -> Batch:
    """Return inputs (the first 13 vectors) and next-vector targets at positions 2..12."""
    seq = recurrences(n, generator)
    targets = seq[:, [p + 1 for p in POSITIONS]]
    return Batch(seq[:, :-1], targets, torch.ones(targets.shape[:2], dtype=torch.bool))


def make_task(n: int, seed: int, corruption: str | None = None) -> Task:
    """Return ``n`` clean recurrences, each paired with an independent corrupt one."""
    generator = torch.Generator().manual_seed(seed)
    clean, corrupt = sample(n, generator), sample(n, generator)
    return Task(
        name="recurrence",
        clean=clean.inputs,
        corrupt=corrupt.inputs,
        answers=clean.targets,
        wrong_answers=None,
        positions=torch.tensor(POSITIONS),
        metric="mse",
        corruption=corruption or "resample",
    )
