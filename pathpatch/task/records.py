"""Prompt records (as a file gives them) to a task: text tokenized by the model's tokenizer, token ids and
vectors checked against its vocabulary, answers one token each, positions and labels read, and the pairs
grouped by shape (``groups.from_prompts``).

Every problem names its file, line and field and says how to fix it, as
``FILE:LINE: field 'FIELD': problem; fix``; values quoted in a message are cut to 60 characters.
"""

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from pathpatch.errors import InputError, listed
from pathpatch.task.groups import AnyTask, Prompt, from_prompts
from pathpatch.task.task import LABEL, OTHER
from pathpatch.vocabulary import METRICS


@dataclass(frozen=True)
class Record:
    """One prompt pair as read from a file: where it is, its raw fields, and each field's name in the file."""

    where: str
    fields: dict
    labels: dict = field(default_factory=dict)

    def fail(self, key: str, problem: str) -> InputError:
        return InputError(f"{self.where}: field '{self.labels.get(key, key)}': {problem}")


@dataclass(frozen=True)
class Records:
    """What a reader returns: the prompt records, the header (or None) and how the format tokenizes."""

    records: list
    header: "Record | None" = None
    prepend_bos: bool | None = None
    vectors: bool = True


def check_metric(metric: object, where: str) -> None:
    """Raise ValueError unless ``metric`` is None, a callable or a known metric name."""
    if metric is not None and not callable(metric) and metric not in METRICS:
        raise InputError(f"{where}: unknown metric {brief(metric)}; choose one of {', '.join(METRICS)}.")


def file_task(path: Path, read: Records, model, n, corruption, metric, name) -> AnyTask:
    """Turn a reader's records into a task: keep the first ``n``, parse them, pick and check the metric."""
    header = read.header.fields if read.header else {}
    if not read.records:
        raise InputError(f"{path}:1: the file has no prompt pairs; add at least one prompt line or row.")
    if n is not None and n > len(read.records):
        raise InputError(f"{path}: n={n} prompts asked for but the file holds {len(read.records)}; ask for n <= {len(read.records)}.")
    kind, prompts = None, []
    for record in read.records[:n]:
        kind_here, prompt = _prompt(record, model, read, kind, read.records[0])
        kind = kind or kind_here
        prompts.append(prompt)
    metric_where = "load_task(metric=...)"
    if metric is None and "metric" in header:
        metric, metric_where = header["metric"], f"{read.header.where}: field 'metric'"
    metric = metric or ("mse" if kind == "vectors" else "logit_diff")
    if isinstance(metric, str) and (metric == "mse") != (kind == "vectors"):
        raise InputError(
            f"{metric_where}: {metric!r} does not fit {kind} prompts; 'mse' is for vector prompts "
            "and needs target vectors, the token metrics (logit_diff, loss, accuracy, kl) need token prompts."
        )
    _check_widths(read.records, prompts)
    prompts = _wrong_answers(read.records, prompts, metric)
    title = name or header.get("name") or path.stem
    return from_prompts(title, prompts, metric, corruption or header.get("corruption") or "paired")


def _check_widths(records: list, prompts: list) -> None:
    """Require every vector prompt to use the first prompt's vector sizes (inputs and targets)."""
    for record, prompt in zip(records, prompts):
        for key, ours, first in (("clean", prompt.clean, prompts[0].clean), ("answer", prompt.answers, prompts[0].answers)):
            if ours.ndim > 1 and ours.shape[-1] != first.shape[-1]:
                raise record.fail(key, f"vectors have {ours.shape[-1]} numbers but the first prompt's ({records[0].where}) "
                                  f"have {first.shape[-1]}; give every prompt vectors of one size.")


def _wrong_answers(records: list, prompts: list, metric) -> list:
    """Require a wrong answer per prompt for ``logit_diff``; drop them unless every prompt has one otherwise."""
    missing = [r for r, p in zip(records, prompts) if p.wrong_answers is None]
    if missing and metric == "logit_diff":
        raise missing[0].fail("wrong_answer", "missing; metric 'logit_diff' needs one wrong answer per read position "
                              "(or use metric loss or accuracy).")
    return [replace(p, wrong_answers=None) for p in prompts] if missing else prompts


