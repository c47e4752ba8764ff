"""Node and edge names: round trips, hooks, ordering and errors."""

import pytest

from pathpatch.names import Edge, all_node_names, is_edge, parse_edge, parse_node
from pathpatch.patch.graph import ComputeGraph


@pytest.mark.parametrize("attn_only", [False, True])
def test_every_name_round_trips(attn_only):
    for name in all_node_names(3, 2, attn_only):
        node = parse_node(name, 3, 2, attn_only)
        assert node.name == node.base == name
        assert parse_node(f"{name}@4", 3, 2, attn_only).pos == "4"
        assert parse_node(f"{name}@END", 3, 2, attn_only).pos == "END"


def test_nodes_map_to_transformer_lens_hooks():
    assert parse_node("embed", 2, 2).hook_out == "blocks.0.hook_resid_pre"
    assert parse_node("L0H1", 2, 2).hook_out == "blocks.0.attn.hook_result"
    assert parse_node("L1H0.k", 2, 2).hook_in == "blocks.1.hook_k_input"
    mlp = parse_node("MLP1", 2, 2)
    assert (mlp.hook_in, mlp.hook_out) == ("blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out")
    assert parse_node("logits", 2, 2).hook_in == "blocks.1.hook_resid_post"


def test_edges_run_forward_only():
    assert parse_edge("L0H0->L1H0.v", 2, 2).name == "L0H0->L1H0.v"
    assert parse_edge("L0H0->MLP0", 2, 2).name == "L0H0->MLP0"
    for bad in ["L1H0->L1H1.q", "MLP1->MLP0", "MLP0->L0H0.q", "logits->L0H0.q", "L0H0.v->L1H0.q"]:
        with pytest.raises(ValueError, match="No edge"):
            parse_edge(bad, 2, 2)
    with pytest.raises(KeyError, match="must look like 'SRC->DEST'"):
        parse_edge("L0H0 L1H0.v", 2, 2)


@pytest.mark.parametrize(
    "name, message",
    [
        ("L9H0", "2-layer, 2-head model; heads are L0H0..L1H1"),
        ("L0H0.w", "Did you mean 'L0H0.v'"),
        ("MLP0", "no MLPs"),
        ("mlp0", "is not a node name"),
    ],
)
def test_unknown_nodes_say_what_exists(name, message):
    with pytest.raises(KeyError, match=message):
        parse_node(name, 2, 2, attn_only=name == "MLP0")


def test_graph_counts_match_auto_circuit_for_gpt2_small():
    # auto-circuit counts 32,491 edges for GPT-2 small with Q/K/V split
    assert ComputeGraph(12, 12, attn_only=False).n_edges == 32491
    assert ComputeGraph(2, 1, attn_only=True).n_edges == 12


def test_graph_edges_and_mask_round_trip():
    graph = ComputeGraph(2, 2, attn_only=False)
    edges = graph.edges
    assert len(edges) == graph.n_edges and all(isinstance(e, Edge) for e in edges)
    chosen = [edges[0], edges[7], edges[-1]]
    assert [e.name for e in graph.edges_of(graph.mask(chosen))] == [e.name for e in chosen]


@pytest.mark.parametrize("attn_only, parallel", [(True, False), (False, False), (False, True)])
def test_the_graphs_edge_mask_is_the_edge_rule_over_every_pair(attn_only, parallel):
    """ComputeGraph computes its edges as a tensor; each entry must be what names.is_edge says of that pair."""
    graph = ComputeGraph(3, 2, attn_only, parallel)
    expected = [[is_edge(src, dest, parallel) for dest in graph.dests] for src in graph.sources]
    assert graph.valid.tolist() == expected
