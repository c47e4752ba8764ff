"""Task files: load a task by bundled name, from a file of prompt pairs, or from a Python factory.

A patching experiment needs clean/corrupt pairs that differ minimally, the answer the clean run should
give and the wrong answer the corrupt run pushes towards. ``load_task`` reads such pairs from a file
into the same ``Task`` the bundled tasks build, so any dataset can be patched without writing code.
Patching swaps activations position by position, so the clean and corrupt prompt of one pair must
have the same length; pairs of different lengths (or read positions) become same-shape groups
(``TaskGroups``, via ``tasks.from_prompts``), never padding. File order is kept and nothing is
sampled, so one file always gives identical tensors (``seed`` only reaches bundled tasks and
factories). Tensors are built on the CPU; move them with ``task.to(device)``.

Accepted ``spec`` forms:

* A bundled task name (``pathpatch.models.zoo.TASK_CORRUPTIONS``): ``build_task(name, n or 64, ...)``.
* ``*.jsonl``, one prompt pair per line; an optional first line ``{"task": {"name": ..., "metric": ...,
  "corruption": ...}}``; blank lines are skipped; JSONL has no comments, so a ``#`` line is refused::

      {"task": {"name": "days", "metric": "logit_diff"}}
      {"clean": "Today it is Monday so tomorrow it is", "corrupt": "Today it is Friday so tomorrow it is",
       "answer": " Tuesday", "wrong_answer": " Saturday"}

  ``clean``/``corrupt``: text (tokenized one string at a time by ``model.to_tokens``, with BOS as the
  model's config says), token ids ``[3, 1, 4]`` taken as they are, or vectors ``[[0.1, ...], ...]`` for
  continuous-input models (then ``answer`` holds target vectors and the metric is ``mse``).
  ``answer``/``wrong_answer``: one token per read position, each a string that is exactly one token
  (no BOS) or an id; a single token stands for a one-item list. ``positions``: an int or a list of
  ints, negative from the end, default ``-1`` (the last token). ``wrong_answer`` is required for
  ``logit_diff`` only. Every line of a file gives the same kind of input (text, ids or vectors).
  ``labels`` names positions for position-aware circuits: ``{"S1": 2, "IO": 4, "END": -1}`` (a label to an
  index or a list of indices, negative from the end; unnamed positions are ``other``) or a list of one
  label per token (a fixed template). ``positions`` given as such a dict is read as ``labels``, and the
  prompt is then read at its last token.
* ``*.csv`` in EAP-IG's format (columns ``clean, corrupted, correct_idx, incorrect_idx``; others are
  ignored), read as ``EAPDataset`` in EAP-IG's ``ioi.ipynb`` (hannamw/EAP-IG) does: ``pd.read_csv``,
  the ``*_idx`` columns one token id each, prompts tokenized by ``model.to_tokens(prepend_bos=True)``
  (``eap/utils.py: tokenize_plus``) and read at the last token (``get_logit_positions``).
* ``*.json`` in auto-circuit's format (``auto_circuit/data.py: load_datasets_from_json``):
  ``{"prompts": [{"clean": str | [int], "corrupt": ..., "answers": [str | int], "wrong_answers": [...]}]}``,
  BOS prepended, answers tokenized without BOS, read at the last token (``slice_output="last_seq"``).
  auto-circuit averages over several answers; pathpatch takes exactly one of each and refuses more.
* ``path/to/file.py:function`` or ``package.module:function``: a factory called as
  ``function(n=n or 64, seed=seed)`` (plus ``model=model`` if it takes ``model``) that returns a
  ``Task`` or ``TaskGroups``. Importing it runs its code, so it is logged at WARNING.
* A ``Task`` or ``TaskGroups``: returned as it is.

Malformed input raises ``ValueError`` as ``FILE:LINE: field 'FIELD': problem; fix``. Files are read as
UTF-8, skipping the byte-order mark Windows editors write first; a value quoted in a message is cut to 60
characters and a list to its first 10 items, so the message stays one readable line.
"""

