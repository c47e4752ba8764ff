"""EAP and EAP-IG against exact edge patching."""

import pytest
import torch

from pathpatch.models import build_task, load_model
from pathpatch.models.hook_flags import enable_patching_hooks
from pathpatch.patch.attribution import attribute_edges, spearman, verify
from pathpatch.patch.edges import patch_edges
from tests.conftest import make_random_model


@pytest.fixture(scope="module")
def linear_model():
    """Attention-only, no LayerNorm, zero queries and keys: uniform causal attention, so logits are
    linear in every residual-stream contribution and first-order attribution is exact."""
    model = enable_patching_hooks(make_random_model(attn_only=True, normalization_type=None, n_layers=3))
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()
            block.attn.W_K.zero_()
    return model


def test_eap_equals_exact_patching_on_a_linear_model(linear_model, random_task):
    approx = attribute_edges(linear_model, random_task, "eap")
    exact = patch_edges(linear_model, random_task)
    assert list(approx["edge"]) == list(exact["edge"])
    torch.testing.assert_close(torch.tensor(approx["score"].values), torch.tensor(exact["score"].values), atol=1e-5, rtol=0)
    assert exact["score"].abs().max() > 0.1, "the test must see real effects"


def test_eap_ig_with_one_step_is_eap(random_model, random_task):
    a = attribute_edges(random_model, random_task, "eap")["score"]
    b = attribute_edges(random_model, random_task, "eap-ig", steps=1)["score"]
    assert (a - b).abs().max() < 1e-6


def test_eap_ig_ranks_trigram_edges_like_exact_patching():
    model, task = load_model("trigrams"), build_task("trigrams", n=32, seed=0)
    result = verify(model, task, attribute_edges(model, task, "eap-ig", steps=10), top_k=6)
    assert result.attrs["spearman"] > 0.8
    assert {"embed->L0H0.v", "L0H0->MLP0", "MLP0->logits"} <= set(result["edge"].head(4))


def test_verify_rescores_with_exact_patching(random_model, random_task):
    approx = attribute_edges(random_model, random_task, "eap")
    table = verify(random_model, random_task, approx, top_k=5)
    exact = patch_edges(random_model, random_task, list(table["edge"])).set_index("edge")["score"]
    assert table.set_index("edge")["exact"].to_dict() == pytest.approx(exact.to_dict())
    assert -1 <= table.attrs["spearman"] <= 1


def test_spearman_is_rank_correlation():
    import pandas as pd

    assert spearman(pd.Series([1, 2, 3, 4.0]), pd.Series([10, 20, 30, 1000.0])) == pytest.approx(1.0)
    assert spearman(pd.Series([1, 2, 3.0]), pd.Series([3, 2, 1.0])) == pytest.approx(-1.0)


def test_bad_attribution_arguments(random_model, random_task):
    with pytest.raises(ValueError, match="Unknown attribution method 'ig'"):
        attribute_edges(random_model, random_task, "ig")
    with pytest.raises(ValueError, match="steps=0"):
        attribute_edges(random_model, random_task, "eap-ig", steps=0)


@pytest.mark.parametrize("corruption", ["paired", "resample", "mean", "zero"])
def test_attribution_in_chunks_of_one_prompt_and_one_step_equals_one_pass(random_model, random_task, corruption):
    from pathpatch.patch.config import PatchConfig

    whole = PatchConfig(direction="noise", corruption=corruption, seed=3)
    tiny = PatchConfig(direction="noise", corruption=corruption, seed=3, max_memory=1)  # forces 1 prompt x 1 step a pass
    a = attribute_edges(random_model, random_task, "eap-ig", steps=3, config=whole)
    b = attribute_edges(random_model, random_task, "eap-ig", steps=3, config=tiny)
    assert a["score"].abs().max() > 1e-3, "the test must see real scores"
    torch.testing.assert_close(torch.tensor(b["score"].values), torch.tensor(a["score"].values), atol=1e-6, rtol=1e-5)


def hand_eap_ig(model, reference, task, steps: int) -> dict[str, float]:
    """EAP-IG with TransformerLens hooks, one edge at a time: sources from ``hook_result`` of a model with
    ``use_attn_result``, gradients saved at each destination hook of a plain ``run_with_hooks`` backward pass."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{l}.attn.hook_result" for l in range(n_layers)] + [f"blocks.{l}.hook_mlp_out" for l in range(n_layers)]
    _, clean = reference.run_with_cache(task.clean, names_filter=lambda n: n in names)
    _, corrupt = reference.run_with_cache(task.corrupt, names_filter=lambda n: n in names)
    delta = {n: clean[n] - corrupt[n] for n in names}
    grads: dict[str, torch.Tensor] = {}
    for k in range(1, steps + 1):
        start = corrupt["blocks.0.hook_resid_pre"] + k / steps * delta["blocks.0.hook_resid_pre"]
        start = start.detach().requires_grad_(True)
        saves = [(f"blocks.{l}.hook_{c}_input", None) for l in range(n_layers) for c in "qkv"] + [(f"blocks.{l}.hook_mlp_in", None) for l in range(n_layers)]
        saves.append((f"blocks.{n_layers - 1}.hook_resid_post", None))

        def save(grad, hook):
            grads[hook.name] = grads.get(hook.name, 0) + grad.detach() / steps

        logits = model.run_with_hooks(task.clean, fwd_hooks=[("blocks.0.hook_resid_pre", lambda act, hook: start)],
                                      bwd_hooks=[(name, save) for name, _ in saves])
        read = logits[:, task.positions]
        metric = (read.gather(-1, task.answers[..., None]) - read.gather(-1, task.wrong_answers[..., None]))[..., 0].mean(-1)
        torch.autograd.grad(metric.mean(), start)
    sources = {"embed": delta["blocks.0.hook_resid_pre"]}
    for l in range(n_layers):
        sources.update({f"L{l}H{h}": delta[f"blocks.{l}.attn.hook_result"][:, :, h] for h in range(n_heads)})
        sources[f"MLP{l}"] = delta[f"blocks.{l}.hook_mlp_out"]
    dests = {"logits": grads[f"blocks.{n_layers - 1}.hook_resid_post"]}
    for l in range(n_layers):
        dests.update({f"L{l}H{h}.{c}": grads[f"blocks.{l}.hook_{c}_input"][:, :, h] for h in range(n_heads) for c in "qkv"})
        dests[f"MLP{l}"] = grads[f"blocks.{l}.hook_mlp_in"]
    return {f"{s}->{d}": float((sources[s] * dests[d]).sum()) for s in sources for d in dests}


def test_eap_ig_equals_hand_written_hooks(random_model, reference_model, random_task):
    from pathpatch.patch.config import PatchConfig

    ours = attribute_edges(random_model, random_task, "eap-ig", steps=4, config=PatchConfig(direction="noise", max_memory=1))
    theirs = hand_eap_ig(random_model, reference_model, random_task, steps=4)
    ours = ours.set_index("edge")["score"]
    assert ours.abs().max() > 1e-3
    for edge, score in ours.items():
        assert score == pytest.approx(theirs[edge], abs=1e-6), edge
