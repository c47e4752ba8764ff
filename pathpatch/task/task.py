"""Tasks: clean and corrupt inputs, the answers, and the metric that scores a run.

A task is the unit every patching experiment starts from. The *clean* run shows the behaviour we
want to explain; the *corrupt* run differs from it minimally (one value, one pointer, one word), so
that whatever part of the model carries the difference is what the patching experiments expose.
The metric reads the logits only at ``positions``: the logit difference between each answer token
and its wrong answer (``logit_diff``, higher is better), the answer's cross-entropy (``loss``), top-1
``accuracy``, the KL divergence from the clean run's distribution (``kl``; ``Task.with_reference``
stores the clean log-probabilities), the mean squared error against continuous targets (``mse``;
the recurrence task, whose model outputs vectors), or any callable from read logits
``[batch pos d_vocab]`` to one value per prompt ``[batch]`` (higher is better).

Every check on a task's tensors runs once, in ``Task.__post_init__``; ``Task.check_model`` checks
that a model can read the task (vocabulary, context length) before any forward pass is made.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Float, Int
from torch import Tensor

from pathpatch.errors import InputError, listed
from pathpatch.vocabulary import LOWER_IS_BETTER, METRICS, MetricName

MetricFn = Callable[[Tensor], Tensor]


LABEL = re.compile(r"^[A-Za-z0-9_]{1,64}$")


OTHER = "other"  # the label of positions no label names


@dataclass(frozen=True)
class Task:
    """Clean and corrupt inputs with the answers a metric reads from the logits.

    Attributes:
        name: Task name, as listed by ``pathpatch models`` (e.g. ``permute``).
        clean: Clean inputs, tokens ``[batch pos]`` or continuous vectors ``[batch pos d_vocab]``.
        corrupt: Corrupt inputs, same shape and dtype as ``clean``.
        answers: Correct tokens at the read positions ``[batch pos]`` (``logit_diff``), or target
            vectors ``[batch pos d_vocab]`` (``mse``).
        wrong_answers: Tokens the logit difference is taken against ``[batch pos]``; None for ``mse``.
        positions: Sequence positions whose logits the metric reads ``[pos]``.
        metric: ``logit_diff``, ``loss``, ``accuracy``, ``kl``, ``mse``, or a callable from read logits
            ``[batch pos d_vocab]`` to ``[batch]`` (higher is better).
        corruption: How ``corrupt`` was made from ``clean``, in words a hypothesis file can pin.
        reference: Clean log-probabilities at the read positions ``[batch pos d_vocab]``, for ``kl``.
        features: Named per-prompt numbers ``[batch]`` (e.g. the value a neuron should track), for claims.
        labels: One name per input position, shared by every prompt of the task (``BOS``, ``S1``, ``END``; a
            name may repeat for a span), which position-aware edges use (``L0H0->L1H0.v@END``); None: indices.
    """

    name: str
    clean: Tensor
    corrupt: Tensor
    answers: Tensor
    wrong_answers: Tensor | None
    positions: Int[Tensor, "pos"]
    metric: "MetricName | MetricFn" = "logit_diff"
    corruption: str = "paired"
    reference: Tensor | None = None
    features: dict[str, Tensor] | None = field(default=None, hash=False)
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _as_long_tokens(self)
        _check_task(self)
        _check_labels(self)

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger metric means a more clean-like run."""
        return callable(self.metric) or self.metric not in LOWER_IS_BETTER

    @property
    def metric_name(self) -> str:
        """The metric's name (a callable's ``__name__``)."""
        return self.metric if isinstance(self.metric, str) else getattr(self.metric, "__name__", "custom")

    def with_reference(self, clean_logits: Float[Tensor, "batch pos d_vocab"]) -> "Task":
        """Return a copy holding the clean run's log-probabilities at the read positions (for ``kl``)."""
        read = clean_logits[:, self.positions.to(clean_logits.device)]
        return replace(self, reference=read.log_softmax(-1).detach())

    def score(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, ""]:
        """Return the task metric of full-sequence logits, averaged over batch and read positions."""
        return self.score_per_prompt(logits).mean()

    def score_per_prompt(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, "batch"]:
        """Return the task metric of each prompt, averaged over its read positions."""
        return self.score_read(logits[:, self.positions.to(logits.device)])

    def score_read(self, read: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, " batch"]:
        """Return the metric per prompt from logits already taken at the read positions.

        ``read`` may hold several copies of the task's batch stacked variant-major
        (``[variant * batch pos d_vocab]``); answers are tiled to match, and a custom metric is called
        once per copy. A custom metric must return finite floats (else ValueError naming it).
        """
        copies = read.shape[0] // self.answers.shape[0]
        if callable(self.metric):
            return _checked_custom(self, read)
        answers = _tile(self.answers.to(read.device), copies)
        if self.metric == "mse":
            return mean_squared_error(read, answers)
        if self.metric == "loss":
            return -read.log_softmax(-1).gather(-1, answers[..., None])[..., 0].mean(-1)
        if self.metric == "accuracy":
            return (read.argmax(-1) == answers).to(read.dtype).mean(-1)
        if self.metric == "kl":
            if self.reference is None:
                raise InputError(f"Task '{self.name}': metric 'kl' needs the clean distribution; call task.with_reference(model(task.clean)).")
            ref = _tile(self.reference.to(read.device), copies)
            return (ref.exp() * (ref - read.log_softmax(-1))).sum(-1).mean(-1)
        assert self.wrong_answers is not None
        return logit_diff(read, answers, _tile(self.wrong_answers.to(read.device), copies))

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise ValueError if ``model`` cannot read this task's inputs or answers."""
        cfg = model.cfg
        n_pos = self.clean.shape[1]
        if n_pos > cfg.n_ctx:
            raise InputError(
                f"Task '{self.name}': inputs have {n_pos} positions but the model's n_ctx is {cfg.n_ctx}; "
                "use shorter inputs or a model with a longer context."
            )
        if self.clean.is_floating_point():
            if self.clean.shape[-1] != cfg.d_vocab:
                raise InputError(
                    f"Task '{self.name}': input vectors have size {self.clean.shape[-1]} but the model "
                    f"embeds vectors of size d_vocab={cfg.d_vocab}; pick the model trained for this task."
                )
            return
        _check_tokens_in_vocab(self.name, "clean", self.clean, cfg.d_vocab)
        _check_tokens_in_vocab(self.name, "corrupt", self.corrupt, cfg.d_vocab)
        if self.metric in ("logit_diff", "loss", "accuracy"):
            _check_tokens_in_vocab(self.name, "answers", self.answers, cfg.d_vocab_out)
        if self.metric == "logit_diff":
            assert self.wrong_answers is not None
            _check_tokens_in_vocab(self.name, "wrong_answers", self.wrong_answers, cfg.d_vocab_out)

    def compact(self) -> "tuple[Task, Tensor] | None":
        """For ``logit_diff``, the two logit columns it reads: a task over that 2-column readout and the
        token ids of the columns ``[batch pos 2]`` (answer, wrong answer); None for other metrics.

        Patching runs then unembed two columns instead of the whole vocabulary.
        """
        if self.metric != "logit_diff" or self.wrong_answers is None or self.answers.is_floating_point():
            return None
        tokens = torch.stack([self.answers, self.wrong_answers], dim=-1)
        return replace(self, answers=torch.zeros_like(self.answers), wrong_answers=torch.ones_like(self.wrong_answers)), tokens

    def select(self, start: int, stop: int) -> "Task":
        """Return the prompts ``start..stop`` as a task of their own (every per-prompt field sliced alike)."""
        cut = lambda x: None if x is None else x[start:stop]  # noqa: E731
        features = None if self.features is None else {k: v[start:stop] for k, v in self.features.items()}
        return replace(self, clean=cut(self.clean), corrupt=cut(self.corrupt), answers=cut(self.answers),
                       wrong_answers=cut(self.wrong_answers), reference=cut(self.reference), features=features)

    def to(self, device: torch.device | str) -> "Task":
        """Return a copy of this task with every tensor on ``device``."""
        moved = {f: getattr(self, f).to(device) for f in ("clean", "corrupt", "answers", "wrong_answers", "positions", "reference")
                 if getattr(self, f) is not None}
        return replace(self, **moved)