import csv
import inspect
import json
import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from pathpatch.errors import InputError, listed
from pathpatch.files import check_size, read_text_limited
from pathpatch.factories import import_factory, parse_factory
from pathpatch.models.tasks import LABEL, METRICS, OTHER, AnyTask, MetricFn, MetricName, Prompt, Task, TaskGroups, from_prompts, with_metric
from pathpatch.models.zoo import TASK_CORRUPTIONS, build_task

logger = logging.getLogger(__name__)

PROMPT_FIELDS = ("clean", "corrupt", "answer", "wrong_answer", "positions", "features", "labels")
HEADER_FIELDS = ("name", "metric", "corruption")
EAP_COLUMNS = {"clean": "clean", "corrupt": "corrupted", "answer": "correct_idx", "wrong_answer": "incorrect_idx"}
AUTO_FIELDS = {"clean": "clean", "corrupt": "corrupt", "answer": "answers", "wrong_answer": "wrong_answers"}
DEFAULT_N = 64
FILE_FORMS = (
    "NAME.jsonl (one prompt pair per line), NAME.csv (EAP-IG: clean, corrupted, correct_idx, incorrect_idx), "
    "NAME.json (auto-circuit: {\"prompts\": [...]}), or a factory path/to/file.py:function or package.module:function"
)


@dataclass(frozen=True)
class _Record:
    """One prompt pair as read from a file: where it is, its raw fields, and each field's name in the file."""

    where: str
    fields: dict
    labels: dict = field(default_factory=dict)

    def fail(self, key: str, problem: str) -> InputError:
        return InputError(f"{self.where}: field '{self.labels.get(key, key)}': {problem}")


@dataclass(frozen=True)
class _Records:
    """What a reader returns: the prompt records, the header (or None) and how the format tokenizes."""

    records: list
    header: "_Record | None" = None
    prepend_bos: bool | None = None
    vectors: bool = True


