"""Python factories: ``path/to/file.py:function`` or ``package.module:function`` specs (a leaf module).

A factory is the one spec form that runs the user's code, for models or tasks that need code to build.
Every other spec is data and is never executed. Importing a factory therefore always logs, at WARNING,
which file runs; a spec is a factory only when its shape says so (a lone letter before the colon is a
Windows drive, not a module).

What the user's code raises while it is imported or called (an exception of its own, a syntax error,
``sys.exit``) is bad input, reported as the factory's (``your model factory f.py:build raised
RuntimeError: ... (f.py:12)``), never as pathpatch's bug; ``--debug`` shows its traceback.
"""

import functools
import importlib
import importlib.util
import logging
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pathpatch.errors import InputError

FACTORY = re.compile(r"(?P<source>[^:]+\.py|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)")


def parse_factory(spec: str) -> tuple[str, str] | None:
    """Return ``(source, function)`` when ``spec`` has a factory's shape, else None."""
    match = FACTORY.fullmatch(spec)
    if match is None or len(match["source"]) == 1:  # C:model is a drive letter, not a module
        return None
    return match["source"], match["function"]


def import_factory(spec: str, what: str, log: logging.Logger) -> Callable:
    """Import the factory ``spec`` names and return its function, logging which file runs.

    Args:
        spec: ``path/to/file.py:function`` or ``package.module:function``.
        what: What it builds, for messages (``model``, ``task``).
        log: Logger of the calling loader.

    Raises:
        FileNotFoundError: The ``.py`` file does not exist.
        ValueError: Not a factory spec, no such module, or no such function.
    """
    parsed = parse_factory(spec)
    if parsed is None:
        raise InputError(f"{spec!r} is not a factory; write path/to/file.py:function or package.module:function.")
    source, function = parsed
    module = _import_file(spec, source, function, what, log) if source.endswith(".py") else _import_module(spec, source, function, what, log)
    found = getattr(module, function, None)
    if not callable(found):
        defined = sorted(n for n, v in vars(module).items() if callable(v) and getattr(v, "__module__", None) == module.__name__)
        raise InputError(
            f"{what.capitalize()} factory {spec!r}: {source} has no function {function!r}; it defines "
            f"{', '.join(defined) or 'no functions'}. Name the function that returns the {what}."
        )

    @functools.wraps(found)
    def call(*args, **kwargs):
        with running(spec, what):
            return found(*args, **kwargs)

    return call


@contextmanager
def running(spec: str, what: str) -> Iterator[None]:
    """Run the user's code: its exceptions and exit calls become one InputError naming the factory."""
    try:
        yield
    except (InputError, KeyboardInterrupt):
        raise
    except SystemExit as err:
        raise InputError(f"your {what} factory {spec} called sys.exit({err.code!r}) instead of returning a {what}; "
                         f"return the {what} (or raise an exception saying what is wrong).") from err
    except Exception as err:
        text = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        raise InputError(f"your {what} factory {spec} raised {type(err).__name__}{': ' + text if text else ''}{_where(err, spec)}; "
                         "fix the factory (rerun with --debug for its traceback).") from err


def _where(err: BaseException, spec: str) -> str:
    """`` (file.py:LINE)`` of the innermost frame in the factory's own file, when there is one."""
    source = parse_factory(spec)
    frames = [f for f in traceback.extract_tb(err.__traceback__) if source and Path(f.filename).name == Path(source[0]).name]
    if isinstance(err, SyntaxError) and err.filename:
        return f" ({Path(err.filename).name}:{err.lineno})"
    return f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def _import_file(spec: str, source: str, function: str, what: str, log: logging.Logger) -> object:
    """Import a ``.py`` file as a module, by path, without touching ``sys.path``."""
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{what.capitalize()} factory {spec!r}: {path} does not exist; give an existing 'file.py:function'.")
    log.warning("running %s factory %s from %s", what, function, path)
    name = "pathpatch_factory_" + re.sub(r"\W", "_", str(path))
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        with running(spec, what):
            module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_module(spec: str, source: str, function: str, what: str, log: logging.Logger) -> object:
    """Import ``package.module`` from ``sys.path``, logging the file it comes from."""
    try:
        module_spec = importlib.util.find_spec(source)
    except ModuleNotFoundError:
        module_spec = None
    if module_spec is None:
        raise InputError(
            f"{what.capitalize()} factory {spec!r}: no module {source!r} on sys.path; give 'path/to/file.py:{function}' or "
            "make the module importable (install it or add its folder to PYTHONPATH)."
        )
    log.warning("running %s factory %s from %s (module %s)", what, function, module_spec.origin, source)
    with running(spec, what):
        return importlib.import_module(source)
