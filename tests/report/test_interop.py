"""Other tools' circuit files (EAP-IG/MIB, Edge Pruning, auto-circuit), ``convert``, and MIB's CPR/CMD.

The fixtures in ``fixtures/`` were written by the peers' own code (see ``fixtures/README.md``).
"""

import doctest
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pathpatch.circuit import faithfulness
from pathpatch.circuit.circuit import Circuit, from_json
from pathpatch.circuit.faithfulness import FRACTIONS, mib_cmd, mib_cpr, mib_curves, mib_sizes, mib_top_edges
from pathpatch.circuit.prune import PruneConfig, prune
from pathpatch.patch.graph import ComputeGraph
from pathpatch.report import eap_graph, interop
from pathpatch.report.interop import (convert, eap_edge_name, eap_edges, from_autocircuit_json, from_autocircuit_names, from_eap_json,
                                      from_eap_pt, from_edge_pruning, guess_format, to_autocircuit_json, to_autocircuit_names, to_eap_json,
                                      to_eap_pt, to_edge_pruning)

FIXTURES = Path(__file__).parent / "fixtures"
GRAPH = ComputeGraph(2, 2, False)


def toy_scores(graph: ComputeGraph = GRAPH) -> pd.DataFrame:
    """A full score table with seeded float32 scores, as attribute_edges returns it."""
    edges = graph.edges
    values = torch.randn(len(edges), generator=torch.Generator().manual_seed(1)).tolist()
    return pd.DataFrame({"edge": [e.name for e in edges], "src": [e.src.name for e in edges], "dest": [e.dest.name for e in edges],
                         "channel": [e.dest.channel or "" for e in edges], "pos": -1, "score": values, "method": "eap"})


def toy_circuit(scores: pd.DataFrame, graph: ComputeGraph = GRAPH, k: int = 14) -> Circuit:
    return Circuit.from_edges(prune(scores, PruneConfig(method="top_k", top_k=k)), graph, "toy", "task")


@pytest.mark.parametrize("module", [interop, eap_graph, faithfulness])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_gpt2_small_shape_has_their_158_nodes_and_32491_edges():
    edges = eap_edges(ComputeGraph(12, 12, False))
    assert len(edges) == len({(e.src.name, e.dest.name) for e in edges}) == 32491
    assert len({e.src.name for e in edges} | {"logits"}) == 158
    names = [eap_edge_name(e) for e in edges[:4] + edges[-3:]]
    assert names == ["input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "input->a0.h1<q>",  # as MIB's ioi-eap-ig.json
                     "a11.h10->logits", "a11.h11->logits", "m11->logits"]


@pytest.mark.parametrize("name, graph", [("eap_2l2h", GRAPH), ("eap_2l2h_parallel", ComputeGraph(2, 2, False, parallel=True))])
def test_edge_order_is_theirs(name, graph):
    assert [eap_edge_name(e) for e in eap_edges(graph)] == list(json.loads((FIXTURES / f"{name}.json").read_text())["edges"])


@pytest.mark.parametrize("name", ["eap_2l2h", "eap_2l2h_parallel", "eap_2l2h_scores_only"])
def test_eap_json_round_trip_gives_their_file_back(name, tmp_path):
    circuit, scores = from_eap_json(FIXTURES / f"{name}.json")
    to_eap_json(circuit, tmp_path / "out.json", scores=scores)
    assert (tmp_path / "out.json").read_text() == (FIXTURES / f"{name}.json").read_text()


def test_eap_pt_round_trip_gives_their_tensors_back(tmp_path):
    circuit, scores = from_eap_pt(FIXTURES / "eap_2l2h.pt")
    theirs = torch.load(FIXTURES / "eap_2l2h.pt", weights_only=True)
    ours = torch.load(to_eap_pt(circuit, tmp_path / "out.pt", scores=scores), weights_only=True)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert (torch.equal(value, ours[key]) and value.dtype == ours[key].dtype) if isinstance(value, torch.Tensor) else value == ours[key]