def load_task(
    spec: "str | Path | AnyTask",
    model: torch.nn.Module | None = None,
    *,
    n: int | None = None,
    seed: int = 0,
    corruption: str | None = None,
    metric: "MetricName | MetricFn | None" = None,
    name: str | None = None,
) -> AnyTask:
    """Load a task from a bundled name, a prompt-pair file, a factory, or return a task object as is.

    Args:
        spec: Bundled task name, ``*.jsonl``/``*.csv``/``*.json`` file, ``file.py:function`` or
            ``package.module:function``, or a ``Task``/``TaskGroups``.
        model: Model whose tokenizer reads text and whose vocabulary bounds token ids (optional for ids).
        n: Number of prompts: None for every prompt of a file (64 for bundled tasks and factories),
            else the first ``n`` of a file.
        seed: Seed of a bundled task or factory; files are read in order and ignore it.
        corruption: Corruption of a bundled task; for a file, the label stored as ``Task.corruption``.
        metric: Metric overriding the file's header (default ``logit_diff``, ``mse`` for vectors).
        name: Task name overriding the header (default: the file name without suffix).

    Returns:
        A ``Task``, or ``TaskGroups`` when a file's prompts differ in length or read positions.

    Raises:
        KeyError: ``spec`` is neither a bundled name nor an accepted file or factory form.
        FileNotFoundError: The file does not exist.
        ValueError: Malformed file (the message names file, line and field), bad ``n`` or metric.
        TypeError: A factory returned something other than a task.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InputError(f"n={n!r} prompts; give a positive int, or None for every prompt of a file.")
    _check_metric(metric, "load_task(metric=...)")
    if isinstance(spec, (Task, TaskGroups)):
        return _override(spec, metric, name)
    if not isinstance(spec, (str, Path)):
        raise InputError(f"Task spec {_brief(spec)} is a {type(spec).__name__}; give a task name, a file path, a factory or a Task.")
    text = str(spec)
    if text in TASK_CORRUPTIONS:
        task = build_task(text, n=DEFAULT_N if n is None else n, seed=seed, corruption=corruption, model=model)
        return _override(task, metric, name)
    if parse_factory(text) is not None:
        return _override(_call_factory(text, model, DEFAULT_N if n is None else n, seed), metric, name)
    path = Path(text)
    reader = {".jsonl": _read_jsonl, ".csv": _read_eap_csv, ".json": _read_auto_circuit}.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"Unknown task {text!r}; bundled tasks are {', '.join(TASK_CORRUPTIONS)}; or give {FILE_FORMS}.")
    if not path.is_file():
        raise FileNotFoundError(f"Task file {path} does not exist (relative to {Path.cwd()}); check the path.")
    check_size(path, "prompt")
    return _file_task(path, reader(path), model, n, corruption, metric, name)


def _check_metric(metric: object, where: str) -> None:
    """Raise ValueError unless ``metric`` is None, a callable or a known metric name."""
    if metric is not None and not callable(metric) and metric not in METRICS:
        raise InputError(f"{where}: unknown metric {_brief(metric)}; choose one of {', '.join(METRICS)}.")


def _override(task: AnyTask, metric: "MetricName | MetricFn | None", name: str | None) -> AnyTask:
    """Return ``task`` with the metric and name options applied."""
    if metric is not None:
        task = with_metric(task, metric)
    if name is not None:
        groups = {} if isinstance(task, Task) else {"groups": tuple(replace(g, name=name) for g in task.groups)}
        task = replace(task, name=name, **groups)
    return task


def _file_task(path: Path, read: _Records, model, n, corruption, metric, name) -> AnyTask:
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


def _prompt(record: _Record, model, read: _Records, kind: str | None, first: _Record) -> tuple[str, Prompt]:
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


def _labels(record: _Record, length: int) -> tuple[str, ...] | None:
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
                              f"got {_describe(value)}.")
        return tuple(value)
    if not isinstance(value, dict) or not value:
        raise record.fail(key, f"got {_describe(value)}; give {{\"S1\": 2, \"END\": -1}} (label -> position) or one label per token.")
    labels = [OTHER] * length
    for name, where in value.items():
        items = where if isinstance(where, list) else [where]
        if not LABEL.match(name) or name == OTHER:
            raise record.fail(key, f"label {_brief(name)} must be a name of letters, digits and '_' other than {OTHER!r}.")
        if not items or not all(_is_int(p) and -length <= p < length for p in items):
            raise record.fail(key, f"label {_brief(name)} gives {_describe(where)}; give a position (or list) in 0..{length - 1} or -{length}..-1.")
        for p in items:
            if labels[p % length] != OTHER:
                raise record.fail(key, f"position {p % length} is labelled both {_brief(labels[p % length])} and {_brief(name)}; give each position one label.")
            labels[p % length] = name
    return tuple(labels)


def _features(record: _Record) -> dict[str, float] | None:
    """The prompt's named numbers (``"features": {"value": 3}``), checked finite and not booleans."""
    value = record.fields.get("features")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and _is_number(v) and math.isfinite(v) for k, v in value.items()):
        raise record.fail("features", f"got {_describe(value)}; give an object of finite numbers, e.g. {{\"value\": 3}}.")
    return {k: float(v) for k, v in value.items()}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tokenizer_or_fail(record: _Record, key: str, model) -> None:
    """Raise ValueError unless ``model`` can tokenize text."""
    if model is None or getattr(model, "tokenizer", None) is None:
        why = "no model was given" if model is None else "the model has no tokenizer"
        raise record.fail(key, f"is text but {why}; pass a model with a tokenizer, or give token ids instead of text.")


