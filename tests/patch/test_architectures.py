"""Architecture families: every supported one equals hand-written run_with_hooks code; the rest are refused.

Each family is a tiny random ``HookedTransformer`` built from a config shaped like its real counterpart.
The reference is independent of the engine: one ``run_with_hooks`` per edge on a deep copy of the
model, with TransformerLens' own hooks, adding (other run's source output - this run's) to the
destination's input, and TransformerLens' own forward pass (soft cap included) for the logits.
"""

import copy
import warnings

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig, patching

from pathpatch.patch.activation import activation_patch
from pathpatch.patch.circuits import run_circuits_with_baselines
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph, check_supported
from pathpatch.task.task import Task
from tests.conftest import hand_patched_metric

BASE = dict(n_layers=2, n_heads=4, d_model=16, d_head=4, d_mlp=32, n_ctx=12, d_vocab=24, act_fn="gelu",
            normalization_type="LN", seed=0, device="cpu")
FAMILIES = {
    "gpt2": {},
    "soft-capped logits (Gemma 2)": dict(output_logits_soft_cap=1.5, attn_scores_soft_cap=2.0),
    "llama (rotary, RMSNorm, gated MLP)": dict(normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=4,
                                               gated_mlp=True, act_fn="silu", final_rms=True),
    "grouped-query attention (Llama/Qwen)": dict(normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=4,
                                                 gated_mlp=True, act_fn="silu", n_key_value_heads=2),
    "attention-only, no LayerNorm": dict(attn_only=True, normalization_type=None),
    "bidirectional encoder": dict(attention_dir="bidirectional"),
    "shortformer, attention-only (TransformerLens' attn-only family)": dict(positional_embedding_type="shortformer", attn_only=True),
    "shortformer with LayerNorm and MLPs": dict(positional_embedding_type="shortformer"),
    "parallel attention + MLP (Pythia/NeoX, GPT-J)": dict(parallel_attn_mlp=True, positional_embedding_type="rotary", rotary_dim=4),
    "ALiBi positions (BLOOM)": dict(positional_embedding_type="alibi"),
    "q/k norm (OLMo, Qwen3)": dict(use_qk_norm=True, normalization_type="RMS"),
    "local attention (GPT-Neo)": dict(attn_types=["global", "local"], window_size=3),
    "mixture of experts (Mixtral)": dict(num_experts=4, experts_per_token=2, gated_mlp=True, act_fn="silu", normalization_type="RMS"),
}
REFUSED = {
    "post-attention and post-MLP norms (Gemma 2)": (dict(use_normalization_before_and_after=True, normalization_type="RMS"), "post-LayerNorm"),
    "post-LN (OLMo-2)": (dict(original_architecture="Olmo2ForCausalLM", normalization_type="RMS"), "Olmo2ForCausalLM.*post-LayerNorm"),
}


def build(overrides: dict) -> HookedTransformer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**{**BASE, **overrides}))
    for p in model.parameters():  # random biases too, so no edge is trivially zero
        if p.abs().sum() == 0:
            p.data.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
    return model.eval()


def task_for(model: HookedTransformer) -> Task:
    g = torch.Generator().manual_seed(2)
    tokens = lambda *shape: torch.randint(0, model.cfg.d_vocab, shape, generator=g)  # noqa: E731
    return Task("random", tokens(3, 7), tokens(3, 7), tokens(3, 2), tokens(3, 2), torch.tensor([4, 6]))


def reference(model: HookedTransformer) -> HookedTransformer:
    """A copy with TransformerLens' own per-head input hooks (and ungrouped keys/values) switched on by hand."""
    ref = copy.deepcopy(model)
    ref.cfg.use_split_qkv_input = True
    if not ref.cfg.attn_only:
        ref.cfg.use_hook_mlp_in = True
    if ref.cfg.n_key_value_heads is not None:
        ref.cfg.ungroup_grouped_query_attention = True
    return ref


