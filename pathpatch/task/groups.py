"""Tasks whose prompts differ in shape, and every helper that reads a task by its groups.

Patching stacks variants on the batch, so every prompt of one forward pass must share its length and read
positions: ``from_prompts`` groups prompt pairs into same-shape ``Task`` s (``TaskGroups``), and each engine call
runs once per group. The helpers here (``task_groups``, ``n_prompts``, ``without_labels``, ``with_metric``,
``trim_task``, ``one_shape``, ``groups_for``...) are the one place code asks how many prompts a task has,
which groups it runs as, and where its reads end.
"""

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.task.task import MetricFn, Task
from pathpatch.vocabulary import MIXING, MetricName


@dataclass(frozen=True)
class TaskGroups:
    """A task whose prompts differ in length (or in read positions), held as same-shape groups.

    Patching stacks variants on the batch, so every prompt of one forward pass must have the same
    length and read positions. Grouping prompts by (length, read positions) keeps every number exact,
    with no padding that could leak into a score: each engine call runs once per group and joins the
    per-prompt values, so a score over all prompts equals the mean over every prompt, as with one batch.
    Per-prompt values come out group by group, in the order groups first appear in the input.

    Attributes:
        name: Task name.
        groups: Same-shape ``Task`` s sharing name, metric and corruption.
    """

    name: str
    groups: tuple[Task, ...]

    def __post_init__(self) -> None:
        if not self.groups:
            raise InputError(f"Task '{self.name}' has no prompts; give at least one prompt pair.")
        first = self.groups[0]
        for group in self.groups[1:]:
            if group.metric_name != first.metric_name or group.clean.dtype != first.clean.dtype:
                raise InputError(
                    f"Task '{self.name}': groups mix metrics or input types ({first.metric_name}/{first.clean.dtype} vs "
                    f"{group.metric_name}/{group.clean.dtype}); every prompt of one task uses one metric and one input type."
                )

    @property
    def n_prompts(self) -> int:
        """Number of prompt pairs over all groups."""
        return sum(g.clean.shape[0] for g in self.groups)

    @property
    def metric(self) -> "MetricName | MetricFn":
        return self.groups[0].metric

    @property
    def metric_name(self) -> str:
        return self.groups[0].metric_name

    @property
    def higher_is_better(self) -> bool:
        return self.groups[0].higher_is_better

    @property
    def corruption(self) -> str:
        return self.groups[0].corruption

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise ValueError if ``model`` cannot read any group's inputs or answers."""
        for group in self.groups:
            group.check_model(model)

    def to(self, device: torch.device | str) -> "TaskGroups":
        return replace(self, groups=tuple(g.to(device) for g in self.groups))

    def with_metric(self, metric: "MetricName | MetricFn") -> "TaskGroups":
        """Return a copy scoring every group with ``metric``."""
        return replace(self, groups=tuple(replace(g, metric=metric) for g in self.groups))


AnyTask = Task | TaskGroups


def task_groups(task: AnyTask) -> tuple[Task, ...]:
    """Return the same-shape groups of a task: the task itself when all its prompts share one shape."""
    return task.groups if isinstance(task, TaskGroups) else (task,)


def without_labels(task: AnyTask) -> AnyTask:
    """Return the task as one ``Task`` when its groups differ only in position labels (same length and read
    positions), for work that does not look at positions; else ``task`` itself. Prompts keep their order.

    Labels split prompts of one length into groups (``S1`` at 2 here, at 3 there); merged again, corruptions
    that mix prompts (``mean``, ``resample``) and activation patching see the one batch they would without labels.
    """
    if not isinstance(task, TaskGroups):
        return task
    first = task.groups[0]
    same = all(g.clean.shape[1:] == first.clean.shape[1:] and torch.equal(g.positions, first.positions) for g in task.groups)
    if not same:
        return task
    cat = lambda name: torch.cat([getattr(g, name) for g in task.groups])  # noqa: E731
    features = None if first.features is None else {k: torch.cat([g.features[k] for g in task.groups]) for k in first.features}
    reference = None if first.reference is None else cat("reference")
    return Task(task.name, cat("clean"), cat("corrupt"), cat("answers"), None if first.wrong_answers is None else cat("wrong_answers"),
                first.positions, first.metric, first.corruption, reference, features)


def n_prompts(task: AnyTask) -> int:
    """Number of prompt pairs of a task or of all its groups."""
    return task.n_prompts if isinstance(task, TaskGroups) else task.clean.shape[0]


def with_metric(task: AnyTask, metric: "MetricName | MetricFn") -> AnyTask:
    """Return ``task`` scored with ``metric`` instead of its own."""
    return task.with_metric(metric) if isinstance(task, TaskGroups) else replace(task, metric=metric, reference=None)