def _inputs(record: _Record, key: str, model, read: _Records) -> tuple[str, Tensor]:
    """Parse clean or corrupt: text to tokens ``[pos]``, ids as given ``[pos]``, or vectors ``[pos d_vocab]``."""
    value = record.fields[key]
    if isinstance(value, str):
        _tokenizer_or_fail(record, key, model)
        tokens = model.to_tokens(value, prepend_bos=read.prepend_bos, move_to_device=False, truncate=False)[0]
        if len(tokens) == 0:
            raise record.fail(key, "is empty text; give at least one token.")
        return "text", tokens.long()
    if isinstance(value, list) and value and all(_is_int(v) for v in value):
        d_vocab = None if model is None else model.cfg.d_vocab
        return "ids", _token_ids(record, key, value, d_vocab)
    if read.vectors and isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return "vectors", _vectors(record, key, value, None if model is None else model.cfg.d_vocab)
    kinds = "text or a list of token ids" + (", or a list of vectors (lists of numbers)" if read.vectors else "")
    raise record.fail(key, f"got {_describe(value)}; give {kinds}.")


def _describe(value: object) -> str:
    """Name a JSON value's type for an error message (a bool is not an int)."""
    if isinstance(value, list):
        return f"a list of {', '.join(sorted({type(v).__name__ for v in value}))}" if value else "an empty list"
    return f"{type(value).__name__} {_brief(value)}"


