"""What a discovery run will cost, said before it starts: forward passes, seconds and peak memory.

Costs are counted in plain forward passes over the task's prompts and turned into seconds with one
timed forward, so the estimate follows the machine it runs on. Exact patching costs about
``EXACT_PER_ROW`` forwards an edge (variants start at their destination's layer and run in batches);
attribution costs one clean and one corrupt forward plus one forward and backward (about three
forwards) per interpolation step, then the exact re-check of its strongest edges. Memory is the
model's weights plus the activation budget a run keeps to (``schedule.memory_budget``), or less when
the whole run needs less. Estimates are rough (within a factor of about two); they tell minutes from hours.
"""

import logging
import time
from dataclasses import dataclass

import torch

from pathpatch.progress import duration
from pathpatch.task.groups import AnyTask, task_groups

log = logging.getLogger("pathpatch.progress")

EXACT_PER_ROW = 0.35  # forwards per exactly patched edge, measured on a 30-layer model (fewer on small ones)
BACKWARD = 3.0  # a forward with a backward pass, in forwards
FAITHFULNESS = 4.0  # circuit and complement runs after pruning


@dataclass(frozen=True)
class Estimate:
    """Forward passes, the seconds one takes, and peak bytes of a planned run."""

    method: str
    forwards: float
    forward_seconds: float
    peak_bytes: "int | float"

    @property
    def seconds(self) -> float:
        return self.forwards * self.forward_seconds

    def text(self) -> str:
        return (f"{self.method}: about {self.forwards:,.0f} forward passes of {self.forward_seconds:.2g} s, "
                f"{duration(self.seconds)} in all; peak memory about {self.peak_bytes / 1e9:.1f} GB")


@torch.no_grad()
def time_forward(model: torch.nn.Module, task: AnyTask) -> float:
    """Seconds of one plain forward pass over every prompt of ``task`` (after a one-prompt warm-up)."""
    groups = task_groups(task)
    model(groups[0].clean[:1].to(next(model.parameters()).device))
    started = time.perf_counter()
    for group in groups:
        model(group.clean.to(next(model.parameters()).device))
    return time.perf_counter() - started


def forwards(method: str, rows: int, steps: int, recheck: int) -> float:
    """Forward passes of a discovery run scoring ``rows`` edges (edge x position label with positions)."""
    if method == "exact":
        return EXACT_PER_ROW * rows + FAITHFULNESS
    if method == "acdc":
        return rows + FAITHFULNESS  # one circuit run an edge, at least
    if method == "activation":
        return EXACT_PER_ROW * rows + 1  # one patched activation a row, as an exactly patched edge
    passes = 1 if method == "eap" else steps
    return 2 + BACKWARD * passes + EXACT_PER_ROW * min(recheck, rows) + FAITHFULNESS


def announce(planned: Estimate, what: str) -> None:
    """Log ``what`` a run is and its estimate: at INFO when it will take more than a minute, else at DEBUG."""
    log.log(logging.INFO if planned.seconds > 60 else logging.DEBUG, "%s: %s", what, planned.text())


def estimate(model: torch.nn.Module, task: AnyTask, method: str, rows: int, steps: int, recheck: int, budget: "int | float") -> Estimate:
    """Return the estimate of a run; ``budget`` is the activation memory budget in bytes."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return Estimate(method, forwards(method, rows, steps, recheck), time_forward(model, task), weights + budget)
