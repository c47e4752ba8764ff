"""Chunked execution: out-of-memory retries and trimming give identical results."""

import pytest
import torch

from pathpatch.discovery.runner import run_chunked, trim_task


def test_out_of_memory_halves_the_chunk_and_keeps_results():
    calls = []

    def run(start, stop):
        calls.append(stop - start)
        if stop - start > 3:
            raise torch.OutOfMemoryError("fake")
        return torch.arange(start, stop, dtype=torch.float32)

    out = run_chunked(10, 8, run)
    assert out.tolist() == list(range(10))
    assert calls[:3] == [8, 4, 2] and max(calls[2:]) <= 3


def test_out_of_memory_with_one_variant_is_raised():
    def run(start, stop):
        raise torch.OutOfMemoryError("fake")

    with pytest.raises(torch.OutOfMemoryError):
        run_chunked(2, 1, run)


def test_trimming_cuts_after_the_last_read_position(random_task):
    from dataclasses import replace

    task = replace(random_task, positions=torch.tensor([-3, 1]))
    small = trim_task(task)
    assert small.positions.tolist() == [3, 1] and small.clean.shape[1] == 4
    assert torch.equal(small.clean, task.clean[:, :4])