def _brief(value: object) -> str:
    """A value's repr cut to 60 characters, so a message naming it stays one readable line."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more than 4300 digits
        text = f"<int of {value.bit_length()} bits>" if isinstance(value, int) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _token_ids(record: _Record, key: str, ids: list, d_vocab: int | None) -> Tensor:
    """Return token ids as a long tensor, refusing ids outside ``[0, d_vocab)``."""
    for index, token in enumerate(ids):
        if token < 0 or (d_vocab is not None and token >= d_vocab):
            bound = f"0..{d_vocab - 1}" if d_vocab is not None else "non-negative"
            raise record.fail(key, f"token id {_brief(token)} (item {index}) is outside the vocabulary ({bound}); "
                              "use ids of this model's tokenizer.")
    return torch.tensor(ids, dtype=torch.long)


def _vectors(record: _Record, key: str, rows: list, size: int | None) -> Tensor:
    """Return a list of equal-length number lists as a float tensor ``[pos d_vocab]``, all finite."""
    for index, row in enumerate(rows):
        if not isinstance(row, list) or not row or not all(_is_number(v) for v in row):
            raise record.fail(key, f"vector {index} is {_describe(row)}; each vector is a non-empty list of numbers.")
        width, source = (size, "the model's size") if size is not None else (len(rows[0]), "as vector 0")
        if len(row) != width:
            raise record.fail(key, f"vector {index} has {len(row)} numbers but {width} are expected ({source}); give vectors of one size.")
        if not all(math.isfinite(v) for v in row):
            raise record.fail(key, f"vector {index} contains NaN or inf; give finite numbers.")
    return torch.tensor(rows, dtype=torch.float32)


def _positions(record: _Record, length: int) -> Tensor:
    """Return the read positions, normalised to ``0..length-1``; default the last token."""
    value = record.fields.get("positions", -1)
    value = -1 if isinstance(value, dict) else value  # a dict names positions (labels); the prompt is read at its end
    items = value if isinstance(value, list) else [value]
    if not items or not all(_is_int(p) for p in items):
        raise record.fail("positions", f"got {_describe(value)}; give an int or a non-empty list of ints (negative from the end).")
    for p in items:
        if not -length <= p < length:
            raise record.fail("positions", f"position {_brief(p)} is outside a prompt of {length} positions; "
                              f"use 0..{length - 1} or -{length}..-1.")
    return torch.tensor([p % length for p in items], dtype=torch.long)


def _answer_tokens(record: _Record, key: str, n_read: int, model) -> Tensor:
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
                raise record.fail(key, f"{_brief(item)} is {len(tokens)} tokens [{listed(tokens, 10, _brief)}], not one; pick an answer that is "
                                  "a single token (often with a leading space), or give its token id.")
            ids.append(tokens[0])
        elif _is_int(item):
            ids.append(item)
        else:
            raise record.fail(key, f"item {index} is {_describe(item)}; give a single-token string or an int token id.")
    return _token_ids(record, key, ids, d_vocab_out)


def _targets(record: _Record, n_read: int, model) -> Tensor:
    """Return the target vectors of a vector prompt ``[pos d_vocab]`` (a flat list is one vector)."""
    value = record.fields["answer"]
    rows = [value] if isinstance(value, list) and value and all(_is_number(v) for v in value) else value
    if not isinstance(rows, list) or len(rows) != n_read:
        got = len(rows) if isinstance(rows, list) else _describe(rows)
        raise record.fail("answer", f"gives {got} target vectors but the prompt reads {n_read} positions; "
                          "give one vector per read position.")
    return _vectors(record, "answer", rows, None if model is None else model.cfg.d_vocab_out)


def _read_jsonl(path: Path) -> _Records:
    """Read a JSONL file: an optional header line, then one prompt object per line; blank lines skipped."""
    header, records = None, []
    for number, line in enumerate(read_text_limited(path, "prompt").split("\n"), start=1):
        stripped, where = line.strip(), f"{path}:{number}"
        if not stripped:
            continue
        if stripped.startswith("#"):
            raise InputError(f"{where}: a '#' comment, but JSONL has no comments; delete the line (blank lines are skipped).")
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise InputError(f"{where}: invalid JSON ({error.msg} at column {error.colno}); write one JSON object per line.") from None
        except ValueError as error:  # an integer of more than 4300 digits
            raise InputError(f"{where}: invalid JSON ({str(error).split(';')[0]}); give token ids as this model's vocabulary has them.") from None
        if not isinstance(value, dict):
            raise InputError(f"{where}: {_describe(value)} is not a prompt object; "
                             "write {\"clean\": ..., \"corrupt\": ..., \"answer\": ..., \"wrong_answer\": ...}.")
        if "task" in value:
            if header is not None or records:
                raise InputError(f"{where}: field 'task': a header must be the first line of the file; move it there.")
            header = _header(value, where)
            continue
        unknown = sorted(set(value) - set(PROMPT_FIELDS))
        if unknown:
            raise InputError(f"{where}: field {_brief(unknown[0])}: unknown; prompt fields are {', '.join(PROMPT_FIELDS)}.")
        records.append(_Record(where, value))
    return _Records(records, header)


def _header(value: dict, where: str) -> _Record:
    """Check a header line ``{"task": {"name": ..., "metric": ..., "corruption": ...}}``."""
    task = value["task"]
    if len(value) != 1 or not isinstance(task, dict):
        raise InputError(f"{where}: field 'task': a header is {{\"task\": {{\"name\": ..., \"metric\": ...}}}} alone on its line.")
    for key, item in task.items():
        if key not in HEADER_FIELDS or not isinstance(item, str):
            raise InputError(f"{where}: field {_brief('task.' + key)}: give string values for {', '.join(HEADER_FIELDS)} only.")
    _check_metric(task.get("metric"), f"{where}: field 'metric'")
    return _Record(where, task)


def _read_eap_csv(path: Path) -> _Records:
    """Read EAP-IG's CSV as ``EAPDataset`` does: ``pd.read_csv``; ``*_idx`` are one token id each."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"clean": str, "corrupted": str}, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}:1: not a readable CSV ({error}); save it with EAP-IG's columns "
                         f"{', '.join(EAP_COLUMNS.values())}.") from None
    missing = [column for column in EAP_COLUMNS.values() if column not in frame.columns]
    if missing:
        greater_than = " (a 'label' column is EAP-IG's greater-than format, scored by probability difference: not supported)"
        hint = greater_than if "label" in frame.columns else ""
        raise InputError(f"{path}:1: field '{missing[0]}': column missing{hint}; EAP-IG's CSV has columns "
                         f"{', '.join(EAP_COLUMNS.values())}, found {listed(frame.columns, 10, _brief)}.")
    columns = {key: frame[column].tolist() for key, column in EAP_COLUMNS.items()}
    records = []
    for row, line in enumerate(_csv_lines(path, len(frame))):
        record = _Record(f"{path}:{line}", {}, dict(EAP_COLUMNS))
        for key, values in columns.items():
            value = values[row]
            if isinstance(value, float) and math.isnan(value):
                continue
            if key in ("answer", "wrong_answer"):
                value = _csv_id(value)
                if not _is_int(value):
                    raise record.fail(key, f"got {_describe(value)}; EAP-IG's {EAP_COLUMNS[key]} is one token id (an integer).")
            record.fields[key] = value
        records.append(record)
    return _Records(records, prepend_bos=True, vectors=False)


