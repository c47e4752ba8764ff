"""Circuits: JSON round trip, masks, faithfulness properties, export, and the discover pipeline."""

import json

import pandas as pd
import pytest

from pathpatch.circuit.circuit import Circuit, from_dict, from_json
from pathpatch.circuit.faithfulness import faithfulness, faithfulness_curve
from pathpatch.circuit.prune import PruneConfig, prune
from pathpatch.errors import InputError
from pathpatch.models import Task
from pathpatch.patch.circuits import run_circuits
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph
from pathpatch.report.export import to_dot, write_diagram
from pathpatch.task.positions import layout


@pytest.fixture(scope="module")
def scores(random_model, random_task):
    return patch_edges(random_model, random_task)


def circuit_of(model, scores, k):
    kept = prune(scores, PruneConfig(method="top_k", top_k=k))
    assert len(kept) > 0, "the top edges must reach logits"
    return Circuit.from_edges(kept, ComputeGraph.from_model(model), "random", "random")


def test_json_round_trip_is_lossless(random_model, scores, tmp_path):
    circuit = circuit_of(random_model, scores, 25)
    assert from_json(circuit.to_json(tmp_path / "c.json")) == circuit
    assert circuit != circuit_of(random_model, scores, 15)


def test_mask_marks_exactly_the_kept_edges(random_model, scores):
    circuit = circuit_of(random_model, scores, 20)
    graph = ComputeGraph.from_model(random_model)
    assert [e.name for e in graph.edges_of(circuit.mask())] == sorted(circuit.scored_edges, key=[e.name for e in graph.edges].index)


def test_full_circuit_is_fully_faithful(random_model, random_task, scores):
    full = Circuit.from_edges(scores, ComputeGraph.from_model(random_model), "random", "random")
    result = faithfulness(full, random_model, random_task)
    assert result["faithfulness"] == pytest.approx(1.0, abs=1e-4)
    assert result["complement_faithfulness"] == pytest.approx(0.0, abs=1e-4)


def test_faithfulness_curve_ends_at_one(random_model, random_task, scores):
    curve = faithfulness_curve(scores, random_model, random_task, fractions=(0.1, 0.5, 1.0))
    assert curve["faithfulness"].iloc[-1] == pytest.approx(1.0, abs=1e-4)
    assert curve["n_edges"].tolist() == [round(0.1 * len(scores)) or 1, round(0.5 * len(scores)), len(scores)]
    assert 0 <= curve.attrs["cmd"] and curve.attrs["cpr"] <= 1.5


def test_empty_circuit_is_refused(random_model, random_task):
    empty = Circuit.from_edges(patch_edges(random_model, random_task).iloc[0:0], ComputeGraph.from_model(random_model), "r", "r")
    with pytest.raises(ValueError, match="no edges"):
        faithfulness(empty, random_model, random_task)


def test_dot_export_ranks_and_colours(random_model, scores):
    circuit = circuit_of(random_model, scores, 20)
    source = to_dot(circuit).source
    assert "rank=same" in source and "->" in source
    assert ("#2166ac" in source) or ("#b2182b" in source)


def test_missing_dot_binary_still_writes_dot(random_model, scores, tmp_path, monkeypatch):
    import pathpatch.report.export as export

    monkeypatch.setattr(export.shutil, "which", lambda name: None)
    path, message = write_diagram(circuit_of(random_model, scores, 20), tmp_path / "c.svg")
    assert path.suffix == ".dot" and path.exists()
    assert "apt-get install graphviz" in message