def _prompt(record: Record, model, read: Records, kind: str | None, first: Record) -> tuple[str, Prompt]:
    """Parse one record into a ``Prompt``; ``kind`` is the kind of input the earlier records gave."""
    for key in ("clean", "corrupt", "answer"):
        if key not in record.fields:
            raise record.fail(key, "missing; every prompt pair needs clean, corrupt and answer (and wrong_answer for logit_diff).")
    clean_kind, clean = _inputs(record, "clean", model, read)
    corrupt_kind, corrupt = _inputs(record, "corrupt", model, read)
    if corrupt_kind != clean_kind:
        raise record.fail("corrupt", f"is {corrupt_kind} but clean is {clean_kind}; give both as the same kind.")
    if kind is not None and clean_kind != kind:
        raise record.fail("clean", f"is {clean_kind} but the first prompt ({first.where}) is {kind}; one file holds one kind of input.")
    if len(clean) != len(corrupt):
        raise record.fail(
            "corrupt", f"clean has {len(clean)} positions but corrupt has {len(corrupt)}; patching swaps activations "
            "position by position, so a pair needs equal lengths. Reword one of them (e.g. same-length names)."
        )
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    if isinstance(n_ctx, int) and len(clean) > n_ctx:
        raise record.fail("clean", f"has {len(clean)} positions but the model reads at most n_ctx={n_ctx}; shorten the prompt "
                          "or use a model with a longer context.")
    positions = _positions(record, len(clean))
    labels = _labels(record, len(clean))
    if clean_kind == "vectors":
        if record.fields.get("wrong_answer") is not None:
            raise record.fail("wrong_answer", "given for vector prompts; metric 'mse' compares to target vectors only, remove it.")
        return clean_kind, Prompt(clean, corrupt, _targets(record, len(positions), model), None, positions, _features(record), labels)
    answers = _answer_tokens(record, "answer", len(positions), model)
    wrong = _answer_tokens(record, "wrong_answer", len(positions), model) if record.fields.get("wrong_answer") is not None else None
    return clean_kind, Prompt(clean, corrupt, answers, wrong, positions, _features(record), labels)


def _labels(record: Record, length: int) -> tuple[str, ...] | None:
    """One position label per token, from ``labels`` (or a dict ``positions``): a dict of label -> index(es),
    the rest ``other``, or a list of one label per token."""
    key = "labels" if "labels" in record.fields else "positions"
    value = record.fields.get(key)
    if key == "positions" and not isinstance(value, dict):
        return None
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) != length or not all(isinstance(v, str) and LABEL.match(v) for v in value):
            raise record.fail(key, f"a label list needs one name per token ({length} here; names of letters, digits and '_'), "
                              f"got {describe(value)}.")
        return tuple(value)
    if not isinstance(value, dict) or not value:
        raise record.fail(key, f"got {describe(value)}; give {{\"S1\": 2, \"END\": -1}} (label -> position) or one label per token.")
    labels = [OTHER] * length
    for name, where in value.items():
        items = where if isinstance(where, list) else [where]
        if not LABEL.match(name) or name == OTHER:
            raise record.fail(key, f"label {brief(name)} must be a name of letters, digits and '_' other than {OTHER!r}.")
        if not items or not all(is_int(p) and -length <= p < length for p in items):
            raise record.fail(key, f"label {brief(name)} gives {describe(where)}; give a position (or list) in 0..{length - 1} or -{length}..-1.")
        for p in items:
            if labels[p % length] != OTHER:
                raise record.fail(key, f"position {p % length} is labelled both {brief(labels[p % length])} and {brief(name)}; give each position one label.")
            labels[p % length] = name
    return tuple(labels)


def _features(record: Record) -> dict[str, float] | None:
    """The prompt's named numbers (``"features": {"value": 3}``), checked finite and not booleans."""
    value = record.fields.get("features")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and _is_number(v) and math.isfinite(v) for k, v in value.items()):
        raise record.fail("features", f"got {describe(value)}; give an object of finite numbers, e.g. {{\"value\": 3}}.")
    return {k: float(v) for k, v in value.items()}


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tokenizer_or_fail(record: Record, key: str, model) -> None:
    """Raise ValueError unless ``model`` can tokenize text."""
    if model is None or getattr(model, "tokenizer", None) is None:
        why = "no model was given" if model is None else "the model has no tokenizer"
        raise record.fail(key, f"is text but {why}; pass a model with a tokenizer, or give token ids instead of text.")


def _inputs(record: Record, key: str, model, read: Records) -> tuple[str, Tensor]:
    """Parse clean or corrupt: text to tokens ``[pos]``, ids as given ``[pos]``, or vectors ``[pos d_vocab]``."""
    value = record.fields[key]
    if isinstance(value, str):
        _tokenizer_or_fail(record, key, model)
        tokens = model.to_tokens(value, prepend_bos=read.prepend_bos, move_to_device=False, truncate=False)[0]
        if len(tokens) == 0:
            raise record.fail(key, "is empty text; give at least one token.")
        return "text", tokens.long()
    if isinstance(value, list) and value and all(is_int(v) for v in value):
        d_vocab = None if model is None else model.cfg.d_vocab
        return "ids", _token_ids(record, key, value, d_vocab)
    if read.vectors and isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return "vectors", _vectors(record, key, value, None if model is None else model.cfg.d_vocab)
    kinds = "text or a list of token ids" + (", or a list of vectors (lists of numbers)" if read.vectors else "")
    raise record.fail(key, f"got {describe(value)}; give {kinds}.")


