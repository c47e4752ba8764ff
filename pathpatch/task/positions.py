"""Named positions: what the ``@POS`` of a position-aware edge stands for in each prompt.

A position-aware edge ``L0H0->L1H0.v@END`` joins a writer and a reader at the same position: the
residual stream carries information along a position, and heads move it between positions inside
themselves. Prompts of one fixed template can name positions by index (``@3``, the default) or give
one label per position (``BOS, a0, a1, ...``); prompts of different lengths name them by role
(``{"S1": 2, "IO": 4, "END": -1}``), so ``END`` is the last token of every prompt however long it is.
A label may cover several positions (a span), and positions no label names share the label ``other``.

``Task.labels`` holds one label per position of a same-shape group; ``layout`` orders the labels
of a whole task into the columns of a position-aware circuit (by where they sit in the prompts) and
records which label can reach which through attention (a position of ``a`` at or before one of ``b``).
"""

from dataclasses import dataclass

import pandas as pd
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.task.groups import AnyTask, read_end, task_groups
from pathpatch.task.task import OTHER, Task

__all__ = ["OTHER", "Layout", "labels_of", "layout", "is_positional", "positions_of"]


def labels_of(task: Task) -> tuple[str, ...]:
    """Return one label per position of a same-shape task: its ``labels``, else the position indices.

    Examples:
        >>> import torch
        >>> t = Task("t", torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long),
        ...          torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long), torch.tensor([2]))
        >>> labels_of(t)
        ('0', '1', '2')
    """
    return task.labels if task.labels is not None else tuple(str(i) for i in range(task.clean.shape[1]))


def positions_of(labels: tuple[str, ...], label: str) -> list[int]:
    """Return the positions a label covers in one group (empty if the group lacks it)."""
    return [i for i, name in enumerate(labels) if name == label]


@dataclass(frozen=True)
class Layout:
    """The position columns of a position-aware circuit.

    Attributes:
        labels: Every label of the task, in the order of the positions they name (``other`` last).
        tokens: For each label, the token it covers in the first prompt that has it (for diagrams), or ``""``.
        reaches: Pairs ``(a, b)`` such that attention can move information from a position labelled ``a``
            to one labelled ``b`` in some prompt (``a`` at or before ``b``; every pair for bidirectional models).
    """

    labels: tuple[str, ...]
    tokens: tuple[str, ...]
    reaches: frozenset[tuple[str, str]]

    def index(self, label: str) -> int:
        """The column of ``label``; raise KeyError naming the labels there are."""
        if label not in self.labels:
            shown = ", ".join(self.labels[:12]) + (" ..." if len(self.labels) > 12 else "")
            raise InputError(f"Unknown position {label!r}; this task's positions are {shown}.")
        return self.labels.index(label)

    def to_dict(self) -> dict:
        """JSON-ready form (stored in a circuit's graph attributes)."""
        return {"labels": list(self.labels), "tokens": list(self.tokens), "reaches": sorted([a, b] for a, b in self.reaches)}

    def moves_to(self, label: str, channel: str | None) -> tuple[str, ...]:
        """The positions whose head output a head input at ``label`` feeds: the one rule of how attention moves
        information between positions. A query (``channel`` ``q``) stays at its own position; a key or value
        (``k``, ``v``) reaches every position that can attend to it (``reaches``).

        Examples:
            >>> grid = Layout(("A", "B"), ("", ""), frozenset({("A", "A"), ("A", "B"), ("B", "B")}))
            >>> grid.moves_to("A", "q"), grid.moves_to("A", "v"), grid.moves_to("B", "k")
            (('A',), ('A', 'B'), ('B',))
        """
        if channel in ("k", "v"):
            return tuple(b for b in self.labels if (label, b) in self.reaches)
        return (label,)

    @classmethod
    def from_dict(cls, data: dict) -> "Layout":
        return cls(tuple(data["labels"]), tuple(data["tokens"]), frozenset((a, b) for a, b in data["reaches"]))


def layout(task: AnyTask, decode=None, causal: bool = True) -> Layout:
    """Return the position columns of ``task``: its labels ordered by mean first position over groups.

    Args:
        task: A task or length groups.
        decode: Optional callable from a token id to its text, for the columns' tokens.
        causal: Whether attention looks backwards only (else every label reaches every label). With causal
            attention, positions after a group's last read position cannot change the metric, so they name no column
            (as patching cuts them off).

    Raises:
        ValueError: Some prompts carry labels and others of the task do not.
    """
    first_at: dict[str, list[int]] = {}
    tokens: dict[str, str] = {}
    reaches: set[tuple[str, str]] = set()
    groups = task_groups(task)
    if len({g.labels is None for g in groups}) > 1:
        raise InputError(f"Task '{task.name}': some prompts label their positions and others do not; give every prompt labels "
                         "(or none), so that one position name means one thing in every prompt.")
    for group in groups:
        labels = labels_of(group)
        if causal:
            labels = labels[: read_end(group)]
        spans = {name: positions_of(labels, name) for name in dict.fromkeys(labels)}
        for name, where in spans.items():
            first_at.setdefault(name, []).append(where[0])
            tokens.setdefault(name, _token(group.clean, where[0], decode))
        for a, pa in spans.items():
            for b, pb in spans.items():
                if not causal or pa[0] <= pb[-1]:
                    reaches.add((a, b))
    order = sorted(first_at, key=lambda name: (name == OTHER, sum(first_at[name]) / len(first_at[name])))
    return Layout(tuple(order), tuple(tokens[name] for name in order), frozenset(reaches))


def _token(clean: Tensor, pos: int, decode) -> str:
    """The first prompt's token at ``pos`` as text (its id without ``decode``; empty for vector inputs)."""
    if clean.is_floating_point():
        return ""
    token = int(clean[0, pos])
    return str(decode(token)) if decode is not None else str(token)


def is_positional(table: pd.DataFrame) -> bool:
    """Whether a score table holds position-aware rows (edges named ``...@POS``)."""
    return "edge" in table and bool(table["edge"].astype(str).str.contains("@", regex=False).any())


def position_layout(task: AnyTask, causal: bool = True) -> "Layout":
    """The task's position columns (``positions.layout``); refuse index positions over prompts of different lengths."""
    groups = task_groups(task)
    if len({g.clean.shape[1] for g in groups}) > 1 and any(g.labels is None for g in groups):
        raise InputError(f"Task '{task.name}': its prompts differ in length, so position indices name different tokens in "
                         "different prompts; label the positions by role (JSONL \"labels\": {\"S1\": 2, \"END\": -1}) "
                         "or score edges over all positions.")
    return layout(task, causal=causal)
