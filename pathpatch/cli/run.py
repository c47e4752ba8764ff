"""``main``: parse the command line, run one command, and turn whatever reaches the top into one line and an
exit code; with ``--workers N``, start N ranks of the same command instead."""

import json
import logging
import os
import shlex
import sys
import traceback

from pathpatch.cli.errors import Terminated, explain_error, print_error, sigterm_raises
from pathpatch.cli.parser import build_parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit code (see the module docstring: 0 ok, 1 failed claim, 2 bad input)."""
    if argv is None and WORKER_ARGV in os.environ and _launched():  # a rank started by --workers
        argv = json.loads(os.environ[WORKER_ARGV])
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("pathpatch.progress").setLevel(logging.INFO)  # estimates and progress lines, also off a terminal
    if _launched() and os.environ.get("RANK", "0") != "0":
        logging.disable(logging.WARNING)  # rank 0 says it once
    if args.workers > 1 and not _launched():
        return _launch_workers(args.workers, argv, args.command)
    args.command_line = shlex.join(["pathpatch", *argv])
    with sigterm_raises():
        try:
            return args.func(args)
        except (Exception, KeyboardInterrupt, Terminated) as err:  # the one place every failure becomes one line
            code, message = explain_error(err)
            if args.verbose or args.debug:  # the traceback, then the line; the exit code stays the same
                traceback.print_exc()
            if _left_for_launcher(code, message, err):
                return code
        print_error(args, message)
        return code


WORKER_ARGV = "PATHPATCH_WORKER_ARGV"


def _launched() -> bool:
    from pathpatch.patch.distributed import launched

    return launched()


def _left_for_launcher(code: int, message: str, err: BaseException) -> bool:
    """In a rank started by ``--workers``, leave the error for the launcher to report once; return whether it did."""
    from pathpatch.patch.distributed import is_peer_failure, leave_error

    return leave_error(code, message, isinstance(err, Terminated) or is_peer_failure(err))


def _launch_workers(n: int, argv: list[str], command: str) -> int:
    """Run this command as ``n`` ranks (as ``torchrun --standalone --nproc-per-node n``; rank 0 writes)."""
    from pathpatch.patch.distributed import launch

    rest, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            rest.append(arg)
    # The command line travels in the environment: torchrun's own parser would take abbreviations such as --n.
    code, message = launch(n, {WORKER_ARGV: json.dumps(rest)})
    if message:
        print(f"pathpatch {command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