def _checked_custom(task: Task, read: Tensor) -> Tensor:
    """Call a custom metric on each ``[batch ...]`` block of ``read`` and check it returns finite floats per prompt.

    The engine stacks variants on the batch (``[variant * batch pos d_vocab]``); calling the metric once
    per block of the task's batch keeps the documented contract (``[batch pos d_vocab] -> [batch]``), so
    a metric whose answers come from a closure over the task's prompts sees the batch they match.
    """
    batch = task.answers.shape[0]
    copies = read.shape[0] // batch if read.shape[0] % batch == 0 else 1
    blocks = [read] if copies == 1 else list(read.split(batch))
    out = torch.cat([_call_custom(task, block) for block in blocks])
    bad = ~torch.isfinite(out.detach())
    if bad.any():
        finite = torch.isfinite(read.detach()).all()
        cause = "the logits it was given are finite, so the metric made them" if finite else "its input logits hold NaN/inf"
        raise InputError(
            f"Task '{task.name}': the metric {task.metric_name!r} returned NaN or inf for {int(bad.sum())} of {len(out)} "
            f"prompt runs (patched runs included); {cause}. Scores would be NaN, so nothing was scored: make the metric "
            "finite for every input (e.g. clamp before log, avoid dividing by zero)."
        )
    return out


