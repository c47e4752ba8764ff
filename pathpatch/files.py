"""Atomic writes: a file or a whole output folder appears complete or not at all (a leaf module, like ``names.py``).

A file is written to a temporary file beside it and renamed over it. An output folder ``DIR`` is
written into a hidden sibling ``.DIR.tmp-PID-XXXX`` (same parent, so the rename stays on one file
system) that moves into place when every file is in it: an earlier ``DIR`` is renamed to
``.DIR.old-PID-XXXX``, the new one renamed to ``DIR``, the old one deleted (``os.replace`` cannot
replace a non-empty folder). So ``DIR`` holds one complete run or the earlier one, never a mix. On an
exception, Ctrl-C or SIGTERM the temporary folder is removed; after a SIGKILL it stays, named with the
dead process's id, and the next run into ``DIR`` removes it (or, if the kill fell between the two
renames, puts the earlier run back).

Every output folder holds ``.pathpatch-run.json`` (the marker: pathpatch version, command, files). A
folder with the marker is pathpatch's and is replaced whole by the next run into it (so is one from
before markers that holds only pathpatch's output names); a folder holding other files (besides
nested output folders) is someone else's: pathpatch refuses to write there unless forced, and then
writes its files beside the others and deletes none of them. Input files (circuits, hypotheses,
prompts) are read only up to ``MAX_INPUT_BYTES``.
"""

import json
import os
import re
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pathpatch.errors import InputError, listed

MARKER = ".pathpatch-run.json"
MAX_INPUT_BYTES = 50 * 2**20  # circuit JSON, hypothesis TOML, prompt files: refused above this size, before parsing
LEGACY_OUTPUTS = frozenset({"scores.csv", "circuit.json", "circuit.dot", "circuit.svg", "circuit.png", "circuit.pdf", "report.md",
                            "report.html", "check.json", "check.md"})  # what discover/check/draw wrote before folders had a marker
_SCRATCH = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[^/]*")


