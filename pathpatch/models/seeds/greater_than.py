"""Greater-than (Hanna et al. 2023), for tokenizers that write numbers one digit per token.

"The war lasted from the year 1732 to the year 17" -> a year after 1732. In GPT-2's tokenizer "32" is one
token, so the paper reads the next two-digit token and scores the probability of the years after YY minus
that of the years up to YY. Tokenizers that split numbers into digits (SmolLM2, Llama, Qwen, ...) end the
prompt at "17" and predict the tens digit next, so this version reads that digit and asks how much the
model prefers the tens digits greater than YY's to the smaller ones: the metric is the mean logit
difference over every (greater digit, smaller digit) pair, which equals the mean logit of the greater tens
digits minus the mean logit of the smaller ones. YY's own tens digit counts on neither side (the year
could then fall either way). Each pair is one answer / wrong answer of the task, all read at the last
token (the read position repeated once per pair), so the metric is ``logit_diff`` and needs nothing beyond
the prompt's own answers: prompts can be split, chunked and resampled like any other.

The clean YY has its tens digit t in 1..8, so that both sides have digits ((9 - t) * t pairs; prompts with
as many pairs form one group of ``TaskGroups``); the corrupt prompt is the same sentence with YY = 01
(corruption ``01``, the paper's), where every later decade is possible. Nouns are the paper's, kept where
a single token; centuries are 11..17. Positions are labelled ``BOS``, ``NOUN``, ``YY_tens``, ``YY_units``
and ``END``; every prompt has the same length. The per-prompt ``features`` hold ``yy``, the clean YY.
"""
import torch
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.task.groups import AnyTask, Prompt, from_prompts
from pathpatch.task.lm_tasks import encode, fill, pieces, position_labels, require_tokenizer, single_tokens, word_positions

NAME = "greater-than"
CORRUPTIONS = ("01",)
CENTURIES = tuple(range(11, 18))
TEMPLATE = "The {noun} lasted from the year {century}{yy} to the year {century}"
NOUNS = (
    "abduction", "accord", "affair", "agreement", "appraisal", "assaults", "assessment", "attack", "attempts",
    "campaign", "captivity", "case", "challenge", "chaos", "clash", "collaboration", "coma", "competition",
    "confrontation", "consequence", "conspiracy", "construction", "consultation", "contact", "contract", "convention",
    "cooperation", "custody", "deal", "decline", "decrease", "demonstrations", "development", "disagreement", "disorder",
    "dispute", "domination", "dynasty", "effect", "effort", "employment", "endeavor", "engagement", "epidemic",
    "evaluation", "exchange", "existence", "expansion", "expedition", "experiments", "fall", "fame", "flights",
    "friendship", "growth", "hardship", "hostility", "illness", "impact", "imprisonment", "improvement", "incarceration",
    "increase", "insurgency", "invasion", "investigation", "journey", "kingdom", "marriage", "modernization",
    "negotiation", "notoriety", "obstruction", "operation", "order", "outbreak", "outcome", "overhaul", "patrols",
    "pilgrimage", "plague", "plan", "practice", "process", "program", "progress", "project", "pursuit", "quest", "raids",
    "reforms", "reign", "relationship", "retaliation", "riot", "rise", "rivalry", "romance", "rule", "sanctions",
    "shift", "siege", "slump", "stature", "stint", "strikes", "study", "test", "testing", "tests", "therapy", "tour",
    "tradition", "treaty", "trial", "trip", "unemployment", "voyage", "warfare", "work",
)


def digit_pairs(tens: int) -> tuple[list[int], list[int]]:
    """Return every (greater, smaller) pair of tens digits around ``tens``, as two aligned lists.

    Examples:
        >>> digit_pairs(7)
        ([8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9], [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6])
    """
    pairs = [(greater, smaller) for greater in range(tens + 1, 10) for smaller in range(tens)]
    return [g for g, _ in pairs], [s for _, s in pairs]


