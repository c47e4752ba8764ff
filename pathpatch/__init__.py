"""pathpatch: automated circuit discovery on TransformerLens models."""

from collections.abc import Callable
from importlib import import_module

__version__ = "0.1.0"


def lazy_members(package: str, homes: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` (PEP 562) importing each name of ``homes`` (name -> module) on first use,
    so that importing ``package`` does not import TransformerLens."""

    def __getattr__(name: str) -> object:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(homes[name]), name)

    return __getattr__


_HOMES = {
    **{name: "pathpatch.pipeline" for name in ("DiscoverConfig", "check", "discover")},
    "load_model": "pathpatch.models.loading",
    "save_model": "pathpatch.models.checkpoint",
    "load_task": "pathpatch.models.task_files",
    "Task": "pathpatch.task.task",
    "TaskGroups": "pathpatch.task.groups",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_members(__name__, _HOMES)