def test_json_and_pt_read_the_same_circuit_and_scores():
    (json_circuit, json_scores), (pt_circuit, pt_scores) = from_eap_json(FIXTURES / "eap_2l2h.json"), from_eap_pt(FIXTURES / "eap_2l2h.pt")
    assert json_circuit == pt_circuit and json_scores.equals(pt_scores)


def test_their_names_map_to_ours_with_their_scores():
    data = json.loads((FIXTURES / "eap_2l2h.json").read_text())
    circuit, scores = from_eap_json(FIXTURES / "eap_2l2h.json", model_name="gpt2", task_name="ioi", method="eap-ig")
    kept = {"embed->L0H0.q", "embed->L0H0.v", "L0H0->MLP0", "L0H0->L1H1.q", "embed->logits", "L0H0->logits", "MLP0->logits", "L1H1->logits"}
    assert set(circuit.scored_edges) == kept == {e.name for e in eap_edges(GRAPH) if data["edges"][eap_edge_name(e)]["in_graph"]}
    by_edge = scores.set_index("edge")["score"]
    assert by_edge["L0H0->L1H1.q"] == data["edges"]["a0.h0->a1.h1<q>"]["score"] and by_edge["embed->MLP1"] == data["edges"]["input->m1"]["score"]
    assert circuit.graph["L0H0"]["L1H1.q"]["score"] == by_edge["L0H0->L1H1.q"]
    assert (circuit.model_name, circuit.method, circuit.info["d_model"]) == ("gpt2", "eap-ig", 8)


@pytest.mark.parametrize("write, read", [(to_eap_json, from_eap_json), (to_eap_pt, from_eap_pt)])
def test_our_circuit_and_scores_survive_their_formats(write, read, tmp_path):
    scores = toy_scores()
    circuit = toy_circuit(scores)
    back, back_scores = read(write(circuit, tmp_path / "c", scores=scores, d_model=8))
    assert back.scored_edges == circuit.scored_edges
    assert all(back.graph[u][v]["score"] == circuit.graph[u][v]["score"] for u, v in back.graph.edges if back.graph[u][v]["kind"] == "edge")
    assert back_scores["edge"].tolist() == scores["edge"].tolist() and back_scores["score"].tolist() == scores["score"].tolist()


def test_circuit_without_scores_writes_zero_outside_it(tmp_path):
    circuit = toy_circuit(toy_scores())
    _, scores = from_eap_json(to_eap_json(circuit, tmp_path / "c.json", d_model=8))
    outside = scores[~scores["edge"].isin(circuit.scored_edges)]
    assert len(outside) == GRAPH.n_edges - len(circuit.scored_edges) and (outside["score"] == 0.0).all()


def test_attention_only_circuit_records_attn_only_and_comes_back(tmp_path):
    graph = ComputeGraph(2, 2, True)
    scores = toy_scores(graph)
    circuit = toy_circuit(scores, graph, k=8)
    data = json.loads(to_eap_json(circuit, tmp_path / "c.json", scores=scores, d_model=8).read_text())
    assert data["cfg"]["attn_only"] is True and len(data["edges"]) == 46  # EAP-IG graphs always have MLPs
    assert all(e["score"] == 0.0 and not e["in_graph"] for name, e in data["edges"].items() if "m" in name.replace("logits", ""))
    back, back_scores = from_eap_json(tmp_path / "c.json")
    assert back.compute_graph == graph and back.scored_edges == circuit.scored_edges and back_scores["score"].tolist() == scores["score"].tolist()


def test_node_in_graph_needs_an_edge_in_and_out_as_their_apply_topn_sets_it(tmp_path):
    """EAP-IG ``Graph.apply_topn`` (reset): ``nodes_in_graph += nodes_with_outgoing & nodes_with_ingoing``, input always ingoing."""
    rows = pd.DataFrame({"edge": ["embed->logits", "L0H0->logits", "embed->L1H1.k"], "src": ["embed", "L0H0", "embed"],
                         "dest": ["logits", "logits", "L1H1.k"], "score": 1.0, "method": "m"})
    data = json.loads(to_eap_json(Circuit.from_edges(rows, GRAPH, "toy", "task"), tmp_path / "c.json", d_model=8).read_text())
    assert [n for n, v in data["nodes"].items() if v["in_graph"]] == ["input", "logits"]  # a0.h0 has no input, a1.h1 no output


