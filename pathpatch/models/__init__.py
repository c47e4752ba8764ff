"""Models and tasks: load a model from any source, build a seed task, train a seed model."""

from pathpatch.models.loading import load_model
from pathpatch.models.tasks import Task
from pathpatch.models.zoo import SEEDS, TASK_ONLY, build_task, evaluate, get_seed, load_bundled

__all__ = ["SEEDS", "TASK_ONLY", "Task", "build_task", "evaluate", "get_seed", "load_bundled", "load_model"]
