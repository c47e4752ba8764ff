"""Sharding patched variants over processes with ``torch.distributed`` (gloo on CPU, NCCL on GPUs).

Every patching method ends in ``runner.run_chunked``: a list of variants cut into chunks, each chunk
one batched forward pass, and chunks independent of each other. Under ``torchrun`` (or
``pathpatch --workers N``) each rank runs the whole method, but only its own chunks: chunk ``i`` goes to
rank ``i mod world_size``. The chunk boundaries are the ones a single process uses, so every rank
computes each variant exactly as one process would; the per-chunk results are then gathered on every
rank and joined in chunk order, and rank 0 writes the outputs. Cheap shared work (the clean and
corrupt runs, caches) is repeated on every rank rather than sent around.
"""

import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from pathpatch.errors import InputError

log = logging.getLogger(__name__)


def world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device(device: str) -> str:
    """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` so that each rank has its own GPU."""
    if launched() and device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def init_from_env(device: str = "cpu", timeout_minutes: int = 30) -> bool:
    """Join the process group ``torchrun`` describes (NCCL for CUDA, gloo otherwise); return whether it did.

    Raises:
        ValueError: ``torch.distributed`` is not available in this build of torch.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process (drop --workers).")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_device(device))
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    log.info("rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def my_chunks(n_chunks: int) -> list[int]:
    """The chunk indices this rank runs."""
    rank, size = world()
    return list(range(rank, n_chunks, size))


def gather_chunks(local: dict[int, Tensor], n_chunks: int) -> list[Tensor]:
    """Join every rank's ``{chunk index: result}`` into the results of all chunks, in chunk order."""
    _, size = world()
    if size == 1:
        return [local[i] for i in range(n_chunks)]
    parts: list[dict[int, Tensor] | None] = [None] * size
    dist.all_gather_object(parts, {i: t.cpu() for i, t in local.items()})
    merged = {i: t for part in parts for i, t in (part or {}).items()}
    missing = sorted(set(range(n_chunks)) - set(merged))
    assert not missing, f"chunks {missing} were run by no rank"
    return [merged[i] for i in range(n_chunks)]


def close() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
