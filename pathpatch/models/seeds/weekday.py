"""S1, next weekday (document ``001``): "Today it is Monday so tomorrow it is" -> " Tuesday".

A task for any model with a GPT-2-style tokenizer on disk (no model is bundled: GPT-2 small cannot
be downloaded here). Prompts fill a few templates with each day; the corrupt prompt names a different
day in the same template, so the answer moves. The metric is the logit difference between the clean
answer (the day after the clean day) and the corrupt answer (the day after the corrupt day), read
at the last position; days must be single tokens with a leading space, as in GPT-2's vocabulary.
"""

import torch
from transformer_lens import HookedTransformer

from pathpatch.models.tasks import Task

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TEMPLATES = (
    "Today it is {} so tomorrow it is",
    "Yesterday it was {} so today it is",
    "If today is {} then tomorrow it is",
)
CORRUPTIONS = ("other-day",)


def day_token(model: HookedTransformer, day: str) -> int:
    """Return the token id of ``' ' + day``; raise ValueError if it is not a single token."""
    ids = model.to_tokens(" " + day, prepend_bos=False)[0]
    if len(ids) != 1:
        raise ValueError(
            f"Task 'weekday': ' {day}' is {len(ids)} tokens in this model's tokenizer; the task needs each "
            "day to be one token (true for GPT-2's tokenizer). Use a GPT-2-tokenizer model."
        )
    return int(ids[0])


def make_task(n: int, seed: int, corruption: str | None = None, model: HookedTransformer | None = None) -> Task:
    """Return ``n`` prompts cycling over templates and days, each paired with another day."""
    if model is None or getattr(model, "tokenizer", None) is None:
        raise ValueError(
            "Task 'weekday' needs a model with a tokenizer to build its prompts; pass model=load_model(HF_DIR)."
        )
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.randint(1, len(DAYS), (n,), generator=generator).tolist()
    cases = [(TEMPLATES[i // len(DAYS) % len(TEMPLATES)], i % len(DAYS)) for i in range(n)]
    clean_prompts = [template.format(DAYS[day]) for template, day in cases]
    corrupt_days = [(day + shift) % len(DAYS) for (_, day), shift in zip(cases, shifts)]
    corrupt_prompts = [template.format(DAYS[d]) for (template, _), d in zip(cases, corrupt_days)]
    tokens = [day_token(model, day) for day in DAYS]
    _check_same_lengths(model, clean_prompts, corrupt_prompts)
    clean = model.to_tokens(clean_prompts, prepend_bos=True)
    corrupt = model.to_tokens(corrupt_prompts, prepend_bos=True)
    answers = [tokens[(day + 1) % len(DAYS)] for _, day in cases]
    wrong = [tokens[(d + 1) % len(DAYS)] for d in corrupt_days]
    return Task(
        name="weekday",
        clean=clean.cpu(),
        corrupt=corrupt.cpu(),
        answers=torch.tensor(answers)[:, None],
        wrong_answers=torch.tensor(wrong)[:, None],
        positions=torch.tensor([clean.shape[1] - 1]),
        metric="logit_diff",
        corruption=corruption or "other-day",
    )


def _check_same_lengths(model: HookedTransformer, clean: list[str], corrupt: list[str]) -> None:
    """Raise ValueError if any prompt tokenizes to a different length than its template's others."""
    lengths = {len(model.to_str_tokens(p, prepend_bos=True)) for p in clean + corrupt}
    if len(lengths) > 1:
        raise ValueError(
            f"Task 'weekday': prompts tokenize to lengths {sorted(lengths)}; they must all match so the "
            "answer is read at one position. Use a tokenizer where each template has the same length."
        )
