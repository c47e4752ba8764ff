"""Models and tasks: load a model from any source, build a seed task, train a seed model.

Names are imported on first use (PEP 562), so that light callers such as the command line's
``--help`` do not pay for importing TransformerLens.
"""

from pathpatch import lazy_members

_HOMES = {
    "load_model": "pathpatch.models.loading",
    "load_gguf": "pathpatch.models.gguf",
    "save_model": "pathpatch.models.checkpoint",
    "load_task": "pathpatch.models.task_files",
    "Task": "pathpatch.task.task",
    **{name: "pathpatch.models.zoo" for name in ("SEEDS", "TASK_ONLY", "build_task", "evaluate", "get_seed", "load_bundled")},
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_members(__name__, _HOMES)
