"""Planted-circuit models do their task, and exactly their ground-truth edges carry it."""

import pytest
import torch

from pathpatch.circuit.prune import acdc
from pathpatch.models import build_task, load_model
from pathpatch.models.planted import subspace
from pathpatch.models.planted_chain import WEAK
from pathpatch.models.planted_gates import SEEN_BY
from pathpatch.models.planted_zoo import PLANTED, build_planted, get_planted
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph

NAMES = list(PLANTED)


def seen_by(name: str) -> PatchConfig:
    """The patching under which each true edge has an effect alone: paired noising unless the model names another."""
    direction, corruption = SEEN_BY.get(name, ("noise", "paired"))
    return PatchConfig(direction=direction, corruption=corruption)


@pytest.fixture(scope="module", params=NAMES)
def planted(request):
    spec = PLANTED[request.param]
    return spec, build_planted(spec.name), spec.make_task(64, 3)


def test_planted_model_solves_its_task(planted):
    spec, model, task = planted
    fresh = spec.make_task(256, 11)
    with torch.no_grad():
        predicted = model(fresh.clean)[:, -1].argmax(-1)
    assert (predicted == fresh.answers[:, 0]).all(), spec.name


def test_ground_truth_edges_are_real_edges_of_the_graph(planted):
    spec, model, _ = planted
    graph = ComputeGraph.from_model(model)
    assert all(graph.edge(name).name == name for name in spec.edges)


def test_planted_edges_matter_and_distractors_do_not(planted):
    spec, model, task = planted
    scores = patch_edges(model, task, config=seen_by(spec.name)).set_index("edge")["normalized"]
    truth, weak = scores.index.isin(spec.edges), scores.index.isin(WEAK.get(spec.name, ()))
    assert truth.sum() == len(spec.edges) and (truth | ~weak).all()
    assert scores[truth & ~weak].abs().min() >= 0.3, scores[truth]
    assert scores[~truth].abs().max() <= 1e-6, scores[~truth].abs().sort_values().tail()
    assert ((scores[weak].abs() >= 0.01) & (scores[weak].abs() < 0.05)).all(), scores[weak]  # below the default threshold


def test_distractors_are_active_not_dead(planted):
    """Distractor heads and MLPs change between clean and corrupt runs: their null effect is wiring."""
    spec, model, task = planted
    _, clean = model.run_with_cache(task.clean)
    _, corrupt = model.run_with_cache(task.corrupt)
    junk = subspace("junk")
    moved = [(clean[f"blocks.{l}.hook_{part}_out"] - corrupt[f"blocks.{l}.hook_{part}_out"])[..., junk].abs().max() for l in (0, 1) for part in ("attn", "mlp")]
    assert sum(m > 1e-3 for m in moved) >= 3, (spec.name, moved)


def test_acdc_recovers_exactly_the_planted_edges(planted):
    spec, model, task = planted
    if seen_by(spec.name).direction == "denoise":
        pytest.skip("ACDC removes edges from the full circuit by noising, so of two redundant paths it keeps one")
    kept = acdc(model, task, tau=0.01, config=seen_by(spec.name))
    assert set(kept["edge"]) == set(spec.edges)


def test_planted_models_load_by_name_with_their_tasks():
    model = load_model("planted-induction")
    task = build_task("planted-induction", n=4, seed=0)
    task.check_model(model)
    assert task.clean.shape == (4, model.cfg.n_ctx)


def test_unknown_planted_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="planted-copy"):
        get_planted("planted-nope")
