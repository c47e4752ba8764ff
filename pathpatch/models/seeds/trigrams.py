"""S3, trigrams (document ``003``): random tokens with planted trigrams ``(t0, t1) -> t2``.

Vocabulary 0..74; 277 trigrams whose ``(t0, t1)`` prefixes are all different, so the prefix fixes the
completion. Training sequences are 50 uniform random tokens with trigram prefixes planted at random
places; wherever a prefix occurs, the next token is its completion. Only those completions are
predictable, so accuracy counts only them (the document's model: 0.96 of trigrams).

The document's circuit: a previous-token head moves ``t0`` into the residual stream at ``t1``, and the
MLP reads the pair and writes ``t2``. Corruption ``prefix`` (default): replace ``t0`` by the first token
of another trigram with the same ``t1`` and a different completion, whose completion is the wrong answer.
"""

from functools import lru_cache

import torch
from torch import Tensor

from pathpatch.models.seeds.common import Batch
from pathpatch.task.task import Task

D_VOCAB = 75
N_CTX = 50
N_TRIGRAMS = 277
TRIGRAM_SEED = 3
PLANT_RATE = 0.08
TASK_LEN = 12
CORRUPTIONS = ("prefix",)

CONFIG = dict(
    n_layers=1,
    n_heads=1,
    d_model=32,
    d_head=16,
    d_mlp=128,
    n_ctx=N_CTX,
    d_vocab=D_VOCAB,
    act_fn="relu",
    normalization_type="LN",
    seed=0,
)
POSITIONS = tuple(range(N_CTX - 1))


@lru_cache(maxsize=1)
def trigrams() -> Tensor:
    """Return the fixed ``[277 3]`` trigram list (distinct prefixes), drawn from ``TRIGRAM_SEED``."""
    generator = torch.Generator().manual_seed(TRIGRAM_SEED)
    prefixes = torch.randperm(D_VOCAB * D_VOCAB, generator=generator)[:N_TRIGRAMS]  # [trigram]
    completions = torch.randint(0, D_VOCAB, (N_TRIGRAMS,), generator=generator)
    return torch.stack([prefixes // D_VOCAB, prefixes % D_VOCAB, completions], dim=1)


@lru_cache(maxsize=1)
def completion_table() -> Tensor:
    """Return ``[75 75]`` with the completion of each prefix ``(t0, t1)``, or -1 for none."""
    table = torch.full((D_VOCAB, D_VOCAB), -1, dtype=torch.long)
    t = trigrams()
    table[t[:, 0], t[:, 1]] = t[:, 2]
    return table


def complete_trigrams(tokens: Tensor) -> Tensor:
    """Return a copy of ``tokens`` in which every trigram prefix is followed by its completion."""
    tokens = tokens.clone()
    table = completion_table()
    for j in range(2, tokens.shape[1]):
        done = table[tokens[:, j - 2], tokens[:, j - 1]]  # [batch]
        tokens[:, j] = torch.where(done >= 0, done, tokens[:, j])
    return tokens


def sample(n: int, generator: torch.Generator) -> Batch:
    """Return random sequences with planted trigrams; accuracy counts trigram completions only."""
    tokens = torch.randint(0, D_VOCAB, (n, N_CTX), generator=generator)
    t = trigrams()
    plant = torch.rand(n, N_CTX - 2, generator=generator) < PLANT_RATE  # [batch pos]
    which = torch.randint(0, N_TRIGRAMS, (n, N_CTX - 2), generator=generator)
    for j in range(N_CTX - 2):
        rows = plant[:, j]
        tokens[rows, j] = t[which[rows, j], 0]
        tokens[rows, j + 1] = t[which[rows, j], 1]
    tokens = complete_trigrams(tokens)
    mask = torch.zeros(n, N_CTX - 1, dtype=torch.bool)
    mask[:, 1:] = completion_table()[tokens[:, :-2], tokens[:, 1:-1]] >= 0
    return Batch(tokens, tokens[:, 1:], mask)


def rival_pairs() -> Tensor:
    """Return ``[pair 2]`` indices of trigrams sharing ``t1`` but differing in ``t0`` and ``t2``."""
    t = trigrams()
    same_t1 = t[:, None, 1] == t[None, :, 1]
    differ = (t[:, None, 0] != t[None, :, 0]) & (t[:, None, 2] != t[None, :, 2])
    return torch.nonzero(same_t1 & differ)


def make_task(n: int, seed: int, corruption: str | None = None) -> Task:
    """Return ``n`` prompts ending in a trigram prefix; the corrupt one swaps ``t0`` for a rival's."""
    generator = torch.Generator().manual_seed(seed)
    t = trigrams()
    pairs = rival_pairs()
    chosen = pairs[torch.randint(0, len(pairs), (n,), generator=generator)]  # [batch 2]
    filler = complete_trigrams(torch.randint(0, D_VOCAB, (n, TASK_LEN), generator=generator))
    clean, corrupt = filler.clone(), filler.clone()
    clean[:, -2:] = t[chosen[:, 0], :2]
    corrupt[:, -2:] = t[chosen[:, 1], :2]
    return Task(
        name="trigrams",
        clean=clean,
        corrupt=corrupt,
        answers=t[chosen[:, 0], 2:],
        wrong_answers=t[chosen[:, 1], 2:],
        positions=torch.tensor([TASK_LEN - 1]),
        metric="logit_diff",
        corruption=corruption or "prefix",
    )