def _call_custom(task: Task, read: Tensor) -> Tensor:
    """Call the metric on one block and check its shape and dtype."""
    out = task.metric(read)
    if not torch.is_tensor(out) or tuple(out.shape) != (read.shape[0],):
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise InputError(
            f"Task '{task.name}': the metric {task.metric_name!r} returned {shape}; it must return one value per "
            f"prompt, shape ({read.shape[0]},), from read logits {tuple(read.shape)}. Reduce over positions, not prompts."
        )
    if not out.is_floating_point():
        raise InputError(
            f"Task '{task.name}': the metric {task.metric_name!r} returned {out.dtype} values; it must return floats "
            "(higher is better), e.g. (read.argmax(-1) == answers).float().mean(-1) rather than a bool or int tensor."
        )
    return out


def logit_diff(
    read: Float[Tensor, "batch pos d_vocab"],
    answers: Int[Tensor, "batch pos"],
    wrong_answers: Int[Tensor, "batch pos"],
) -> Float[Tensor, "batch"]:
    """Return logit(answer) - logit(wrong answer) per prompt, averaged over read positions."""
    right = read.gather(-1, answers[..., None])[..., 0]  # [batch pos]
    wrong = read.gather(-1, wrong_answers[..., None])[..., 0]  # [batch pos]
    return (right - wrong).mean(-1)


def mean_squared_error(
    read: Float[Tensor, "batch pos d_vocab"], targets: Float[Tensor, "batch pos d_vocab"]
) -> Float[Tensor, "batch"]:
    """Return the mean squared error per prompt over read positions and output dimensions."""
    return (read - targets).pow(2).mean(dim=(-1, -2))


def _tile(x: Tensor, copies: int) -> Tensor:
    """Stack ``copies`` of ``x`` along the batch dimension."""
    return x if copies == 1 else x.repeat(copies, *([1] * (x.ndim - 1)))


def _as_long_tokens(task: Task) -> None:
    """Store integer ids of any width (uint8, int32 ...) as ``torch.long``, which indexing needs (widening
    loses nothing; ``Task`` is frozen, hence ``object.__setattr__``); refuse non-tensors, bools, complex."""
    for field in ("clean", "corrupt", "answers", "wrong_answers", "positions"):
        value = getattr(task, field)
        if value is None:
            continue
        if not torch.is_tensor(value):
            raise InputError(f"Task '{task.name}': {field} is a {type(value).__name__}; give a torch tensor (token ids as torch.long).")
        if value.dtype == torch.bool or value.is_complex():
            raise InputError(f"Task '{task.name}': {field} is a {value.dtype} tensor; give token ids as torch.long "
                            "(or input vectors and targets as float).")
        if not value.is_floating_point() and value.dtype != torch.long:
            object.__setattr__(task, field, value.long())
    if task.positions.is_floating_point():
        raise InputError(f"Task '{task.name}': positions is {task.positions.dtype}; give read positions as integers (torch.long).")


