"""Argument types and the checks that run before any model loads: limits on sizes, devices, output
folders, input file sizes, and the activation memory a ``discover`` run will cache against what the device has.
"""

import argparse
import math
import os
import sys
from pathlib import Path

from pathpatch.cli.errors import EXIT_BAD_INPUT
from pathpatch.errors import InputError
from pathpatch.vocabulary import ATTRIBUTION_METHODS

MAX_PROMPTS = 1_000_000  # --n and a hypothesis file's n: beyond this, generating the prompts alone takes gigabytes


MAX_STEPS = 1_000  # EAP-IG --steps: published runs use 5-100; each step is one more batch through the backward pass


MAX_BOOTSTRAP = 100_000  # a hypothesis file's bootstrap resamples


LENS_BOOTSTRAP = 200  # `lens`: resamples of prompts for the 95% intervals, as a hypothesis file's default


MODEL_HELP = ("a bundled name, a TransformerLens checkpoint folder (config.json + model.safetensors or .pt), a weights file "
              "with --config, a Hugging Face folder, or file.py:function (runs that file)")


TASK_HELP = "a bundled task name, prompts as .jsonl, EAP-IG .csv or auto-circuit .json, or file.py:function"


EPILOG = ("exit codes: 0 ok, 1 a claim failed (check) or a model missed its target (train), 2 bad input, 3 internal error, "
          "4 no claim failed but some were inconclusive (check), "
          "130 interrupted. Errors are one line; --verbose or --debug adds the traceback (same exit code).")


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see `{self.prog} --help`.\n")


def out_dir(value: str, example: str = "the folder to write into, e.g. --out out/run1") -> Path:
    """Return an output folder argument as a path; an empty value would write into the working directory."""
    if not value.strip():
        raise InputError(f"--out is empty ({value!r}); give {example}.")
    return Path(value)


def show_progress() -> bool:
    """Progress bars only when a person watches a terminal."""
    return sys.stderr.isatty()


def check_input_size(spec: str | None, what: str) -> None:
    """Refuse an input file over ``files.MAX_INPUT_BYTES`` before anything parses it."""
    from pathpatch.files import check_size

    if spec and Path(spec).is_file():
        check_size(Path(spec), what)


def workers_count(text: str) -> int:
    """An argparse type: a number of worker processes, 1 up to this machine's CPU cores."""
    cores = os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of processes; give 1 to {cores}") from None
    if not 1 <= value <= cores:
        raise argparse.ArgumentTypeError(f"{value} processes on a machine with {cores} CPU cores; give 1 to {cores}")
    return value


def finite_float(text: str) -> float:
    """An argparse type: a finite number (NaN and infinities would compare true or false with everything)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give e.g. 0.05")
    return value


def bounded(flag: str, value: int, low: int, high: int, example: str) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``; else raise ValueError naming the flag and the bound."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{flag} {value!r} is out of range; give an integer from {low} to {high:,} ({example}).")
    return value


def max_memory_bytes(gigabytes: float | None) -> float | None:
    """Bytes of a ``--max-memory`` given in GB; refuse a value that is not positive and finite."""
    if gigabytes is None:
        return None
    if not math.isfinite(gigabytes) or gigabytes <= 0:
        raise InputError(f"--max-memory {gigabytes:g}; give a positive number of gigabytes, e.g. --max-memory 3.")
    return gigabytes * 1e9


def check_device(value: str) -> str:
    """Return ``value`` as a torch device string if this machine has that device; else raise ValueError naming the fix.

    Used by every command that takes ``--device``, before anything is loaded.
    """
    import torch

    try:
        device = torch.device(value.strip())
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"--device {value!r} is not a torch device; use cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA support"
            raise InputError(f"--device {value!r}: no CUDA GPU is usable on this machine (torch {torch.__version__}, built with {build}); "
                             "use --device cpu.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"--device {value!r}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1}); "
                             "pick one of them.")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"--device {value!r}: Apple's MPS backend is not available on this machine; use --device cpu.")
    elif device.type != "cpu":
        raise InputError(f"--device {value!r}: pathpatch runs on cpu, cuda, cuda:N or mps, not {device.type}.")
    return str(device)


def memory_estimate(model, task, config) -> int:
    """Return the bytes of activations a discovery run holds at once (the largest prompt group).

    Every source's output is cached for the clean and the corrupt run: prompts x positions x d_model x
    2 x sources. EAP/EAP-IG also keep, for the backward pass, every layer's activations of ``steps``
    stacked copies of the prompts (``schedule.layer_floats``, as the variant chunks count them). Bytes per value
    follow the model's dtype.
    """
    import torch

    from pathpatch.patch.schedule import layer_floats
    from pathpatch.task.groups import task_groups

    cfg = model.cfg
    sources = 1 + cfg.n_layers * (cfg.n_heads + (0 if cfg.attn_only else 1))
    width = getattr(cfg, "dtype", torch.float32).itemsize
    largest = 0
    for group in task_groups(task):
        batch, pos = group.clean.shape[:2]
        per_prompt = 2 * sources * pos * cfg.d_model
        if config.method in ATTRIBUTION_METHODS:
            per_prompt += (config.steps if config.method == "eap-ig" else 1) * cfg.n_layers * layer_floats(cfg, pos, cfg.n_heads)
        largest = max(largest, width * batch * per_prompt)
    return largest


def available_memory(device: str) -> tuple[int, str]:
    """Return the bytes free for activations on ``device`` and where they are: CUDA's free memory, else the
    system's available RAM (``/proc/meminfo`` MemAvailable, or physical memory)."""
    import os

    import torch

    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"{device} has"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "this machine has"
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine has"


def check_memory(model, task, config) -> None:
    """Raise ValueError, with the estimate, when a discovery run's activations cannot fit in available memory.

    Attribution runs in chunks that follow the memory budget, so only exact methods are checked.
    """
    from pathpatch.task.groups import n_prompts

    if config.method in ATTRIBUTION_METHODS:
        return
    need = memory_estimate(model, task, config)
    free, where = available_memory(config.device)
    if need > free:
        steps = f" x {config.steps} EAP-IG steps" if config.method == "eap-ig" else ""
        backward = ", plus backward activations for attribution" if config.method in ATTRIBUTION_METHODS else ""
        raise InputError(f"{n_prompts(task):,} prompts{steps} need about {need / 2**30:.1f} GiB of activations (prompts x positions "
                         f"x d_model x sources x 2{backward}), but {where} {free / 2**30:.1f} GiB available; use fewer prompts (--n)"
                         f"{', fewer --steps, or --method exact' if backward else ''}.")


def add_model_and_task(p: argparse.ArgumentParser) -> None:
    """The options naming a run's model and task (discover, patch)."""
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--config", default=None, help="config.json (HookedTransformerConfig fields) of a bare weights file given as --model")
    p.add_argument("--task", default=None, help=TASK_HELP + " (default: a bundled model's own task)")
    p.add_argument("--task-corruption", default=None, help="corruption a bundled task generates (e.g. values or pointers for permute)")