def sample_edges(model) -> list[str]:
    edges = ["embed->L0H1.v", "embed->L1H2.k", "L0H0->L1H3.q", "L0H2->L1H1.k", "L0H3->logits", "L1H1->logits", "embed->logits"]
    if not model.cfg.attn_only:
        edges += ["MLP0->L1H0.v", "MLP0->logits", "MLP1->logits", "embed->MLP1", "embed->MLP0", "L0H2->MLP1"]
        if not model.cfg.parallel_attn_mlp:  # a parallel MLP reads its layer's input, beside the heads
            edges += ["L0H1->MLP0", "L1H2->MLP1"]
    return edges


def test_a_parallel_block_has_no_edge_from_a_head_into_its_own_layers_mlp():
    serial, parallel = (ComputeGraph.from_model(build(dict(parallel_attn_mlp=flag))) for flag in (False, True))
    assert "L0H1->MLP0" in {e.name for e in serial.edges}
    assert "L0H1->MLP0" not in {e.name for e in parallel.edges} and "L0H1->MLP1" in {e.name for e in parallel.edges}
    assert serial.n_edges - parallel.n_edges == 2 * 4  # two layers of four heads
    with pytest.raises(ValueError, match="reads layer 0's input alongside its heads"):
        parallel.edge("L0H1->MLP0")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_edge_effects_equal_hand_written_hooks(family):
    model = build(FAMILIES[family])
    task, ref = task_for(model), reference(model)
    edges = sample_edges(model)
    table = patch_edges(model, task, edges).set_index("edge")
    for edge in edges:
        assert table.loc[edge, "metric"] == pytest.approx(hand_patched_metric(ref, task, edge), abs=1e-5), (family, edge)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_position_wise_edges_equal_hand_written_hooks(family):
    """Per-position variants take every shortcut: suffix runs, frozen keys/values, a read-only last layer."""
    model = build(FAMILIES[family])
    task, ref = task_for(model), reference(model)
    edges = ["embed->L1H2.k", "L0H0->L1H3.q", "L0H2->logits"] + ([] if model.cfg.attn_only else ["MLP0->L1H0.v"])
    table = patch_edges(model, task, edges, by_pos=True).set_index("edge")
    for edge in edges:
        for pos in (1, 5, 6):
            expected = hand_patched_metric(ref, task, edge, pos=pos)
            assert table.loc[f"{edge}@{pos}", "metric"] == pytest.approx(expected, abs=1e-5), (family, edge, pos)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_full_and_empty_circuits_give_the_models_own_clean_and_corrupt_metrics(family):
    model = build(FAMILIES[family])
    task = task_for(model)
    graph = ComputeGraph.from_model(model)
    keep = graph.mask(sample_edges(model))
    _, full, empty = run_circuits_with_baselines(model, task, keep)
    with torch.no_grad():
        clean, corrupt = task.score(model(task.clean)).item(), task.score(model(task.corrupt)).item()
    assert full.mean().item() == pytest.approx(clean, abs=1e-5)
    assert empty.mean().item() == pytest.approx(corrupt, abs=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_head_by_position_patching_equals_transformer_lens(family):
    model = build(FAMILIES[family])
    task = task_for(model)
    ours = activation_patch(model, task, "z", per_pos=True, config=PatchConfig(direction="denoise", normalize=False)).values
    theirs = patching.get_act_patch_attn_head_out_by_pos(
        model, task.corrupt, model.run_with_cache(task.clean)[1], lambda logits: task.score(logits))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_engine_leaves_a_grouped_model_grouped():
    model = build(FAMILIES["grouped-query attention (Llama/Qwen)"])
    patch_edges(model, task_for(model), ["embed->L1H2.k"])
    assert not model.cfg.ungroup_grouped_query_attention and not model.cfg.use_split_qkv_input


@pytest.mark.parametrize("family", list(REFUSED))
def test_unsupported_families_are_refused_naming_the_feature(family):
    overrides, message = REFUSED[family]
    with pytest.raises(ValueError, match=message):
        check_supported(build(overrides))


def test_the_readme_table_lists_every_family_tested_here():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("<!-- architectures -->")[1].split("\n\n")[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2] for line in table.splitlines()[3:]}
    for family in FAMILIES:
        assert family in rows and "exact" in rows[family], family
    for family in REFUSED:
        assert family in rows and "refused" in rows[family], family
