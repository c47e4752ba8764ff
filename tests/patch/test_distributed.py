"""Variants sharded over two gloo processes give the same scores, in the same order, as one process."""

import socket

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow  # minutes of CPU (or processes) on 2 cores: make test-slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sharded_scores(rank: int, world: int, port: int, out: str) -> None:
    """One rank: join the group, score every edge of the permute model with small chunks, rank 0 saves."""
    import os

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    from pathpatch.models import build_task, load_model
    from pathpatch.patch.config import PatchConfig
    from pathpatch.patch.distributed import close, init_from_env
    from pathpatch.patch.edges import patch_edges

    assert init_from_env("cpu")
    try:
        table = patch_edges(load_model("permute"), build_task("permute", n=8), by_pos=True, config=PatchConfig(direction="noise", chunk=5))
        if rank == 0:
            table.to_csv(out, index=False)
    finally:
        close()


def test_two_gloo_processes_give_one_process_scores(tmp_path):
    from pathpatch.models import build_task, load_model
    from pathpatch.patch.config import PatchConfig
    from pathpatch.patch.edges import patch_edges

    out = tmp_path / "sharded.csv"
    mp.spawn(sharded_scores, args=(2, free_port(), str(out)), nprocs=2, join=True)
    alone = patch_edges(load_model("permute"), build_task("permute", n=8), by_pos=True, config=PatchConfig(direction="noise", chunk=5))
    alone.to_csv(tmp_path / "alone.csv", index=False)
    assert len(pd.read_csv(out)) == len(alone) > 5  # several chunks, so both ranks ran some
    assert out.read_bytes() == (tmp_path / "alone.csv").read_bytes()