def test_malformed_circuit_files_are_explained(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        from_json(bad)
    bad.write_text(json.dumps({"nodes": [], "edges": []}))
    with pytest.raises(ValueError, match="not a pathpatch circuit"):
        from_json(bad)
    with pytest.raises(FileNotFoundError, match="No circuit file"):
        from_json(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def position_circuit(random_model, random_task):
    labelled = Task(**{**random_task.__dict__, "labels": ("BOS", "x", "x", "y", "z", "END")})
    scores = patch_edges(random_model, labelled, by_pos=True)
    columns = layout(labelled)
    kept = prune(scores, PruneConfig(method="top_k", top_k=30), columns)
    return labelled, scores, Circuit.from_edges(kept, ComputeGraph.from_model(random_model), "random", "random", positions=columns), kept


def test_position_aware_circuit_round_trips_losslessly(position_circuit, tmp_path):
    _, _, circuit, kept = position_circuit
    assert circuit.layout is not None and circuit.graph.graph["granularity"] == "position"
    assert circuit.scored_edges == sorted(kept["edge"])
    path = circuit.to_json(tmp_path / "c.json")
    again = from_json(path)
    assert again == circuit and again.layout == circuit.layout
    assert again.to_json(tmp_path / "d.json").read_bytes() == path.read_bytes()


def test_position_aware_rows_need_the_tasks_positions(random_model, random_task):
    by_pos = patch_edges(random_model, random_task, ["MLP0->logits"], by_pos=True)
    with pytest.raises(ValueError, match="need the task's positions"):
        Circuit.from_edges(by_pos, ComputeGraph.from_model(random_model), "r", "r")
    with pytest.raises(ValueError, match="need the task's positions to find paths"):
        prune(by_pos)


def test_position_aware_faithfulness_of_all_edges_is_one_and_pruned_circuit_matches_a_mask_run(random_model, position_circuit):
    task, scores, circuit, _ = position_circuit
    full = Circuit.from_edges(scores, ComputeGraph.from_model(random_model), "r", "r", positions=layout(task))
    assert faithfulness(full, random_model, task)["faithfulness"] == pytest.approx(1.0, abs=1e-5)
    ours = faithfulness(circuit, random_model, task)["metric"]
    assert ours == pytest.approx(run_circuits(random_model, task, circuit.mask(), positions=circuit.layout).item(), abs=1e-6)


def test_head_inputs_join_the_head_at_positions_they_reach(position_circuit):
    _, _, circuit, _ = position_circuit
    for src, dest, kind in circuit.graph.edges(data="kind"):
        a, b = circuit.graph.nodes[src], circuit.graph.nodes[dest]
        if kind == "internal":
            assert (a["pos"], b["pos"]) in circuit.layout.reaches
            if src.split("@")[0].endswith(".q"):
                assert a["pos"] == b["pos"]
        else:
            assert a["pos"] == b["pos"]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["nodes"][0].update(id=d["nodes"][0]["id"].split("@")[0] + "@nowhere"), "must be at one of its positions"),
    (lambda d: d["nodes"][0].update(pos="zzz"), "records pos"),
    (lambda d: d["graph"].update(granularity="token"), "granularity"),
    (lambda d: d["graph"]["positions"].update(labels=["a", "a", "b", "c", "d"]), "distinct names"),
    (lambda d: d["graph"].pop("positions"), "needs graph 'positions'"),
])
def test_hand_edited_position_aware_circuits_are_refused(position_circuit, edit, message):
    _, _, circuit, _ = position_circuit
    data = json.loads(json.dumps(circuit.to_dict()))
    edit(data)
    with pytest.raises(ValueError, match=message):
        from_dict(data, "c.json")


def test_node_attributes_a_hand_written_file_leaves_out_are_filled_in(position_circuit):
    _, _, circuit, _ = position_circuit
    data = json.loads(json.dumps(circuit.to_dict()))
    for node in data["nodes"]:
        for key in ("column", "kind", "layer", "pos"):
            node.pop(key)
    again = from_dict(data, "c.json")
    assert again == circuit and "layout=neato" in to_dot(again).source


