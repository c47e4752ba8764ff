"""Common ground of the tasks for pretrained language models: text prompts, one-token words, named positions.

The tasks ``ioi``, ``induction``, ``greater-than`` and ``weekday`` run on any model that carries its own
tokenizer (a GPT-2, a SmolLM2, a Llama on disk) rather than on a bundled toy model. Their prompts are text
filled into templates, tokenized by that tokenizer with its own BOS token in front, so one generator
serves every tokenizer; what differs between tokenizers is checked here, once, with errors that name the
word and what the tokenizer made of it.

A word a task reads as an answer (a name, a day, a digit) must be a single token: the logit difference
between two answers is only the model's preference between them when each answer is one token. A fixed
word that splits is refused (``ValueError`` naming the word and its pieces); words drawn from a list are
filtered to the single-token ones, and refused only when too few remain.

The same template can tokenize to different lengths in different tokenizers, and different templates to
different lengths in one tokenizer. Prompts are therefore built one by one and joined by
``groups.from_prompts``, which groups prompts of one length (``TaskGroups``), and the positions that play a
role get names (``S1``, ``IO``, ``END``) found by tokenizing the text up to each filled word, so that
position-aware circuits name the same role in every prompt whatever its length.
"""

import re
import string
from collections.abc import Mapping, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.task.task import OTHER

BOS, END = "BOS", "END"  # the labels of the first and the last position of every labelled prompt
WORD = re.compile(r"^ [A-Za-z]{2,}$")  # an ordinary word token: a space and letters, as a word inside a sentence


def require_tokenizer(model: torch.nn.Module | None, task: str) -> None:
    """Raise ValueError unless ``model`` has a tokenizer to build the task's prompts with."""
    if model is None or getattr(model, "tokenizer", None) is None:
        got = "no model was given" if model is None else "the model has no tokenizer"
        raise InputError(
            f"Task '{task}' needs a model with a tokenizer to build its prompts, but {got}; pass model=load_model(HF_DIR) "
            "(a Hugging Face folder or a GGUF file with its tokenizer), or --model on the command line."
        )


def pieces(model: torch.nn.Module, text: str) -> list[str]:
    """Return the tokens ``text`` becomes in the model's tokenizer, as strings, without BOS."""
    return [str(piece) for piece in model.to_str_tokens(text, prepend_bos=False)]


def single_token(model: torch.nn.Module, text: str, task: str, what: str) -> int:
    """Return the token id of ``text``; raise ValueError naming it and its pieces unless it is one token.

    Args:
        model: A model with a tokenizer.
        text: The word as the prompt holds it, usually with its leading space (``" Mary"``).
        task: Task name, for the message.
        what: What the word is in the task (``"name"``, ``"day"``), for the message.
    """
    split = pieces(model, text)
    if len(split) != 1:
        raise InputError(
            f"Task '{task}': the {what} {text!r} is {len(split)} tokens {split} in this model's tokenizer; the task reads "
            f"each {what} as one token, so pick {what}s that are single tokens here (or a model whose tokenizer keeps them whole)."
        )
    return int(model.to_tokens(text, prepend_bos=False, move_to_device=False, truncate=False)[0, 0])


def single_tokens(model: torch.nn.Module, words: Sequence[str], task: str, what: str, at_least: int) -> dict[str, int]:
    """Return ``{word: token id}`` of the words that are one token with a leading space, in the given order.

    Raises:
        ValueError: Fewer than ``at_least`` words are single tokens; the message shows some that split.
    """
    kept, split = {}, {}
    for word in words:
        tokens = pieces(model, " " + word)
        if len(tokens) == 1:
            kept[word] = int(model.to_tokens(" " + word, prepend_bos=False, move_to_device=False, truncate=False)[0, 0])
        else:
            split[word] = tokens
    if len(kept) < at_least:
        shown = "; ".join(f"' {w}' -> {len(p)} tokens {p}" for w, p in list(split.items())[:4])
        raise InputError(
            f"Task '{task}': only {len(kept)} of {len(words)} {what}s are single tokens (with a leading space) in this model's "
            f"tokenizer, and the task needs at least {at_least}; {shown}. Use a model whose tokenizer keeps common words whole."
        )
    return kept