def _check_task(task: Task) -> None:
    """Validate a task's tensors once, naming the offending field and the fix."""
    name = task.name
    if not callable(task.metric) and task.metric not in METRICS:
        raise InputError(f"Task '{name}': unknown metric {task.metric!r}; choose one of {', '.join(METRICS)} or pass a callable.")
    if task.clean.shape != task.corrupt.shape:
        raise InputError(
            f"Task '{name}': clean is {tuple(task.clean.shape)} but corrupt is {tuple(task.corrupt.shape)}; "
            "both must have the same shape. Pad or pick inputs of the same length."
        )
    if task.clean.dtype != task.corrupt.dtype:
        raise InputError(
            f"Task '{name}': clean is {task.clean.dtype} but corrupt is {task.corrupt.dtype}; give both as "
            "token ids (torch.long) or both as vectors (float)."
        )
    if task.clean.ndim not in (2, 3) or task.clean.shape[0] == 0:
        raise InputError(
            f"Task '{name}': clean is {tuple(task.clean.shape)}; expected tokens [batch pos] or vectors "
            "[batch pos d_vocab] with at least one prompt."
        )
    n_batch, n_pos = task.clean.shape[:2]
    if task.positions.ndim != 1 or len(task.positions) == 0:
        raise InputError(f"Task '{name}': positions must be a non-empty 1-D tensor, got {tuple(task.positions.shape)}.")
    bad = task.positions[(task.positions < -n_pos) | (task.positions >= n_pos)]
    if len(bad):
        raise InputError(
            f"Task '{name}': read positions {listed(bad.tolist())} lie outside inputs of length {n_pos}; "
            f"use positions in 0..{n_pos - 1} (or negative from the end)."
        )
    expected = (n_batch, len(task.positions))
    if tuple(task.answers.shape[:2]) != expected:
        raise InputError(
            f"Task '{name}': answers are {tuple(task.answers.shape)} but need {expected} leading dims "
            "(one answer per prompt and read position)."
        )
    if task.metric == "logit_diff":
        _check_logit_diff_answers(task, expected)
    elif task.metric in ("loss", "accuracy") and task.answers.is_floating_point():
        raise InputError(f"Task '{name}': metric {task.metric!r} needs integer answer tokens [batch pos].")
    elif task.metric == "mse" and (task.answers.ndim != 3 or not task.answers.is_floating_point()):
        raise InputError(
            f"Task '{name}': metric 'mse' needs float target vectors [batch pos d_vocab], "
            f"got {task.answers.dtype} {tuple(task.answers.shape)}."
        )
    for field in ("clean", "corrupt", "answers"):
        value = getattr(task, field)
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise InputError(f"Task '{name}': {field} contains NaN or inf; regenerate the data.")


def _check_labels(task: Task) -> None:
    """Check that ``labels`` names every input position with a label edge names can carry."""
    if task.labels is None:
        return
    if isinstance(task.labels, list):
        object.__setattr__(task, "labels", tuple(task.labels))
    labels, n_pos = task.labels, task.clean.shape[1]
    if not isinstance(labels, tuple) or len(labels) != n_pos:
        got = len(labels) if isinstance(labels, tuple) else type(labels).__name__
        raise InputError(f"Task '{task.name}': labels gives {got} names for inputs of {n_pos} positions; give one label per position.")
    for label in labels:
        if not isinstance(label, str) or not LABEL.match(label):
            raise InputError(f"Task '{task.name}': position label {label!r} is not a name; use letters, digits and '_' "
                             "(e.g. 'S1', 'END', 'ans0'), at most 64 characters.")


def _check_logit_diff_answers(task: Task, expected: tuple[int, int]) -> None:
    """Check answer and wrong-answer tokens of a logit-difference task."""
    name = task.name
    if task.wrong_answers is None:
        raise InputError(f"Task '{name}': metric 'logit_diff' needs wrong_answers; give one token per answer.")
    if tuple(task.wrong_answers.shape) != expected or tuple(task.answers.shape) != expected:
        raise InputError(
            f"Task '{name}': answers {tuple(task.answers.shape)} and wrong_answers "
            f"{tuple(task.wrong_answers.shape)} must both be {expected} token ids."
        )
    if task.answers.is_floating_point() or task.wrong_answers.is_floating_point():
        raise InputError(f"Task '{name}': answers and wrong_answers must be integer token ids for 'logit_diff'.")


def _check_tokens_in_vocab(task_name: str, field: str, tokens: Tensor, d_vocab: int) -> None:
    """Raise ValueError naming the first token id outside ``[0, d_vocab)``."""
    bad = tokens[(tokens < 0) | (tokens >= d_vocab)]
    if len(bad):
        raise InputError(
            f"Task '{task_name}': {field} holds token id {int(bad[0])} but the model's vocabulary has "
            f"{d_vocab} tokens (0..{d_vocab - 1}); build the task for this model's tokenizer."
        )
