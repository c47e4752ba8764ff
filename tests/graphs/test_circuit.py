"""Circuits: JSON round trip, masks, faithfulness properties, export, and the discover pipeline."""

import json

import pytest

from pathpatch.discovery.edges import patch_edges
from pathpatch.discovery.graph import ComputeGraph
from pathpatch.discovery.prune import PruneConfig, prune
from pathpatch.graphs.circuit import Circuit, from_json
from pathpatch.graphs.export import to_dot, write_diagram
from pathpatch.graphs.faithfulness import faithfulness, faithfulness_curve


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
    import pathpatch.graphs.export as export

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


def test_position_aware_rows_are_refused(random_model, random_task):
    by_pos = patch_edges(random_model, random_task, ["MLP0->logits"], by_pos=True)
    with pytest.raises(ValueError, match="Position-aware circuits"):
        Circuit.from_edges(by_pos, ComputeGraph.from_model(random_model), "r", "r")