def test_an_edge_between_two_positions_is_refused(position_circuit):
    _, _, circuit, _ = position_circuit
    data = json.loads(json.dumps(circuit.to_dict()))
    edge = next(e for e in data["edges"] if e["kind"] == "edge")
    other = next(n["id"] for n in data["nodes"] if n["id"].split("@")[0] == edge["target"].split("@")[0] and n["id"] != edge["target"]) \
        if any(n["id"].split("@")[0] == edge["target"].split("@")[0] and n["id"] != edge["target"] for n in data["nodes"]) else None
    if other is None:
        pytest.skip("no second position of the same reader in this circuit")
    edge["target"] = other
    with pytest.raises(ValueError, match="joins two positions"):
        from_dict(data, "c.json")


def test_position_aware_diagram_pins_a_column_per_position(position_circuit, tmp_path):
    _, _, circuit, _ = position_circuit
    source = to_dot(circuit).source
    assert "layout=neato" in source
    used = sorted({circuit.graph.nodes[n]["pos"] for n in circuit.graph}, key=circuit.layout.labels.index)
    for label in used:
        assert f"column {circuit.layout.index(label)}" in source
    xs = {}
    for node in circuit.graph:
        line = next(line for line in source.splitlines() if line.strip().startswith(f'"{node}"') or line.strip().startswith(f"{node} "))
        x = float(line.split('pos="')[1].split(",")[0])
        xs.setdefault(circuit.graph.nodes[node]["pos"], []).append(x)
    order = [sum(v) / len(v) for _, v in sorted(xs.items(), key=lambda kv: circuit.layout.labels.index(kv[0]))]
    assert order == sorted(order), "columns run left to right in position order"
    path, _ = write_diagram(circuit, tmp_path / "c.svg")
    assert path.with_suffix(".dot").exists()


@pytest.fixture
def joined():
    """A circuit whose strong edge L0H0->L1H0.v hangs on two connectors."""
    rows = pd.DataFrame({"edge": ["embed->L0H0.v", "L0H0->L1H0.v", "L1H0->logits"], "src": ["embed", "L0H0", "L1H0"],
                         "dest": ["L0H0.v", "L1H0.v", "logits"], "score": [0.2, 8.0, 0.3], "normalized": [0.02, 0.8, 0.03],
                         "method": "exact-noise", "connector": [True, False, True]})
    return Circuit.from_edges(rows, ComputeGraph(2, 2, True), "toy", "task")


def test_connectors_survive_the_json_round_trip(joined, tmp_path):
    path = joined.to_json(tmp_path / "c.json")
    written = {f"{e['source']}->{e['target']}": e["connector"] for e in json.loads(path.read_text())["edges"] if e["kind"] == "edge"}
    assert written == {"embed->L0H0.v": True, "L0H0->L1H0.v": False, "L1H0->logits": True}
    again = from_json(path)
    assert again == joined and again.connectors == ["L1H0->logits", "embed->L0H0.v"]


def test_a_connector_flag_must_be_true_or_false(joined):
    data = json.loads(json.dumps(joined.to_dict()))
    next(e for e in data["edges"] if e["kind"] == "edge")["connector"] = "false"
    with pytest.raises(InputError, match="c.json: edge .* has connector 'false'; it must be true or false"):
        from_dict(data, "c.json")


def test_files_written_without_connectors_read_every_edge_as_passing(joined):
    data = json.loads(json.dumps(joined.to_dict()))
    for edge in data["edges"]:
        edge.pop("connector", None)
    again = from_dict(data, "c.json")
    assert again.connectors == [] and again.scored_edges == joined.scored_edges
    assert all(c is False for _, _, c in again.graph.edges(data="connector") if c is not None)


def test_connectors_are_drawn_dashed_grey_and_the_diagram_says_so(joined):
    source = to_dot(joined).source
    line = lambda src, dest: next(x for x in source.splitlines() if x.strip().startswith(f"{src} -> {dest}"))  # noqa: E731
    assert "style=dashed" in line("embed", "\"L0H0.v\"") and "#8c8c8c" in line("embed", "\"L0H0.v\"")
    assert "connector: below the threshold" in line("L1H0", "logits")
    assert "dashed" not in line("L0H0", "\"L1H0.v\"") and "#2166ac" in line("L0H0", "\"L1H0.v\"")
    assert "dashed grey: connectors" in source