def _csv_id(value: object) -> object:
    """Return a CSV cell as an int where it spells one (pandas reads ``52.0`` or ``'52'`` in mixed columns)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(value) if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value) else value


def _csv_lines(path: Path, count: int) -> list[int]:
    """Return the 1-based line each data row starts on (quoted fields may span lines)."""
    lines = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        previous = reader.line_num
        for row in reader:
            if row:
                lines.append(previous + 1)
            previous = reader.line_num
    return lines if len(lines) == count else [row + 2 for row in range(count)]


def _read_auto_circuit(path: Path) -> _Records:
    """Read auto-circuit's dataset JSON: ``{"prompts": [{"clean", "corrupt", "answers", "wrong_answers"}]}``."""
    text = read_text_limited(path, "prompt")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}: invalid JSON ({error.msg} at column {error.colno}); fix the syntax.") from None
    except ValueError as error:  # an integer of more than 4300 digits
        raise InputError(f"{path}: invalid JSON ({str(error).split(';')[0]}); give token ids as this model's vocabulary has them.") from None
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, list):
        raise InputError(f"{path}:1: field 'prompts': missing or not a list; auto-circuit's dataset JSON is "
                         "{\"prompts\": [{\"clean\": ..., \"corrupt\": ..., \"answers\": [...], \"wrong_answers\": [...]}]}.")
    records = []
    for index, (item, line) in enumerate(zip(prompts, _json_item_lines(text, prompts))):
        record = _Record(f"{path}:{line or '?'}: prompts[{index}]", {}, dict(AUTO_FIELDS))
        if not isinstance(item, dict):
            raise InputError(f"{record.where}: {_describe(item)} is not a prompt object with clean, corrupt, answers, wrong_answers.")
        for key, label in AUTO_FIELDS.items():
            if label not in item:
                raise record.fail(key, "missing; auto-circuit prompts need clean, corrupt, answers and wrong_answers.")
            value = item[label]
            if key in ("answer", "wrong_answer") and isinstance(value, list):
                if len(value) != 1:
                    raise record.fail(key, f"lists {len(value)} tokens; pathpatch takes one answer and one wrong answer per "
                                      "read position (auto-circuit averages over the list), so keep exactly one.")
                value = value[0]
            record.fields[key] = value
        records.append(record)
    return _Records(records, prepend_bos=True, vectors=False)


def _json_item_lines(text: str, prompts: list) -> list[int | None]:
    """Return the 1-based line where each entry of the ``"prompts"`` list starts (None where not found)."""
    found, decoder, skip = [], json.JSONDecoder(), re.compile(r"[\s,]*")
    match = re.search(r'"prompts"\s*:\s*\[', text)
    index, line, counted = (match.end() if match else len(text)), 1, 0
    while match and len(found) < len(prompts):
        index = skip.match(text, index).end()
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            break
        if value != prompts[len(found)]:
            break
        line, counted = line + text.count("\n", counted, index), index
        found.append(line)
        index = end
    return found + [None] * (len(prompts) - len(found))


def _call_factory(spec: str, model, n: int, seed: int) -> AnyTask:
    """Import and call a task factory ``source:function`` with ``n``, ``seed`` (and ``model`` if it takes one)."""
    function = import_factory(spec, "task", logger)
    keywords = {"n": n, "seed": seed}
    if "model" in inspect.signature(function).parameters:
        keywords["model"] = model
    task = function(**keywords)
    if not isinstance(task, (Task, TaskGroups)):
        raise InputError(f"Task factory {spec!r} returned a {type(task).__name__}; it must return a pathpatch Task or "
                        "TaskGroups (build one with pathpatch.models.tasks.from_prompts).")
    return task
