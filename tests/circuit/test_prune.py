"""Pruning: thresholds, top-k nesting, and every kept edge on an embed -> logits path (connectors: test_connectors.py)."""

import pandas as pd
import pytest

from pathpatch.circuit.prune import PruneConfig, edge_graph, on_paths, prune, prune_top_k
from pathpatch.patch.edges import patch_edges


@pytest.fixture(scope="module")
def scores(random_model, random_task):
    return patch_edges(random_model, random_task)


def test_top_k_sets_are_nested(scores):
    for k in range(1, 12):
        small, large = set(prune_top_k(scores, k)["edge"]), set(prune_top_k(scores, k + 1)["edge"])
        assert small <= large and len(large) == k + 1


def test_kept_edges_lie_on_embed_to_logits_paths(scores):
    import networkx as nx

    kept = prune(scores, PruneConfig(method="top_k", top_k=15))
    graph = edge_graph(kept)
    assert nx.is_directed_acyclic_graph(graph)
    for src, dest in zip(kept["src"], kept["dest"]):
        assert src == "embed" or nx.has_path(graph, "embed", src)
        assert nx.has_path(graph, dest, "logits") or dest == "logits"


def test_dangling_edges_are_dropped():
    rows = pd.DataFrame({"edge": ["embed->L0H0.v", "L0H0->logits", "embed->L0H1.q"], "src": ["embed", "L0H0", "embed"],
                         "dest": ["L0H0.v", "logits", "L0H1.q"], "score": [1.0, 1.0, 1.0]})
    assert list(on_paths(rows)["edge"]) == ["embed->L0H0.v", "L0H0->logits"]


def test_threshold_keeps_every_large_effect_and_marks_the_rest_connectors(scores):
    kept = prune(scores, PruneConfig(threshold=0.1))
    own = kept[~kept["connector"]]
    assert set(own["edge"]) == set(scores.loc[scores["normalized"].abs() >= 0.1, "edge"])
    assert (kept.loc[kept["connector"], "normalized"].abs() < 0.1).all()


def test_bad_prune_settings_are_refused(scores):
    with pytest.raises(ValueError, match="threshold=-1"):
        PruneConfig(threshold=-1.0)
    with pytest.raises(ValueError, match="top_k=0"):
        PruneConfig(method="top_k", top_k=0)
    with pytest.raises(ValueError, match="lacks columns"):
        prune(scores.drop(columns=["src"]))


def test_acdc_with_zero_tau_keeps_the_clean_metric(random_model, random_task):
    from pathpatch.circuit.prune import acdc
    from pathpatch.patch.circuits import run_circuits
    from pathpatch.patch.graph import ComputeGraph

    kept = acdc(random_model, random_task, tau=0.0)
    graph = ComputeGraph.from_model(random_model)
    clean = random_task.score(random_model(random_task.clean)).item()
    assert run_circuits(random_model, random_task, graph.mask(list(kept["edge"]))).item() == pytest.approx(clean, abs=1e-4)


def test_acdc_finds_the_permute_v_composition_path():
    from pathpatch.circuit.prune import acdc
    from pathpatch.models import build_task, load_model

    kept = set(acdc(load_model("permute"), build_task("permute", n=32, seed=2), tau=0.05)["edge"])
    assert {"embed->L0H0.v", "L0H0->L1H0.v", "L1H0->logits"} <= kept
    assert "L0H0->L1H0.q" not in kept


def test_acdc_larger_tau_keeps_fewer_edges(random_model, random_task):
    from pathpatch.circuit.prune import acdc

    assert len(acdc(random_model, random_task, tau=0.2)) <= len(acdc(random_model, random_task, tau=0.0))
