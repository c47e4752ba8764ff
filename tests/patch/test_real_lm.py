"""The exact engine on a real Llama-family model, against references written with TransformerLens alone.

SmolLM2-135M-Instruct has what the toy models only imitate: 30 layers, RMSNorm, rotary positions, SwiGLU
MLPs and 9 query heads sharing 3 key/value heads (grouped-query attention, GQA). pathpatch ungroups the
keys and values, so an edge into ``L29H2.k`` reaches query head 2's keys only, not those of heads 0 and 1,
which share its key/value head. The references below never call pathpatch's engine or name parser: each
edge is written out as TransformerLens hook names, source outputs come from ``run_with_cache`` (embed:
``blocks.0.hook_resid_pre``; head ``h`` of layer ``l``: ``hook_z[:, :, h] @ W_O[l, h]``; MLP ``l``:
``blocks.l.hook_mlp_out``), and a noised edge is one ``run_with_hooks`` on the clean prompts whose
destination input carries the source's corrupt output in place of its clean one. The metric is the mean
logit difference at the last position, computed by hand; a noising score is clean - patched metric.
"""

from contextlib import contextmanager

import pytest
import torch
from transformer_lens.utilities import get_act_name

from pathpatch.models import Task
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.circuits import run_circuits
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges, path_patch
from pathpatch.patch.graph import ComputeGraph
from tests.conftest import hand_patched_metric, source_output

NOISE = PatchConfig(direction="noise")
# (clean country, answer, corrupt country, wrong answer): six tokens with BOS, single-token capitals
CAPITALS = [("France", " Paris", "Italy", " Rome"), ("Germany", " Berlin", "Spain", " Madrid"), ("Japan", " Tokyo", "Egypt", " Cairo")]
# Edge name -> (source hook, layer, head), (destination input hook, layer, head): written out by hand so the
# reference does not go through pathpatch's names. Heads 0-2, 3-5, 6-8 share a key/value head.
EDGES = {
    "embed->L0H5.v": (("resid_pre", 0, None), ("v_input", 0, 5)),  # embed into an early head input
    "L14H7->L22H0.k": (("z", 14, 7), ("k_input", 22, 0)),  # keys across layers, 7 layers below the logits
    "L23H4->L29H2.k": (("z", 23, 4), ("k_input", 29, 2)),  # keys of one of three heads on key/value head 0
    "L23H4->L29H0.v": (("z", 23, 4), ("v_input", 29, 0)),  # values, same group
    "MLP0->L23H4.v": (("mlp_out", 0, None), ("v_input", 23, 4)),
    "L23H4->MLP24": (("z", 23, 4), ("mlp_in", 24, None)),
    "MLP26->logits": (("mlp_out", 26, None), ("resid_post", 29, None)),
    "L29H1->logits": (("z", 29, 1), ("resid_post", 29, None)),
}
EAP_EDGES = ["embed->L0H5.v", "L23H4->L29H2.k", "L23H4->MLP24", "MLP26->logits"]


@contextmanager
def per_head_inputs(model):
    """Switch on TransformerLens' per-head q/k/v inputs, MLP inputs and ungrouped keys/values; restore after."""
    setters = {"use_split_qkv_input": model.set_use_split_qkv_input, "use_hook_mlp_in": model.set_use_hook_mlp_in,
               "ungroup_grouped_query_attention": model.set_ungroup_grouped_query_attention}
    before = {flag: bool(getattr(model.cfg, flag)) for flag in setters}
    try:
        for setter in setters.values():
            setter(True)
        yield
    finally:
        for flag, setter in setters.items():
            setter(before[flag])


def logit_diff(task: Task, logits: torch.Tensor) -> torch.Tensor:
    """Mean over prompts of logit(answer) - logit(wrong answer) at the last position."""
    last = logits[:, -1]  # [batch d_vocab]
    rows = torch.arange(last.shape[0])
    return (last[rows, task.answers[:, 0]] - last[rows, task.wrong_answers[:, 0]]).mean()


@pytest.fixture(scope="module")
def task(smollm2_model) -> Task:
    model = smollm2_model
    clean = model.to_tokens([f"The capital of {country} is" for country, _, _, _ in CAPITALS])
    corrupt = model.to_tokens([f"The capital of {country} is" for _, _, country, _ in CAPITALS])
    assert clean.shape == corrupt.shape == (3, 6)
    answers = torch.tensor([model.to_single_token(capital) for _, capital, _, _ in CAPITALS])
    wrong = torch.tensor([model.to_single_token(capital) for _, _, _, capital in CAPITALS])
    return Task("capitals", clean, corrupt, answers[:, None], wrong[:, None], positions=torch.tensor([-1]))


