"""EAP and EAP-IG against exact edge patching."""

import pytest
import torch

from pathpatch.discovery.attribution import attribute_edges, spearman, verify
from pathpatch.discovery.edges import patch_edges
from pathpatch.models import build_task, load_model
from pathpatch.models.loading import enable_patching_hooks
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
