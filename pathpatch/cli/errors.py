"""How every failure of the command line ends: one line on stderr and an exit code.

Exit codes: 0 done; 1 a claim failed (``check``) or a trained model missed its target (``train``); 4 no claim failed
but some were inconclusive; 2 bad input (arguments, files, devices, sizes, out of memory, a folder that cannot be
written); 3 an unexpected internal error (pathpatch's own bug); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

import argparse
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pathpatch.errors import InputError

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised where the process is so that output folders are cleaned up as on Ctrl-C."""


def explain_error(err: BaseException) -> tuple[int, str]:
    """Return the exit code and the one-line message for an exception that reached the top."""
    if isinstance(err, (KeyboardInterrupt, Terminated)):
        interrupted = isinstance(err, KeyboardInterrupt)
        return (EXIT_INTERRUPTED if interrupted else EXIT_TERMINATED,
                f"{'interrupted' if interrupted else 'terminated (SIGTERM)'}; the output folder was left as it was")
    kinds = {cls.__name__ for cls in type(err).__mro__}
    text = err.args[0] if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) else str(err)
    if isinstance(err, MemoryError) or "OutOfMemoryError" in kinds:
        return EXIT_BAD_INPUT, (f"out of memory ({_first_line(text) or type(err).__name__}); use fewer prompts (--n), fewer EAP-IG --steps, "
                                "a smaller model, or a device with more memory")
    if isinstance(err, RecursionError):
        return EXIT_BAD_INPUT, "an input is nested too deeply to read (RecursionError); give flat JSON/TOML as pathpatch writes it"
    if isinstance(err, ImportError):
        return EXIT_BAD_INPUT, f"a module could not be imported ({text}); install pathpatch's dependencies (pip install -e .) or the module named"
    if isinstance(err, OSError) and err.strerror and err.filename:
        return EXIT_BAD_INPUT, f"{err.strerror}: {err.filename}; check the path, its permissions and the free disk space"
    if isinstance(err, (InputError, OSError)):
        return EXIT_BAD_INPUT, text or type(err).__name__
    return EXIT_INTERNAL, (f"unexpected {type(err).__name__}: {_first_line(text)}; this is a bug if the input is valid: rerun with --debug "
                           "for the traceback and report it")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else ""


def print_error(args: argparse.Namespace, message: str) -> None:
    """Print ``message`` as the one error line of this command."""
    one_line = re.sub(r"\s*\n\s*", " ", message.strip())
    print(f"pathpatch {args.command}: error: {one_line}", file=sys.stderr)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into a ``Terminated`` exception for the duration (main thread only), so cleanups run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