def write_atomic(target: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``target``, then rename it over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def write_text_atomic(target: Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically."""
    return write_atomic(target, lambda tmp: Path(tmp).write_text(text))


def read_text_limited(path: "str | Path", what: str, limit: int = MAX_INPUT_BYTES) -> str:
    """Return the UTF-8 text of ``path``, refusing files over ``limit`` bytes before reading them.

    A byte-order mark at the start (Windows editors write one) is dropped, not refused.

    Raises:
        FileNotFoundError: No such file.
        ValueError: A folder, a file over the limit, or text that is not UTF-8.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give the {what} file itself.")
    check_size(path, what, limit)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); give the {what} file as UTF-8.") from None


def check_size(path: Path, what: str, limit: int = MAX_INPUT_BYTES) -> None:
    """Raise ValueError if the file ``path`` is larger than ``limit`` bytes (checked before anything reads it)."""
    size = Path(path).stat().st_size
    if size > limit:
        raise InputError(f"{path} is {size / 2**20:.1f} MB; {what} files are limited to {limit / 2**20:.0f} MB "
                         "(pathpatch.files.MAX_INPUT_BYTES), so it was not read. Give a smaller file.")


def foreign_entries(folder: Path) -> list[str]:
    """Return the entries of ``folder`` pathpatch did not write.

    With a marker, pathpatch wrote what it lists; without one (a folder from before markers), the
    names in ``LEGACY_OUTPUTS``. Nested output folders and pathpatch's scratch folders count as its own.
    """
    folder = Path(folder)
    listed = {MARKER, *_marker_files(folder)} if (folder / MARKER).is_file() else LEGACY_OUTPUTS
    return [e for e in sorted(p.name for p in folder.iterdir())
            if e not in listed and not _SCRATCH.fullmatch(e) and not _output_subfolder(folder / e)]


def _output_subfolder(path: Path) -> bool:
    """Whether ``path`` is a real folder holding only what pathpatch wrote (a nested output folder)."""
    return path.is_dir() and not path.is_symlink() and not foreign_entries(path)


def register_files(folder: Path, names: list[str]) -> None:
    """Add ``names`` to the marker of the output folder ``folder`` (if it is one), so later runs know them."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return
    record = _read_marker(Path(folder))
    record["files"] = sorted({*record.get("files", []), *names})
    write_text_atomic(marker, json.dumps(record, indent=2) + "\n")


@contextmanager
def output_folder(target: "str | Path", command: str, version: str, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to write into; on success it becomes ``target`` whole.

    Args:
        target: The output folder; created, or replaced if it holds an earlier pathpatch run.
        command: The command line recorded in the marker.
        version: The pathpatch version recorded in the marker.
        force: Write into a folder that holds files pathpatch did not write (they are kept).

    Raises:
        ValueError: ``target`` is a file, the working directory, or holds other files and ``force`` is off.
        OSError: The folder cannot be written (the message names it; ``target`` is left as it was).
    """
    target = Path(os.path.realpath(Path(target).expanduser()))
    clean_scratch(target)
    merge = claim_folder(target, force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-{os.getpid()}-"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the folder gets the mode mkdir would give it
    except OSError as err:
        raise OSError(f"cannot create the output folder {target} ({err.strerror or err}); check the permissions "
                      "of its parent folder or choose another --out.") from None
    try:
        yield tmp
        written = sorted(p.name for p in tmp.iterdir())
        record = {"pathpatch": version, "command": command, "files": written}
        write_text_atomic(tmp / MARKER, json.dumps(record, indent=2) + "\n")
        with _signals_blocked():
            _merge(tmp, target) if merge else _swap(tmp, target)
    except OSError as err:
        raise OSError(f"could not write the output folder {target} ({err.strerror or err}); it was left as it was. "
                      "Free disk space, check permissions, or choose another --out.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def claim_folder(target: "str | Path", force: bool = False) -> bool:
    """Check that ``target`` may be written as an output folder; return whether files must be merged into it.

    A missing, empty or pathpatch-written folder is replaced whole. A folder holding other files, or the
    working directory, is refused unless ``force``; then the new files are merged in beside the others.

    Raises:
        ValueError: ``target`` is a file, holds files pathpatch did not write, or holds the working directory.
    """
    target = Path(os.path.realpath(Path(target).expanduser()))
    if target.exists() and not target.is_dir():
        raise InputError(f"--out {target} is a file; give a folder to write into (it is created if missing).")
    cwd = Path(os.path.realpath(Path.cwd()))
    holds_cwd = target == cwd or target in cwd.parents
    if not target.is_dir():
        return False
    foreign = foreign_entries(target)
    if foreign and not force:
        shown = listed(foreign)
        raise InputError(f"--out {target} holds files pathpatch did not write ({shown}); choose an empty or new folder, "
                         "or pass --force to write beside them (they are kept).")
    if holds_cwd and not force:
        raise InputError(f"--out {target} is the working directory (or holds it), which cannot be swapped for a new "
                         "folder; give a subfolder, e.g. --out out/run1 (or --force to write the files into it).")
    return bool(foreign) or holds_cwd


def clean_scratch(target: Path) -> None:
    """Remove scratch folders beside ``target`` left by killed runs; restore an earlier run a kill left renamed away."""
    parent = target.parent
    if not parent.is_dir():
        return
    for entry in sorted(parent.iterdir()):
        match = _SCRATCH.fullmatch(entry.name)
        if match is None or match["name"] != target.name or _alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not target.exists():
            os.rename(entry, target)  # a kill fell between the two renames: the earlier run comes back
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (this process counts as alive: its scratch folders are in use)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` into place as ``target``, moving an earlier ``target`` away first and deleting it last."""
    old = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}" if target.exists() else None
    if old is not None:
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _merge(tmp: Path, target: Path) -> None:
    """Move each new file into ``target``; delete the files of an earlier run it lists; keep all others."""
    earlier = set(_marker_files(target)) if (target / MARKER).is_file() else set()
    new = {p.name for p in tmp.iterdir()}
    for name in sorted(new - {MARKER}) + [MARKER]:
        dest = target / name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(tmp / name, dest)
    for name in sorted(earlier - new):
        path = target / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _marker_files(folder: Path) -> list[str]:
    files = _read_marker(folder).get("files", [])
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _read_marker(folder: Path) -> dict:
    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


@contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the duration (the renames), delivering them afterwards."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
