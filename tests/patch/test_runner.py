"""Chunked execution: out-of-memory retries and trimming give identical results."""

import pytest
import torch

from pathpatch.patch.schedule import run_chunked
from pathpatch.task.groups import trim_task


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


def test_two_column_readout_equals_the_full_unembedding(random_model, random_task):
    """logit_diff reads only answer and wrong-answer columns; they equal the full logits' columns."""
    from pathpatch.patch.runner import prepare, unembed

    prep = prepare(random_model, random_task)
    assert prep.read_tokens is not None and prep.read_tokens.shape == (*random_task.answers.shape, 2)
    x = torch.randn(3 * random_task.clean.shape[0], len(random_task.positions), random_model.cfg.d_model)  # three variants
    full = random_model.unembed(x)
    compact = unembed(random_model, x, prep.read_tokens)
    torch.testing.assert_close(compact, full.gather(-1, prep.read_tokens.repeat(3, 1, 1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(prep.read_task.score_read(compact), random_task.score_read(full), atol=1e-5, rtol=0)


def test_metrics_needing_every_logit_keep_the_full_readout(random_model, random_task):
    from dataclasses import replace

    from pathpatch.patch.runner import prepare

    prep = prepare(random_model, replace(random_task, metric="loss"))
    assert prep.read_tokens is None and prep.read_task is prep.task


def test_default_memory_budget_is_half_the_free_cuda_memory_and_1_5_gb_on_cpu(monkeypatch):
    from pathpatch.patch.schedule import CPU_MEMORY_BUDGET, memory_budget

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (60 * 2**30, 80 * 2**30))
    assert memory_budget(None, torch.device("cuda", 0)) == 30 * 2**30
    assert memory_budget(None, torch.device("cpu")) == CPU_MEMORY_BUDGET == 1.5e9
    assert memory_budget(2**20, torch.device("cuda", 0)) == 2**20


def test_chunk_size_grows_with_the_budget(random_model):
    from pathpatch.patch.schedule import chunk_size

    small, large = (chunk_size(random_model, 8, 16, budget, 10**6) for budget in (2**24, 2**28))
    assert 1 <= small < large
    assert chunk_size(random_model, 8, 16, None, 10**6) == chunk_size(random_model, 8, 16, 1.5e9, 10**6)


def test_a_non_positive_memory_budget_is_refused_and_none_means_automatic():
    from pathpatch.patch.config import PatchConfig

    with pytest.raises(ValueError, match=r"max_memory=0; give a positive, finite budget in bytes"):
        PatchConfig(max_memory=0)
    assert PatchConfig().max_memory is None
