"""S1, next weekday (document ``001``): "Today it is Monday so tomorrow it is" -> " Tuesday".

A task for any model with a tokenizer on disk (no model is bundled: GPT-2 small cannot be downloaded
here). Prompts fill a few templates with each day; the corrupt prompt names a different day in the same
template, so the answer moves. The metric is the logit difference between the clean answer (the day after
the clean day) and the corrupt answer (the day after the corrupt day), read at the last position. Days
must be single tokens with a leading space (true of GPT-2's and SmolLM2's tokenizers); a day that splits
is refused with its pieces. Prompts start with the tokenizer's own BOS token.

Templates may tokenize to different lengths (SmolLM2 splits "Yesterday"), giving ``TaskGroups`` of
same-length prompts. Where the prompts do not all share one layout (one length, the day at one index),
positions are labelled ``BOS``, ``DAY`` and ``END`` (the rest ``other``) so position-aware edges name the
same role in every prompt; where they do (GPT-2), positions keep their indices, as a fixed template's do.
"""

from dataclasses import replace

import torch

from pathpatch.errors import InputError
from pathpatch.task.groups import AnyTask, Prompt, from_prompts
from pathpatch.task.lm_tasks import encode, fill, position_labels, require_tokenizer, single_token, word_positions

NAME = "weekday"
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TEMPLATES = (
    "Today it is {} so tomorrow it is",
    "Yesterday it was {} so today it is",
    "If today is {} then tomorrow it is",
)
CORRUPTIONS = ("other-day",)


def day_token(model: torch.nn.Module, day: str) -> int:
    """Return the token id of ``' ' + day``; raise ValueError naming the day and its pieces if it is not one token."""
    return single_token(model, " " + day, NAME, "day")


def make_task(n: int, seed: int, corruption: str | None = None, model: torch.nn.Module | None = None) -> AnyTask:
    """Return ``n`` prompts cycling over templates and days, each paired with another day.

    Returns:
        A ``Task``, or ``TaskGroups`` when the templates tokenize to different lengths.

    Raises:
        ValueError: No tokenizer, a day that is several tokens, or a template the tokenizer merges with the day.
    """
    require_tokenizer(model, NAME)
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.randint(1, len(DAYS), (n,), generator=generator).tolist()
    tokens = [day_token(model, day) for day in DAYS]
    prompts = []
    for i, shift in enumerate(shifts):
        template, day = TEMPLATES[i // len(DAYS) % len(TEMPLATES)].replace("{}", "{day}"), i % len(DAYS)
        other = (day + shift) % len(DAYS)
        text, ends = fill(template, {"day": DAYS[day]})
        clean = encode(model, text)
        at = word_positions(model, NAME, text, clean, ends, {"day": tokens[day]})["day"]
        corrupt_text, corrupt_ends = fill(template, {"day": DAYS[other]})
        corrupt = encode(model, corrupt_text)
        word_positions(model, NAME, corrupt_text, corrupt, corrupt_ends, {"day": tokens[other]})
        if len(corrupt) != len(clean):
            raise InputError(f"Task '{NAME}': {text!r} is {len(clean)} tokens but {corrupt_text!r} is {len(corrupt)}; "
                             "a pair must have the same length. Use a model whose tokenizer keeps every day one token.")
        answer, wrong = tokens[(day + 1) % len(DAYS)], tokens[(other + 1) % len(DAYS)]
        prompts.append(Prompt(clean, corrupt, torch.tensor([answer]), torch.tensor([wrong]), torch.tensor([len(clean) - 1]),
                              labels=position_labels(len(clean), {"DAY": at})))
    if len({(len(p.clean), p.labels) for p in prompts}) == 1:  # one layout: indices name the same role in every prompt
        prompts = [replace(p, labels=None) for p in prompts]
    return from_prompts(NAME, prompts, "logit_diff", corruption or CORRUPTIONS[0])
