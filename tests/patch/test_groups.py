"""Prompts of different lengths: every engine call equals the same call on each prompt alone."""

import pytest
import torch

from pathpatch.circuit.prune import acdc
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.circuits import run_circuits_per_prompt
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges, path_patch
from pathpatch.patch.graph import ComputeGraph
from pathpatch.task.groups import Prompt, TaskGroups, from_prompts
from pathpatch.task.task import Task
from tests.conftest import hand_patched_metric
from tests.patch.test_edges import EDGES


def ragged_prompts(lengths=(5, 7, 5, 6, 7), seed=1) -> list[Prompt]:
    """Random prompt pairs for the random model (d_vocab 32), read at the last token."""
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for n in lengths:
        tok = lambda k: torch.randint(0, 32, (k,), generator=g)  # noqa: E731
        prompts.append(Prompt(tok(n), tok(n), tok(1), tok(1), torch.tensor([n - 1])))
    return prompts


def alone(prompt: Prompt) -> Task:
    """One prompt pair as a task of batch 1."""
    return Task("one", prompt.clean[None], prompt.corrupt[None], prompt.answers[None], prompt.wrong_answers[None], prompt.positions)


def test_prompts_group_by_length_in_order_of_first_appearance():
    task = from_prompts("ragged", ragged_prompts())
    assert isinstance(task, TaskGroups) and task.n_prompts == 5
    assert [tuple(g.clean.shape) for g in task.groups] == [(2, 5), (2, 7), (1, 6)]
    assert isinstance(from_prompts("same", ragged_prompts((4, 4))), Task)


def test_edge_scores_equal_the_mean_over_prompts_run_alone_with_hooks(random_model, reference_model):
    prompts = ragged_prompts()
    table = patch_edges(random_model, from_prompts("ragged", prompts), EDGES).set_index("edge")
    for edge in EDGES:
        src, dest = edge.split("->")
        expected = sum(hand_patched_metric(reference_model, alone(p), f"{src}->{dest}") for p in prompts) / len(prompts)
        assert table.loc[edge, "metric"] == pytest.approx(expected, abs=1e-5), edge
    with torch.no_grad():
        clean = sum(alone(p).score(reference_model(p.clean[None])).item() for p in prompts) / len(prompts)
    assert table.attrs["clean_metric"] == pytest.approx(clean, abs=1e-5)
    assert table.loc[EDGES[0], "score"] == pytest.approx(clean - table.loc[EDGES[0], "metric"], abs=1e-6)


def split(task: Task, at: int) -> TaskGroups:
    """The same prompts as two groups: every number must come out as for the one batch."""
    halves = [Task(task.name, task.clean[a:b], task.corrupt[a:b], task.answers[a:b], task.wrong_answers[a:b], task.positions)
              for a, b in ((0, at), (at, task.clean.shape[0]))]
    return TaskGroups(task.name, tuple(halves))


def test_grouped_edges_paths_and_circuits_equal_one_batch(random_model, random_task):
    groups = split(random_task, 1)
    one, two = patch_edges(random_model, random_task), patch_edges(random_model, groups)
    torch.testing.assert_close(torch.tensor(two["score"].values), torch.tensor(one["score"].values), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(two["normalized"].values), torch.tensor(one["normalized"].values), atol=1e-5, rtol=0)
    paths = [path_patch(random_model, t, ["L1H0.v"]) for t in (random_task, groups)]
    torch.testing.assert_close(torch.tensor(paths[1]["score"].values), torch.tensor(paths[0]["score"].values), atol=1e-6, rtol=0)
    graph = ComputeGraph.from_model(random_model)
    masks = torch.stack([graph.valid, graph.mask(["embed->L0H0.v", "L0H0->logits"])])
    torch.testing.assert_close(run_circuits_per_prompt(random_model, groups, masks),
                               run_circuits_per_prompt(random_model, random_task, masks), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_grouped_attribution_equals_one_batch(random_model, random_task, method):
    one = attribute_edges(random_model, random_task, method, steps=3)
    two = attribute_edges(random_model, split(random_task, 3), method, steps=3)
    torch.testing.assert_close(torch.tensor(two["score"].values), torch.tensor(one["score"].values), atol=1e-6, rtol=0)


def test_grouped_acdc_keeps_the_same_edges(random_model, random_task):
    one, two = acdc(random_model, random_task, tau=0.05), acdc(random_model, split(random_task, 2), tau=0.05)
    assert list(two["edge"]) == list(one["edge"])


@pytest.mark.parametrize("corruption", ["mean", "resample"])
def test_corruptions_that_mix_prompts_are_refused_across_lengths(random_model, corruption):
    with pytest.raises(ValueError, match=rf"corruption '{corruption}' mixes prompts.*2 different lengths"):
        patch_edges(random_model, from_prompts("ragged", ragged_prompts((4, 6))), ["embed->logits"], config=PatchConfig(direction="noise", corruption=corruption))