@dataclass(frozen=True)
class Prompt:
    """One prompt pair as a file gives it, before grouping.

    Attributes:
        clean: Clean token ids ``[pos]`` or vectors ``[pos d_vocab]``.
        corrupt: Corrupt inputs, same shape as ``clean``.
        answers: One answer per read position ``[pos]`` (token ids) or ``[pos d_vocab]`` (targets).
        wrong_answers: One wrong answer per read position ``[pos]``, or None.
        positions: Read positions ``[pos]``, non-negative.
        features: Named numbers of this prompt (``Task.features``), or None.
        labels: One position label per input position (``Task.labels``), or None.
    """

    clean: Tensor
    corrupt: Tensor
    answers: Tensor
    wrong_answers: Tensor | None
    positions: Tensor
    features: dict[str, float] | None = None
    labels: tuple[str, ...] | None = None


def from_prompts(
    name: str, prompts: "list[Prompt]", metric: "MetricName | MetricFn" = "logit_diff", corruption: str = "paired"
) -> AnyTask:
    """Build a task from prompt pairs: one ``Task`` if they share length, read positions and position labels,
    else ``TaskGroups`` of prompts that do.

    Raises:
        ValueError: No prompts, or a group that fails ``Task``'s checks.
    """
    if not prompts:
        raise InputError(f"Task '{name}' has no prompts; give at least one prompt pair.")
    keyed: dict[tuple, list[Prompt]] = {}
    for prompt in prompts:
        labels = None if prompt.labels is None else tuple(prompt.labels)
        keyed.setdefault((prompt.clean.shape[0], tuple(prompt.positions.tolist()), labels), []).append(prompt)
    groups = []
    for members in keyed.values():
        wrong = None if members[0].wrong_answers is None else torch.stack([p.wrong_answers for p in members])
        names = {tuple(sorted(p.features or {})) for p in members}
        if len(names) > 1:
            raise InputError(f"Task '{name}': prompts name different features {sorted(names)}; give every prompt the same feature names.")
        features = {k: torch.tensor([float(p.features[k]) for p in members]) for k in names.pop()} or None
        groups.append(Task(name, torch.stack([p.clean for p in members]), torch.stack([p.corrupt for p in members]),
                           torch.stack([p.answers for p in members]), wrong, members[0].positions.clone(), metric, corruption,
                           features=features, labels=members[0].labels))
    return groups[0] if len(groups) == 1 else TaskGroups(name, tuple(groups))


def read_end(task: Task) -> int:
    """One past the last position the metric reads: with causal attention, later positions cannot change it."""
    return int((task.positions % task.clean.shape[1]).max()) + 1


def trim_task(task: Task, cut: bool = True) -> Task:
    """Return ``task`` with non-negative read positions and, with ``cut``, inputs cut after the last one
    (only right for causal attention: see ``is_causal``)."""
    positions = task.positions % task.clean.shape[1]
    end = read_end(task) if cut else task.clean.shape[1]
    labels = None if task.labels is None else task.labels[:end]
    return replace(task, clean=task.clean[:, :end], corrupt=task.corrupt[:, :end], positions=positions, labels=labels)


def one_shape(task: AnyTask, why: str) -> Task:
    """Return the task as one ``Task`` when all its prompts share one shape (position labels aside); else raise,
    saying ``why`` the caller needs one shape and what to do instead."""
    task = without_labels(task)
    if isinstance(task, TaskGroups):
        lengths = sorted({g.clean.shape[1] for g in task.groups})
        raise InputError(f"Task '{task.name}': the prompts have {len(task.groups)} shapes (lengths {', '.join(map(str, lengths[:6]))}); {why}")
    return task


def groups_for(task: AnyTask, corruption: str, positional: bool = False) -> tuple[Task, ...]:
    """Return the same-shape groups an engine call runs one by one; raise for corruptions that span groups.

    Groups that differ only in position labels run as one batch unless the call is ``positional``
    (edges at position labels need each group's own labels).

    ``mean`` and ``resample`` corruption mix prompts, so with prompts of several lengths they would mix
    only prompts of one length: a different experiment from the one named. They are refused instead.
    """
    task = task if positional else without_labels(task)
    if not isinstance(task, TaskGroups):
        return (task,)
    if corruption in MIXING:
        lengths = sorted({g.clean.shape[1] for g in task.groups})
        raise InputError(
            f"Task '{task.name}': corruption {corruption!r} mixes prompts, but the prompts have {len(lengths)} "
            f"different lengths ({', '.join(map(str, lengths[:6]))}); use corruption 'paired' or 'zero', or give prompts of one length."
        )
    return task.groups