def bos_token(model: torch.nn.Module, task: str) -> int:
    """Return the id of the tokenizer's own BOS token; raise ValueError if it has none."""
    bos = getattr(model.tokenizer, "bos_token_id", None)
    if bos is None:
        raise InputError(f"Task '{task}': the model's tokenizer has no BOS token; the task's prompts start with one. "
                         "Set tokenizer.bos_token (e.g. to its end-of-text token) before building the task.")
    return int(bos)


def encode(model: torch.nn.Module, text: str) -> Int[Tensor, " pos"]:
    """Return the token ids of ``text`` with the tokenizer's BOS in front, on the CPU."""
    return model.to_tokens(text, prepend_bos=True, move_to_device=False, truncate=False)[0].long()


def fill(template: str, values: Mapping[str, str]) -> tuple[str, dict[str, int]]:
    """Fill ``{field}`` slots of ``template``; return the text and where each filled field ends in it.

    Examples:
        >>> fill("When {A} met {B}", {"A": "Mary", "B": "John"})
        ('When Mary met John', {'A': 9, 'B': 18})
    """
    text, ends = "", {}
    for literal, name, _, _ in string.Formatter().parse(template):
        text += literal
        if name is not None:
            text += values[name]
            ends[name] = len(text)
    return text, ends


def word_positions(model: torch.nn.Module, task: str, text: str, tokens: Tensor, ends: Mapping[str, int],
                   expected: Mapping[str, int]) -> dict[str, int]:
    """Return the position of each filled word in ``tokens``, the tokenized ``text`` (BOS first).

    A word ending at character ``end`` sits at the last position of the tokenized ``text[:end]``; that
    prefix must tokenize as the start of the whole text, with the word's own token there.

    Args:
        ends: For each word's field, where it ends in ``text`` (``fill``'s second value).
        expected: For each field to locate, the token id the word must be.

    Raises:
        ValueError: The tokenizer merges a word with the text around it, so it has no position of its own.
    """
    found = {}
    for name, token in expected.items():
        prefix = encode(model, text[: ends[name]])
        at = len(prefix) - 1
        if at >= len(tokens) or not torch.equal(tokens[: at + 1], prefix) or int(tokens[at]) != token:
            raise InputError(
                f"Task '{task}': in {text!r} this model's tokenizer merges the {name} word ending at character {ends[name]} "
                f"with the text next to it ({pieces(model, text)}), so it has no position of its own; use another template or model."
            )
        found[name] = at
    return found


def position_labels(n_pos: int, named: Mapping[str, int | Sequence[int]]) -> tuple[str, ...]:
    """Return one label per position: ``BOS`` first, ``END`` last, the ``named`` positions, ``other`` elsewhere.

    Examples:
        >>> position_labels(5, {"S1": 2})
        ('BOS', 'other', 'S1', 'other', 'END')
    """
    labels = [OTHER] * n_pos
    for label, where in {BOS: 0, **named, END: n_pos - 1}.items():
        for pos in [where] if isinstance(where, int) else where:
            assert labels[pos] == OTHER, f"position {pos} labelled {labels[pos]!r} and {label!r}"
            labels[pos] = label
    return tuple(labels)


def word_tokens(model: torch.nn.Module, task: str, need: int, generator: torch.Generator, most: int = 8192) -> Int[Tensor, " token"]:
    """Return ids of ordinary word tokens (a space and two or more letters), ascending, to draw random words from.

    The ids looked at are the whole vocabulary when it has at most ``most`` entries, else ``most`` ids drawn by
    ``generator`` (decoding a 50k vocabulary takes a second; a sample gives thousands of words). Special tokens
    never decode to a space and letters, so they are never drawn.

    Raises:
        ValueError: Fewer than ``need`` word tokens were found.
    """
    size = min(len(model.tokenizer), model.cfg.d_vocab)
    ids = torch.arange(size) if size <= most else torch.randperm(size, generator=generator)[:most].sort().values
    texts = model.tokenizer.batch_decode([[i] for i in ids.tolist()])
    special = set(getattr(model.tokenizer, "all_special_ids", []))
    words = [i for i, text in zip(ids.tolist(), texts) if WORD.match(text) and i not in special]
    if len(words) < need:
        raise InputError(f"Task '{task}': this model's tokenizer has {len(words)} ordinary word tokens (a space and letters) "
                         f"among the {len(ids)} looked at, and the task needs {need} distinct ones; use a shorter sequence "
                         "(length=...) or a model with a larger vocabulary.")
    return torch.tensor(words, dtype=torch.long)