def describe(value: object) -> str:
    """Name a JSON value's type for an error message (a bool is not an int)."""
    if isinstance(value, list):
        return f"a list of {', '.join(sorted({type(v).__name__ for v in value}))}" if value else "an empty list"
    return f"{type(value).__name__} {brief(value)}"


def brief(value: object) -> str:
    """A value's repr cut to 60 characters, so a message naming it stays one readable line."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more than 4300 digits
        text = f"<int of {value.bit_length()} bits>" if isinstance(value, int) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _token_ids(record: Record, key: str, ids: list, d_vocab: int | None) -> Tensor:
    """Return token ids as a long tensor, refusing ids outside ``[0, d_vocab)``."""
    for index, token in enumerate(ids):
        if token < 0 or (d_vocab is not None and token >= d_vocab):
            bound = f"0..{d_vocab - 1}" if d_vocab is not None else "non-negative"
            raise record.fail(key, f"token id {brief(token)} (item {index}) is outside the vocabulary ({bound}); "
                              "use ids of this model's tokenizer.")
    return torch.tensor(ids, dtype=torch.long)


def _vectors(record: Record, key: str, rows: list, size: int | None) -> Tensor:
    """Return a list of equal-length number lists as a float tensor ``[pos d_vocab]``, all finite."""
    for index, row in enumerate(rows):
        if not isinstance(row, list) or not row or not all(_is_number(v) for v in row):
            raise record.fail(key, f"vector {index} is {describe(row)}; each vector is a non-empty list of numbers.")
        width, source = (size, "the model's size") if size is not None else (len(rows[0]), "as vector 0")
        if len(row) != width:
            raise record.fail(key, f"vector {index} has {len(row)} numbers but {width} are expected ({source}); give vectors of one size.")
        if not all(math.isfinite(v) for v in row):
            raise record.fail(key, f"vector {index} contains NaN or inf; give finite numbers.")
    return torch.tensor(rows, dtype=torch.float32)


def _positions(record: Record, length: int) -> Tensor:
    """Return the read positions, normalised to ``0..length-1``; default the last token."""
    value = record.fields.get("positions", -1)
    value = -1 if isinstance(value, dict) else value  # a dict names positions (labels); the prompt is read at its end
    items = value if isinstance(value, list) else [value]
    if not items or not all(is_int(p) for p in items):
        raise record.fail("positions", f"got {describe(value)}; give an int or a non-empty list of ints (negative from the end).")
    for p in items:
        if not -length <= p < length:
            raise record.fail("positions", f"position {brief(p)} is outside a prompt of {length} positions; "
                              f"use 0..{length - 1} or -{length}..-1.")
    return torch.tensor([p % length for p in items], dtype=torch.long)


def _answer_tokens(record: Record, key: str, n_read: int, model) -> Tensor:
    """Return one answer token id per read position ``[pos]``, from single-token strings or ids."""
    value = record.fields[key]
    items = value if isinstance(value, list) else [value]
    if len(items) != n_read:
        raise record.fail(key, f"gives {len(items)} tokens but the prompt reads {n_read} positions; give one per read position.")
    d_vocab_out = None if model is None else model.cfg.d_vocab_out
    ids = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            _tokenizer_or_fail(record, key, model)
            tokens = model.to_tokens(item, prepend_bos=False, move_to_device=False, truncate=False)[0].tolist()
            if len(tokens) != 1:
                raise record.fail(key, f"{brief(item)} is {len(tokens)} tokens [{listed(tokens, 10, brief)}], not one; pick an answer that is "
                                  "a single token (often with a leading space), or give its token id.")
            ids.append(tokens[0])
        elif is_int(item):
            ids.append(item)
        else:
            raise record.fail(key, f"item {index} is {describe(item)}; give a single-token string or an int token id.")
    return _token_ids(record, key, ids, d_vocab_out)


def _targets(record: Record, n_read: int, model) -> Tensor:
    """Return the target vectors of a vector prompt ``[pos d_vocab]`` (a flat list is one vector)."""
    value = record.fields["answer"]
    rows = [value] if isinstance(value, list) and value and all(_is_number(v) for v in value) else value
    if not isinstance(rows, list) or len(rows) != n_read:
        got = len(rows) if isinstance(rows, list) else describe(rows)
        raise record.fail("answer", f"gives {got} target vectors but the prompt reads {n_read} positions; "
                          "give one vector per read position.")
    return _vectors(record, "answer", rows, None if model is None else model.cfg.d_vocab_out)
