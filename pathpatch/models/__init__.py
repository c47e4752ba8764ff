"""Models and tasks: load a model from any source, build a seed task, train a seed model.

Names are imported on first use (PEP 562), so that light callers such as the command line's
``--help`` do not pay for importing TransformerLens.
"""

from importlib import import_module

_HOMES = {
    "load_model": "pathpatch.models.loading",
    "Task": "pathpatch.models.tasks",
    **{name: "pathpatch.models.zoo" for name in ("SEEDS", "TASK_ONLY", "build_task", "evaluate", "get_seed", "load_bundled")},
}

__all__ = ["SEEDS", "TASK_ONLY", "Task", "build_task", "evaluate", "get_seed", "load_bundled", "load_model"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'pathpatch.models' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
