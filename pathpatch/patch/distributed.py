"""Sharding patched variants over processes with ``torch.distributed`` (gloo on CPU, NCCL on GPUs).

Every patching method ends in ``schedule.run_chunked``: a list of variants cut into chunks, each chunk
one batched forward pass, and chunks independent of each other. Under ``torchrun`` (or
``pathpatch --workers N``) each rank runs the whole method, but only its own chunks: chunk ``i`` goes to
rank ``i mod world_size``. The chunk boundaries are the ones a single process uses, so every rank
computes each variant exactly as one process would; the per-chunk results are then gathered on every
rank and joined in chunk order, and rank 0 writes the outputs. Cheap shared work (the clean and
corrupt runs, caches) is repeated on every rank rather than sent around.

``launch`` starts the ranks (as ``torchrun --standalone`` would) and turns a failed run into one line: ranks
do not print their errors but leave them in a folder the launcher reads, so the line names the rank that
failed first and why (its own message, or the signal that killed it), not the ranks that stopped after it.
"""

import json
import logging
import os
import signal
import sys
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

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


ERROR_DIR = "PATHPATCH_RANK_ERRORS"  # where each rank leaves its error line for the launcher
PEER = "peer"  # a rank's error was caused by another rank stopping (a broken connection, the launcher's SIGTERM)


def leave_error(code: int, message: str, caused_by_peer: bool) -> bool:
    """In a launched rank, leave this rank's exit code and error line for ``launch``; return whether it did."""
    folder = os.environ.get(ERROR_DIR)
    if not launched() or not folder:
        return False
    rank = int(os.environ.get("RANK", "0"))
    record = {"code": code, "message": message, "kind": PEER if caused_by_peer else "own"}
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(record))
    return True


def is_peer_failure(err: BaseException) -> bool:
    """Whether ``err`` in a launched rank comes from another rank stopping (a collective whose peer is gone)."""
    kinds = {cls.__name__ for cls in type(err).__mro__}
    return launched() and bool(kinds & {"DistError", "DistBackendError", "DistNetworkError"} or
                               "gloo" in str(err).lower() or "connection closed by peer" in str(err).lower())


def launch(n: int, env: dict[str, str]) -> tuple[int, str | None]:
    """Run ``python -m pathpatch`` as ``n`` ranks of one job on this machine; return its exit code and error line.

    ``env`` is added to each rank's environment. The error line (None when every rank succeeded) is the
    first failing rank's own line, or names the signal that killed it; ranks stopped because a peer
    failed are not reported.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its log lines would repeat the error
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, rdzv_backend="c10d", rdzv_endpoint="localhost:0",
                          run_id=str(uuid.uuid4()), max_restarts=0, monitor_interval=0.1)
    with tempfile.TemporaryDirectory(prefix="pathpatch-ranks-") as folder:
        saved = dict(os.environ)
        os.environ.update({"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n))),
                           **env, ERROR_DIR: folder})
        try:
            elastic_launch(config, sys.executable)("-m", "pathpatch")
            return 0, None
        except ChildFailedError as failed:
            return _first_failure(failed.failures, Path(folder), n)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _first_failure(failures: dict, folder: Path, n: int) -> tuple[int, str]:
    """The exit code and line of the rank whose failure stopped the job (see ``launch``)."""
    left = {rank: json.loads(path.read_text()) for rank in failures
            if (path := folder / f"rank{rank}.json").exists()}
    for rank, failure in sorted(failures.items()):
        if failure.exitcode < 0 and -failure.exitcode != signal.SIGTERM:  # killed from outside: the cause
            name = failure.signal_name()
            return 128 + -failure.exitcode, (
                f"rank {rank} of {n} was killed by {name} (the out-of-memory killer sends SIGKILL) and the run stopped; "
                "nothing was written to --out. Run again with fewer --workers or a smaller --max-memory.")
    own = [rank for rank, record in sorted(left.items()) if record["kind"] != PEER]
    if own:
        record = left[own[0]]
        return record["code"], record["message"] if own[0] == 0 else f"rank {own[0]} of {n}: {record['message']}"
    rank, failure = min(failures.items(), key=lambda item: (item[1].timestamp, item[0]))
    return 128 + signal.SIGTERM if failure.exitcode < 0 else failure.exitcode, (
        f"rank {rank} of {n} stopped (exit {failure.exitcode}) and the run stopped with it; nothing was written to --out. "
        "Rerun with --debug to see each rank's traceback.")