@pytest.fixture(scope="module")
def caches(smollm2_model, task) -> dict:
    """Clean and corrupt TransformerLens caches and metrics, in the per-head hook mode patching uses."""
    with per_head_inputs(smollm2_model), torch.no_grad():
        clean_logits, clean = smollm2_model.run_with_cache(task.clean)
        corrupt_logits, corrupt = smollm2_model.run_with_cache(task.corrupt)
    return {"clean": clean, "corrupt": corrupt,
            "clean_metric": logit_diff(task, clean_logits).item(), "corrupt_metric": logit_diff(task, corrupt_logits).item()}


@pytest.fixture(scope="module")
def reference_scores(smollm2_model, task, caches) -> dict[str, float]:
    with per_head_inputs(smollm2_model):
        return {edge: caches["clean_metric"] - hand_patched_metric(smollm2_model, task, edge, caches=caches, metric=lambda logits: logit_diff(task, logits))
                for edge in EDGES}


@pytest.fixture(scope="module")
def edge_scores(smollm2_model, task):
    return patch_edges(smollm2_model, task, edges=list(EDGES), config=NOISE).set_index("edge")["score"]


def test_edge_patching_equals_hand_written_hooks(edge_scores, reference_scores, smollm2_model):
    for edge, expected in reference_scores.items():
        assert edge_scores[edge] == pytest.approx(expected, abs=1e-4), edge
    assert sum(abs(score) > 1e-2 for score in reference_scores.values()) >= 6  # real effects, not zeros agreeing
    cfg = smollm2_model.cfg  # the fixture model is shared: the engine and the reference left its hook mode as they found it
    assert cfg.use_split_qkv_input and cfg.use_hook_mlp_in and not cfg.ungroup_grouped_query_attention


def test_full_empty_and_leave_one_out_circuits_give_clean_corrupt_and_noised_metrics(smollm2_model, task, caches, reference_scores):
    """Cutting one edge from the full circuit is noising that edge alone: its source's output is still clean."""
    graph = ComputeGraph.from_model(smollm2_model)
    full = graph.valid
    left_out = ["L23H4->L29H0.v", "MLP26->logits"]
    masks = torch.stack([full, torch.zeros_like(full)] + [full & ~graph.mask([edge]) for edge in left_out])
    metrics = run_circuits(smollm2_model, task, masks)
    assert metrics[0].item() == pytest.approx(caches["clean_metric"], abs=1e-4)
    assert metrics[1].item() == pytest.approx(caches["corrupt_metric"], abs=1e-4)
    for metric, edge in zip(metrics[2:], left_out):
        assert metric.item() == pytest.approx(caches["clean_metric"] - reference_scores[edge], abs=1e-4), edge


@pytest.mark.parametrize("sender, receiver", [("L23H4", "L29H2.k"), ("L14H7", "L22H0.k")])
def test_path_to_one_receiver_is_that_single_edge(smollm2_model, task, edge_scores, sender, receiver):
    paths = path_patch(smollm2_model, task, receivers=[receiver], senders=[sender], config=NOISE)
    assert paths["score"].iloc[0] == pytest.approx(edge_scores[f"{sender}->{receiver}"], abs=1e-5)


def hand_eap(model, task: Task, caches: dict) -> dict[str, float]:
    """First-order estimates: sum over prompts and positions of (clean - corrupt source) . d(metric)/d(dest input)."""
    grads: dict[str, torch.Tensor] = {}
    hooks = [(get_act_name(act, layer), lambda grad, hook: grads.__setitem__(hook.name, grad.detach()))
             for _, (act, layer, _) in (EDGES[edge] for edge in EAP_EDGES)]
    embed = caches["clean"][get_act_name("resid_pre", 0)].clone().requires_grad_(True)  # [batch pos d_model]
    with per_head_inputs(model), model.hooks(fwd_hooks=[(get_act_name("resid_pre", 0), lambda act, hook: embed)], bwd_hooks=hooks):
        torch.autograd.grad(logit_diff(task, model(task.clean)), embed)
    scores = {}
    for edge in EAP_EDGES:
        src = edge.split("->")[0]
        _, (act, layer, head) = EDGES[edge]
        delta = source_output(model, caches["clean"], src) - source_output(model, caches["corrupt"], src)  # [batch pos d_model]
        grad = grads[get_act_name(act, layer)]
        scores[edge] = (delta * (grad if head is None else grad[:, :, head])).sum().item()
    return scores


def test_eap_equals_hand_written_first_order_estimate(smollm2_model, task, caches):
    """pathpatch sums the estimate over prompts with the summed metric's gradient, then divides by the prompts: the
    same as the prompt-mean metric's gradient summed over prompts, which the reference takes."""
    table = attribute_edges(smollm2_model, task, "eap").set_index("edge")["score"]
    for edge, expected in hand_eap(smollm2_model, task, caches).items():
        assert table[edge] == pytest.approx(expected, rel=1e-3, abs=1e-5), edge