def test_score_table_alone_needs_shape_and_d_model(tmp_path):
    with pytest.raises(ValueError, match="compute_graph="):
        to_eap_json(toy_scores(), tmp_path / "s.json", d_model=8)
    with pytest.raises(ValueError, match="d_model"):
        to_eap_json(toy_scores(), tmp_path / "s.json", compute_graph=GRAPH)
    data = json.loads(to_eap_json(toy_scores(), tmp_path / "s.json", compute_graph=GRAPH, d_model=8).read_text())
    assert not any(e["in_graph"] for e in data["edges"].values())
    assert [n for n, v in data["nodes"].items() if v["in_graph"]] == ["logits"]  # as EAP-IG's attribute leaves a graph


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["edges"].update({"a9.h0->logits": {"score": 1.0, "in_graph": True}}), "'a9.h0->logits' is not in EAP-IG's graph"),
    (lambda d: d["nodes"]["a0.h0"].update(neurons=[True] * 7 + [False]), "keeps only some neurons"),
    (lambda d: d.pop("cfg"), "needs keys 'cfg', 'nodes', 'edges'"),
])
def test_bad_eap_files_are_refused_naming_the_file(edit, message, tmp_path):
    data = json.loads((FIXTURES / "eap_2l2h.json").read_text())
    edit(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as err:
        from_eap_json(tmp_path / "bad.json")
    assert "bad.json" in str(err.value)


EP_CIRCUIT = sorted(["embed->L0H1.v", "embed->MLP0", "embed->L1H0.q", "embed->L1H1.q", "embed->L1H0.v", "L0H1->L1H0.k", "L0H1->L1H1.v",
                     "MLP0->L1H0.v", "L0H1->MLP1", "L0H1->logits", "L1H0->logits", "L1H1->logits", "MLP1->logits"])


def test_edge_pruning_file_reads_as_our_circuit_and_writes_back(tmp_path):
    circuit = from_edge_pruning(FIXTURES / "edge_pruning_2l2h.json", 2, 2)
    assert circuit.scored_edges == EP_CIRCUIT and circuit.method == "edge-pruning"
    assert (to_edge_pruning(circuit, tmp_path / "edges.json").read_text() == (FIXTURES / "edge_pruning_2l2h.json").read_text())


def test_edge_pruning_without_embedding_nodes_feeds_every_kept_reader():
    circuit = from_edge_pruning(FIXTURES / "edge_pruning_2l2h_no_embeds.json", 2, 2)
    extra = {"embed->L0H1.q", "embed->L0H1.k", "embed->L1H0.k", "embed->L1H1.k", "embed->L1H1.v", "embed->MLP1", "embed->logits"}
    assert set(circuit.scored_edges) == set(EP_CIRCUIT) | extra


def test_llama_family_names_the_input_embeds(tmp_path):
    circuit = from_edge_pruning(FIXTURES / "edge_pruning_2l2h.json", 2, 2)
    pairs = json.loads(to_edge_pruning(circuit, tmp_path / "edges.json", family="fllama").read_text())
    assert [p for p in pairs if "embeds" in p[0]] == [["embeds", "a0.h1.v"], ["embeds", "m0"], ["embeds", "a1.h0.q"], ["embeds", "a1.h1.q"],
                                                      ["embeds", "a1.h0.v"]]
    assert from_edge_pruning(tmp_path / "edges.json", 2, 2) == circuit


def test_edge_pruning_name_the_shape_lacks_is_refused():
    with pytest.raises(ValueError, match="names a node a 1-layer, 2-head model lacks"):
        from_edge_pruning(FIXTURES / "edge_pruning_2l2h.json", 1, 2)


def test_autocircuit_names_are_exactly_their_graph():
    theirs = json.loads((FIXTURES / "autocircuit_2l2h_all_edges.json").read_text())
    assert sorted(from_autocircuit_names(theirs, GRAPH)) == sorted(e.name for e in GRAPH.edges)
    full = Circuit.from_edges(toy_scores(), GRAPH, "toy", "task")
    assert sorted(to_autocircuit_names(full)) == theirs


def test_autocircuit_json_round_trip_is_lossless(tmp_path):
    circuit = from_autocircuit_json(FIXTURES / "autocircuit_2l2h.json", 2, 2)
    assert circuit.scored_edges == EP_CIRCUIT
    assert from_autocircuit_json(to_autocircuit_json(circuit, tmp_path / "ac.json"), 2, 2) == circuit


def test_combined_head_input_name_gives_q_k_and_v():
    assert from_autocircuit_names(["A0.1->A1.0"], GRAPH) == ["L0H1->L1H0.q", "L0H1->L1H0.k", "L0H1->L1H0.v"]


@pytest.mark.parametrize("name, expected", [("eap_2l2h.json", "eap-json"), ("eap_2l2h.pt", "eap-pt"),
                                            ("edge_pruning_2l2h.json", "edge-pruning"), ("autocircuit_2l2h.json", "auto-circuit")])
def test_formats_are_told_by_suffix_and_content(name, expected):
    assert guess_format(FIXTURES / name) == expected


def test_convert_between_every_format_keeps_the_circuit(tmp_path):
    convert(FIXTURES / "eap_2l2h.json", tmp_path / "g.pt")
    assert convert(tmp_path / "g.pt", tmp_path / "importances.json").read_text() == (FIXTURES / "eap_2l2h.json").read_text()
    ours = convert(FIXTURES / "edge_pruning_2l2h.json", tmp_path / "c.json", n_layers=2, n_heads=2)
    assert guess_format(ours) == "pathpatch" and from_json(ours).scored_edges == EP_CIRCUIT
    assert convert(ours, tmp_path / "edges.json").read_text() == (FIXTURES / "edge_pruning_2l2h.json").read_text()
    convert(ours, tmp_path / "ac.json", dest_format="auto-circuit")
    assert from_json(convert(tmp_path / "ac.json", tmp_path / "c2.json", n_layers=2, n_heads=2)).scored_edges == EP_CIRCUIT


def test_convert_scores_table_to_eap_and_back(tmp_path):
    toy_scores().to_csv(tmp_path / "scores.csv", index=False)
    convert(tmp_path / "scores.csv", tmp_path / "importances.json", n_layers=2, n_heads=2, d_model=8)
    back = pd.read_csv(convert(tmp_path / "importances.json", tmp_path / "back.csv"), keep_default_na=False)
    assert back["edge"].tolist() == toy_scores()["edge"].tolist() and np.array_equal(back["score"], toy_scores()["score"])


@pytest.mark.parametrize("src, dest, kwargs, message", [
    ("x.txt", "c.json", {}, r"Cannot tell the format of .*x\.txt \(suffix '\.txt'\).*src_format \(--from\)"),
    ("empty.json", "c.json", {}, r"empty\.json \(an empty list\)"),
    ("c.json", "out.json", {}, r"Cannot tell which format to write .*out\.json.*dest_format \(--to\)"),
    ("scores.csv", "out.pt", {}, r"scores\.csv \(scores\) does not record the model's shape; give n_layers and n_heads"),
    ("c.json", "scores.csv", {}, r"holds a circuit, not every edge's score"),
    ("eap_scores.json", "c.json", {}, r"holds scores but no circuit edges"),
])
def test_convert_says_what_it_could_not_tell_and_the_fix(src, dest, kwargs, message, tmp_path):
    (tmp_path / "x.txt").write_text("[]")
    (tmp_path / "empty.json").write_text("[]")
    toy_circuit(toy_scores()).to_json(tmp_path / "c.json")
    toy_scores().to_csv(tmp_path / "scores.csv", index=False)
    (tmp_path / "eap_scores.json").write_text((FIXTURES / "eap_2l2h_scores_only.json").read_text())
    with pytest.raises(ValueError, match=message):
        convert(tmp_path / src, tmp_path / dest, **kwargs)


MIB_SHARES = (.001, .002, .005, .01, .02, .05, .1, .2, .5, 1)  # evaluate_area_under_curve's `percentages`, verbatim
MIB_FAITH = [0.0, 0.25, -0.1, 0.6, 0.9, 1.2, 0.95, 1.05, 1.0, 1.0]


def test_mib_areas_match_their_loop():
    """Numbers from the area loop of ``evaluate_area_under_curve`` (hannamw/MIB-circuit-track ``b759df34``,
    ``MIB_circuit_track/evaluation.py``), run verbatim on ``MIB_SHARES``/``MIB_FAITH``. By hand, linear CPR:
    .001*.125 + .003*.075 + .005*.25 + .01*.75 + .03*1.05 + .05*1.075 + .1*1.0 + .3*1.025 + .5*1.0 = 1.00185."""
    assert mib_cpr(MIB_SHARES, MIB_FAITH) == pytest.approx(1.00185, abs=1e-12)
    assert mib_cmd(MIB_SHARES, MIB_FAITH) == pytest.approx(0.03315000000000001, abs=1e-12)
    assert mib_cpr(MIB_SHARES, MIB_FAITH, log_scale=True) == pytest.approx(4.881243231881204, abs=1e-12)
    assert mib_cmd(MIB_SHARES, MIB_FAITH, log_scale=True) == pytest.approx(2.4288715252094586, abs=1e-12)


def test_mib_and_our_areas_are_the_same_trapezoids():
    x = np.asarray(FRACTIONS)
    assert mib_cpr(FRACTIONS, MIB_FAITH) == pytest.approx(float(np.trapezoid(MIB_FAITH, x)), abs=1e-12)
    assert mib_cmd(FRACTIONS, MIB_FAITH) == pytest.approx(float(np.trapezoid(np.abs(1 - np.array(MIB_FAITH)), x)), abs=1e-12)


def test_mib_sizes_round_down_where_ours_round():
    assert mib_sizes(32491) == [32, 64, 162, 324, 649, 1624, 3249, 6498, 16245, 32491]
    assert [max(1, round(f * 32491)) for f in FRACTIONS][1] == 65  # faithfulness_curve's size at 0.2%


def test_mib_top_edges_rank_signed_or_absolute_then_keep_paths():
    scores = toy_scores()
    signed, absolute = mib_top_edges(scores, 10, absolute=False), mib_top_edges(scores, 10, absolute=True)
    assert set(signed["edge"]) <= set(scores.nlargest(10, "score")["edge"])
    assert set(absolute["edge"]) <= set(scores.loc[scores["score"].abs().nlargest(10).index, "edge"])
    assert set(signed["edge"]) != set(absolute["edge"])
    assert prune(signed, PruneConfig(method="top_k", top_k=10))["edge"].tolist() == signed["edge"].tolist()  # already on paths


def test_mib_curves_run_their_sizes_from_empty_to_full(random_model, random_task):
    scores = toy_scores()  # the random model's shape: 2 layers, 2 heads, MLPs
    signed, absolute = mib_curves(scores, random_model, random_task)
    for curve, ranked_by_abs in ((signed, False), (absolute, True)):
        assert curve["n_edges"].tolist() == mib_sizes(len(scores)) == [0, 0, 0, 0, 0, 2, 4, 9, 23, 46]
        assert curve["n_kept"].tolist() == [len(mib_top_edges(scores, n, ranked_by_abs)) for n in curve["n_edges"]]
        assert curve["faithfulness"].iloc[0] == 0.0 and curve["faithfulness"].iloc[-1] == pytest.approx(1.0, abs=1e-4)
        assert curve.attrs["cpr"] == mib_cpr(MIB_SHARES, curve["faithfulness"]) and curve.attrs["cmd"] == mib_cmd(FRACTIONS, curve["faithfulness"])
    assert signed["n_kept"].tolist() != absolute["n_kept"].tolist()
