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

import inspect
import logging
from dataclasses import replace
from pathlib import Path

import torch

from pathpatch.errors import InputError
from pathpatch.factories import import_factory, parse_factory
from pathpatch.files import check_size
from pathpatch.models.zoo import TASK_CORRUPTIONS, build_task
from pathpatch.task.groups import AnyTask, TaskGroups, with_metric
from pathpatch.task.prompt_files import FILE_FORMS, read_auto_circuit, read_eap_csv, read_jsonl
from pathpatch.task.records import brief, check_metric, file_task
from pathpatch.task.task import MetricFn, Task
from pathpatch.vocabulary import MetricName

logger = logging.getLogger(__name__)


DEFAULT_N = 64


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
    check_metric(metric, "load_task(metric=...)")
    if isinstance(spec, (Task, TaskGroups)):
        return _override(spec, metric, name)
    if not isinstance(spec, (str, Path)):
        raise InputError(f"Task spec {brief(spec)} is a {type(spec).__name__}; give a task name, a file path, a factory or a Task.")
    text = str(spec)
    if text in TASK_CORRUPTIONS:
        task = build_task(text, n=DEFAULT_N if n is None else n, seed=seed, corruption=corruption, model=model)
        return _override(task, metric, name)
    if parse_factory(text) is not None:
        return _override(_call_factory(text, model, DEFAULT_N if n is None else n, seed), metric, name)
    path = Path(text)
    reader = {".jsonl": read_jsonl, ".csv": read_eap_csv, ".json": read_auto_circuit}.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"Unknown task {text!r}; bundled tasks are {', '.join(TASK_CORRUPTIONS)}; or give {FILE_FORMS}.")
    if not path.is_file():
        raise FileNotFoundError(f"Task file {path} does not exist (relative to {Path.cwd()}); check the path.")
    check_size(path, "prompt")
    return file_task(path, reader(path), model, n, corruption, metric, name)


def _override(task: AnyTask, metric: "MetricName | MetricFn | None", name: str | None) -> AnyTask:
    """Return ``task`` with the metric and name options applied."""
    if metric is not None:
        task = with_metric(task, metric)
    if name is not None:
        groups = {} if isinstance(task, Task) else {"groups": tuple(replace(g, name=name) for g in task.groups)}
        task = replace(task, name=name, **groups)
    return task


def _call_factory(spec: str, model, n: int, seed: int) -> AnyTask:
    """Import and call a task factory ``source:function`` with ``n``, ``seed`` (and ``model`` if it takes one)."""
    function = import_factory(spec, "task", logger)
    keywords = {"n": n, "seed": seed}
    if "model" in inspect.signature(function).parameters:
        keywords["model"] = model
    task = function(**keywords)
    if not isinstance(task, (Task, TaskGroups)):
        raise InputError(f"Task factory {spec!r} returned a {type(task).__name__}; it must return a pathpatch Task or "
                        "TaskGroups (build one with pathpatch.task.task.from_prompts).")
    return task