def make_task(n: int, seed: int, corruption: str | None = None, model: torch.nn.Module | None = None) -> AnyTask:
    """Return ``n`` greater-than prompt pairs drawn from ``seed``, each read at its last token once per digit pair.

    Returns:
        ``TaskGroups`` of prompts with as many digit pairs (a ``Task`` when all have as many), metric ``logit_diff``.

    Raises:
        ValueError: No tokenizer, unknown corruption, no single-token noun, or a tokenizer that does not
            write a year as one token per digit (the message shows what it made of one).
    """
    require_tokenizer(model, NAME)
    corruption = corruption or CORRUPTIONS[0]
    if corruption not in CORRUPTIONS:
        raise InputError(f"Task '{NAME}': unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}.")
    nouns = list(single_tokens(model, NOUNS, NAME, "noun", 1).items())
    generator = torch.Generator().manual_seed(seed)
    noun_at = torch.randint(len(nouns), (n,), generator=generator).tolist()
    century_at = torch.randint(len(CENTURIES), (n,), generator=generator).tolist()
    years = torch.randint(10, 90, (n,), generator=generator).tolist()  # tens digit 1..8: both sides have digits
    digits = digit_tokens(model, fill(TEMPLATE, {"noun": nouns[0][0], "century": "17", "yy": "32"})[0])
    prompts = [_pair(model, nouns[i], CENTURIES[c], year, digits) for i, c, year in zip(noun_at, century_at, years)]
    for prompt in prompts[1:]:
        if len(prompt.clean) != len(prompts[0].clean) or prompt.labels != prompts[0].labels:
            raise InputError(f"Task '{NAME}': prompts tokenize to different layouts ({prompts[0].labels} vs {prompt.labels}); "
                             "this tokenizer splits the template differently around some noun or year; use another model.")
    return from_prompts(NAME, prompts, "logit_diff", corruption)


def _pair(model: torch.nn.Module, noun: tuple[str, int], century: int, year: int, digits: Tensor) -> Prompt:
    """Return one prompt pair with its digit pairs and position labels, checking that every digit is a token of its own."""
    values = {"noun": noun[0], "century": str(century)}
    text, ends = fill(TEMPLATE, {**values, "yy": f"{year:02d}"})
    tokens = encode(model, text)
    where = word_positions(model, NAME, text, tokens, ends, {"noun": noun[1], "yy": int(digits[year % 10])})
    units = where["yy"]
    year_digits = digits[[int(d) for d in f"{century}{year:02d}"]].tolist()
    longer = encode(model, text + f"{year:02d}")  # the answer: the tens digit must come next, as a token of its own
    in_prompt = tokens[units - 3 : units + 1].tolist() == year_digits and tokens[-2:].tolist() == year_digits[:2]
    next_up = torch.equal(longer[: len(tokens)], tokens) and longer[len(tokens) :].tolist() == year_digits[2:]
    if not (in_prompt and next_up):
        raise InputError(_not_digits(model, f"{century}{year:02d}"))
    corrupt = encode(model, fill(TEMPLATE, {**values, "yy": "01"})[0])
    if len(corrupt) != len(tokens):
        raise InputError(_not_digits(model, f"{century}01"))
    labels = position_labels(len(tokens), {"NOUN": where["noun"], "YY_tens": units - 1, "YY_units": units})
    greater, smaller = digit_pairs(year // 10)
    return Prompt(tokens, corrupt, digits[greater], digits[smaller], torch.full((len(greater),), len(tokens) - 1),
                  features={"yy": float(year)}, labels=labels)


def digit_tokens(model: torch.nn.Module, prompt: str) -> Tensor:
    """Return the ids of the digits 0..9 as the token right after ``prompt``; raise ValueError unless each is one token."""
    start = encode(model, prompt)
    ids = []
    for digit in range(10):
        tokens = encode(model, f"{prompt}{digit}{digit}")
        if len(tokens) != len(start) + 2 or not torch.equal(tokens[: len(start)], start) or tokens[-1] != tokens[-2]:
            raise InputError(_not_digits(model, f"{prompt[-2:]}{digit}{digit}"))
        ids.append(int(tokens[-1]))
    return torch.tensor(ids)


def _not_digits(model: torch.nn.Module, year: str) -> str:
    """The error for a tokenizer that does not write ``year`` one digit per token."""
    return (f"Task '{NAME}': this model's tokenizer writes {' ' + year!r} as {pieces(model, ' ' + year)}, not one token per digit; "
            "the task reads the tens digit as the next token, so it needs a tokenizer that splits numbers into digits "
            "(SmolLM2, Llama, Qwen). GPT-2-style tokenizers with two-digit tokens need the paper's two-digit version.")
