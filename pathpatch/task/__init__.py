"""Stage 1, task: what a run asks of a model. ``Task`` (clean and corrupt prompts, answers, a metric), its prompt
groups, the position labels that name prompt positions, and prompts built from text for real language models.

Nothing here loads a model: a task is checked against one (``Task.check_model``) only when both meet.
"""

from pathpatch import lazy_members

_HOMES = {
    "Task": "pathpatch.task.task",
    **{name: "pathpatch.task.groups" for name in ("TaskGroups", "Prompt", "from_prompts")},
    **{name: "pathpatch.task.positions" for name in ("Layout", "layout")},
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_members(__name__, _HOMES)
