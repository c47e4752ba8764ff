"""Hugging Face families loaded offline, as HookedTransformer and as TransformerBridge: same numbers, or refused.

Each folder is a tiny random model saved by ``transformers`` itself (GPT-NeoX: parallel attention + MLP with
rotary positions; Qwen2: grouped-query attention; Gemma 2: post-norms and soft caps).
"""

import warnings

import pytest
import torch

from pathpatch.models import load_model
from pathpatch.patch.edges import patch_edges
from pathpatch.task.task import Task

SMALL = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32, max_position_embeddings=32)
EDGES = ["embed->L1H2.k", "L0H1->L1H3.v", "MLP0->logits", "L1H2->logits", "embed->MLP1"]


def save(folder, family: str):
    import transformers

    config, model = {
        "neox": (transformers.GPTNeoXConfig(**SMALL, rotary_pct=0.5), transformers.GPTNeoXForCausalLM),
        "qwen2": (transformers.Qwen2Config(**SMALL, num_key_value_heads=2), transformers.Qwen2ForCausalLM),
        "gemma2": (transformers.Gemma2Config(**SMALL, num_key_value_heads=2, head_dim=4), transformers.Gemma2ForCausalLM),
    }[family]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def task():
    g = torch.Generator().manual_seed(0)
    tokens = lambda *shape: torch.randint(0, 64, shape, generator=g)  # noqa: E731
    return Task("random", tokens(3, 7), tokens(3, 7), tokens(3, 1), tokens(3, 1), torch.tensor([6]))


def test_a_parallel_neox_model_scores_the_same_as_hooked_transformer_and_as_bridge(tmp_path, task):
    folder = save(tmp_path / "neox", "neox")
    hooked, bridge = load_model(folder), load_model(folder, backend="bridge")
    assert hooked.cfg.parallel_attn_mlp
    edges = EDGES + ["L0H1->MLP1"]
    ours, theirs = patch_edges(hooked, task, edges), patch_edges(bridge, task, edges)
    torch.testing.assert_close(torch.tensor(ours["score"].values), torch.tensor(theirs["score"].values), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="alongside its heads"):
        patch_edges(hooked, task, ["L0H1->MLP0"])


def test_grouped_query_attention_runs_as_hooked_transformer_and_the_bridge_is_refused(tmp_path, task):
    folder = save(tmp_path / "qwen2", "qwen2")
    hooked = load_model(folder)
    assert hooked.cfg.n_key_value_heads == 2
    scores = patch_edges(hooked, task, EDGES)
    assert scores["score"].abs().sum() > 0
    with pytest.raises(ValueError, match="grouped-query attention.*Load it as a HookedTransformer"):
        patch_edges(load_model(folder, backend="bridge"), task, EDGES)


def test_gemma2_post_norms_are_refused_even_where_the_bridge_config_does_not_say_so(tmp_path, task):
    bridge = load_model(save(tmp_path / "gemma2", "gemma2"), backend="bridge")
    assert not bridge.cfg.use_normalization_before_and_after  # the bridge's config does not record them
    with pytest.raises(ValueError, match="Gemma2ForCausalLM.*normalises after attention and MLP"):
        patch_edges(bridge, task, ["MLP0->logits"])
