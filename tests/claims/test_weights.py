"""Weight-based scores read the weights the model applies: equivalent models give the same score."""

import copy
import warnings

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.claims.weights import canonical, composition_score, copying_score, ov_circuit, virtual_ov_accuracy
from pathpatch.patch.graph import ComputeGraph


def model_with_uneven_norms(normalization_type: str) -> HookedTransformer:
    """A random 2-layer model whose norm scales are far from 1, so folding them moves raw scores."""
    cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=16, d_head=8, d_mlp=32, n_ctx=8, d_vocab=20,
                                  act_fn="gelu", normalization_type=normalization_type, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(cfg).eval()
    g = torch.Generator().manual_seed(3)
    for name, p in model.named_parameters():
        if name.endswith(".w"):
            p.data = torch.rand(p.shape, generator=g) * 3 + 0.1
    return model


def folded(model: HookedTransformer) -> HookedTransformer:
    """TransformerLens' fold_ln copy: the same function, other raw weights."""
    out = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    return out


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_a_model_and_its_folded_copy_get_the_same_weight_scores(norm):
    model = model_with_uneven_norms(norm)
    other = folded(model)
    tokens = torch.randint(0, 20, (2, 6), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(tokens), other(tokens), atol=1e-4, rtol=1e-4)  # same function
    graph = ComputeGraph.from_model(model)
    head, later = graph.node("L0H1"), graph.node("L1H0")
    raw = {space: [copying_score(m, head, space) for m in (model, other)] for space in ("vocab", "residual")}
    assert max(abs(a - b) for a, b in raw.values()) > 1e-2  # raw weights disagree ...
    ours = [canonical(m) for m in (model, other)]
    for space in ("vocab", "residual"):
        assert copying_score(ours[0], head, space) == pytest.approx(copying_score(ours[1], head, space), abs=1e-4)  # ... the applied ones agree
    for kind in ("q", "k", "v"):
        assert composition_score(ours[0], head, later, kind) == pytest.approx(composition_score(ours[1], head, later, kind), abs=1e-4)
    assert virtual_ov_accuracy(ours[0], [head, later]) == virtual_ov_accuracy(ours[1], [head, later])


def test_canonical_leaves_the_model_it_was_given_unchanged():
    model = model_with_uneven_norms("LN")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    canonical(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_copying_on_a_token_subset_scores_the_sub_circuit_among_those_tokens():
    model = canonical(model_with_uneven_norms("LN"))
    head = ComputeGraph.from_model(model).node("L1H1")
    subset = [2, 5, 7, 11]
    with torch.no_grad():
        block = ov_circuit(model, [head])[subset][:, subset].double()
    eig = torch.linalg.eigvals(block)
    assert copying_score(model, head, tokens=subset) == pytest.approx(float(eig.real.sum() / eig.abs().sum()), abs=1e-9)
    assert copying_score(model, head, tokens=subset) != pytest.approx(copying_score(model, head), abs=1e-3)
    with pytest.raises(ValueError, match=r"tokens 99 lie outside the vocabulary 0..19"):
        copying_score(model, head, tokens=[1, 99])
