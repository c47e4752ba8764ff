"""Induction on repeated random tokens, for any model with a tokenizer.

A sequence of random word tokens is repeated: ``BOS r1 .. rL r1 .. r(L-1)``; at the last token, r(L-1),
the next token is r(L). Only the earlier copy of the sequence says so, so a model predicts it with induction
heads (Olsson et al. 2022): a previous-token head writes "r(L-1) came before" at the position of rL in the
first half, and an induction head at the last position, whose query is r(L-1), finds that position and
copies rL. The metric is the logit difference between rL and the corrupt prompt's induction answer.

Corruption ``first-half`` (the only one) resamples every first-half token except the copy of the last token:
``BOS s1 .. s(L-2) r(L-1) sL r1 .. r(L-1)``. The corrupt prompt still holds one earlier r(L-1), now followed
by sL, so its induction answer is sL (the wrong answer), and the second half, where the metric is read, is
the same in both prompts. Tokens are ordinary word tokens of the tokenizer (a space and letters, never a
special token), distinct within a pair, drawn from ``seed``.

Positions are labelled ``BOS``, ``first`` (the first half's tokens without a role), ``match`` (the
first-half copy of the last token), ``target`` (the first-half position of the answer), ``second`` (the
second half before the last token) and ``END``. Every prompt has the same ``2L`` positions.
"""

import torch

from pathpatch.errors import InputError
from pathpatch.task.lm_tasks import BOS, END, bos_token, require_tokenizer, word_tokens
from pathpatch.task.task import Task

NAME = "induction"
CORRUPTIONS = ("first-half",)
LENGTH = 8  # L: random tokens in the first half


def labels(length: int) -> tuple[str, ...]:
    """Return the position labels of a sequence whose first half has ``length`` tokens.

    Examples:
        >>> labels(3)
        ('BOS', 'first', 'match', 'target', 'second', 'END')
    """
    return (BOS, *["first"] * (length - 2), "match", "target", *["second"] * (length - 2), END)


def make_task(
    n: int, seed: int, corruption: str | None = None, model: torch.nn.Module | None = None, *, length: int = LENGTH
) -> Task:
    """Return ``n`` repeated-token prompt pairs of ``2 * length`` positions, read at the last one.

    Args:
        n: Number of prompt pairs.
        seed: Seed of the token draws.
        corruption: ``first-half`` (the default and only one).
        model: A model with a tokenizer; sequences start with its tokenizer's BOS token.
        length: Random tokens in the first half (at least 2).

    Raises:
        ValueError: No tokenizer, unknown corruption, ``length`` < 2, or fewer than ``2 * length - 1`` word tokens.
    """
    require_tokenizer(model, NAME)
    corruption = corruption or CORRUPTIONS[0]
    if corruption not in CORRUPTIONS:
        raise InputError(f"Task '{NAME}': unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}.")
    if length < 2:
        raise InputError(f"Task '{NAME}': length={length}; the first half needs at least 2 tokens (the match and the target).")
    generator = torch.Generator().manual_seed(seed)
    pool = word_tokens(model, NAME, 2 * length - 1, generator)
    drawn = torch.rand(n, len(pool), generator=generator).argsort(-1)[:, : 2 * length - 1]  # [batch token]
    tokens = pool[drawn]  # [batch token]: r1..rL, then L-1 fresh tokens for the corrupt first half
    first, fresh = tokens[:, :length], tokens[:, length:]
    corrupt_first = torch.cat([fresh[:, : length - 2], first[:, length - 2 : length - 1], fresh[:, length - 2 :]], dim=1)
    bos = torch.full((n, 1), bos_token(model, NAME), dtype=torch.long)
    clean = torch.cat([bos, first, first[:, :-1]], dim=1)  # [batch pos]
    corrupt = torch.cat([bos, corrupt_first, first[:, :-1]], dim=1)  # [batch pos]
    return Task(
        name=NAME,
        clean=clean,
        corrupt=corrupt,
        answers=first[:, -1:],
        wrong_answers=corrupt_first[:, -1:],
        positions=torch.tensor([2 * length - 1]),
        metric="logit_diff",
        corruption=corruption,
        labels=labels(length),
    )
