"""discover() and check() on model and task objects: settings that are used are the settings recorded."""

import pytest
import torch

from pathpatch.claims.checks import Context, check_claims
from pathpatch.claims.hypotheses import parse_hypothesis
from pathpatch.models import build_task, load_model
from pathpatch.patch.circuits import run_circuits_with_baselines
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph
from pathpatch.pipeline import DiscoverConfig, discover


@pytest.fixture(scope="module")
def permute():
    return load_model("permute"), build_task("permute", n=16, seed=0, corruption="values")


def test_report_and_circuit_record_the_task_prompt_count(permute):
    model, task = permute
    result = discover(model, task, top_k=4, cross_check=False)
    assert result.circuit.info["n"] == 16 and result.n_prompts == 16
    assert "- prompts: 16" in result.report() and "64" not in result.report().split("## Faithfulness")[0]


def test_a_metric_override_applies_to_a_task_passed_in(permute):
    model, task = permute
    loss = discover(model, task, metric="loss", top_k=4, cross_check=False)
    assert loss.circuit.info["metric"] == "loss"
    expected = patch_edges(model, task.__class__(**{**task.__dict__, "metric": "loss"}), ["L0H0->L1H0.v"])
    row = loss.scores.set_index("edge").loc["L0H0->L1H0.v"]
    assert row["score"] == pytest.approx(float(expected["score"].iloc[0]), abs=1e-6)
    logit = discover(model, task, top_k=4, cross_check=False).scores.set_index("edge").loc["L0H0->L1H0.v", "score"]
    assert abs(row["score"] - logit) > 1e-3


def test_denoise_direction_scores_what_an_edge_restores(permute):
    model, task = permute
    result = discover(model, task, direction="denoise", top_k=4, cross_check=False)
    expected = patch_edges(model, task, ["L0H0->L1H0.v"], config=PatchConfig(direction="denoise"))
    assert result.scores.set_index("edge").loc["L0H0->L1H0.v", "score"] == pytest.approx(float(expected["score"].iloc[0]), abs=1e-6)
    assert result.circuit.info["direction"] == "denoise"


@pytest.mark.parametrize("settings, message", [
    (dict(top_k=0), "top_k=0"), (dict(threshold=float("nan")), "threshold=nan"), (dict(relative="no"), "relative='no'"),
    (dict(direction="sideways"), "Unknown direction 'sideways'"), (dict(n=True), "n=True"),
])
def test_bad_settings_name_the_value(settings, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace("[", r"\[")):
        DiscoverConfig(**settings)


def test_unknown_settings_are_refused_by_name(permute):
    with pytest.raises(TypeError, match=r"unknown settings \['topk'\]"):
        discover(*permute, topk=3)


def test_a_model_without_a_task_of_its_own_asks_for_one_in_python_terms(random_model):
    with pytest.raises(ValueError, match=r"has no task of its own; pass a task.*task= in Python"):
        discover(random_model)


def context(model, task, direction: str) -> Context:
    from pathpatch.circuit.circuit import Circuit

    scores = patch_edges(model, task, ["embed->L0H0.v", "L0H0->L1H0.v", "L1H0->logits"])
    circuit = Circuit.from_edges(scores, ComputeGraph.from_model(model), "permute", "permute")
    return Context(model, task, circuit, ComputeGraph.from_model(model), PatchConfig(direction=direction), 10, 0)


def claims(*tables: str):
    text = {"model": "permute", "task": "permute", "claim": [dict(t) for t in tables]}
    return parse_hypothesis(text, "t")


def test_denoising_effect_claims_measure_restoration_not_one_minus_it(permute):
    model, task = permute
    hypothesis = claims({"kind": "effect", "edge": "L0H0->L1H0.v", "min": 0.0}, {"kind": "effect", "node": "L0H0", "min": 0.0})
    table = check_claims(hypothesis, context(model, task, "denoise")).set_index("name")
    config = PatchConfig(direction="denoise")
    edge = patch_edges(model, task, ["L0H0->L1H0.v"], config=config)
    restored = (edge["metric"].iloc[0] - edge.attrs["corrupt_metric"]) / (edge.attrs["clean_metric"] - edge.attrs["corrupt_metric"])
    assert table.loc["effect L0H0->L1H0.v", "value"] == pytest.approx(restored, abs=1e-5)
    graph = ComputeGraph.from_model(model)
    only = torch.zeros_like(graph.valid)
    only[graph.src_index(graph.node("L0H0"))] = True
    patched, clean, corrupt = run_circuits_with_baselines(model, task, graph.valid & only, config)
    node = (patched.mean() - corrupt.mean()) / (clean.mean() - corrupt.mean())
    assert table.loc["effect L0H0", "value"] == pytest.approx(node.item(), abs=1e-5)


def test_attends_to_a_later_position_with_a_negative_offset(permute):
    model, task = permute
    hypothesis = claims({"kind": "head_role", "head": "L0H0", "role": "attends_to", "offset": -1, "positions": "all", "report": True})
    value = check_claims(hypothesis, context(model, task, "noise"))["value"].iloc[0]
    _, cache = model.run_with_cache(task.clean)
    pattern = cache["blocks.0.attn.hook_pattern"][:, 0]  # [batch dest src]
    n = pattern.shape[-1]
    expected = torch.stack([pattern[:, p, p + 1] for p in range(n - 1)], -1).mean()
    assert value == pytest.approx(expected.item(), abs=1e-6)


def test_the_report_gives_mibs_cpr_and_cmd_beside_ours(permute):
    from pathpatch.circuit.directions import stronger
    from pathpatch.circuit.faithfulness import mib_curves

    model, task = permute
    result = discover(model, task, top_k=4, cross_check=False)  # the curves rank edges by their larger effect of the two directions
    signed, absolute = mib_curves(stronger(result.scores), model, task, config=PatchConfig(direction="noise"))
    assert result.curve.attrs["mib_cpr"] == pytest.approx(signed.attrs["cpr"]) and result.curve.attrs["mib_cmd"] == pytest.approx(absolute.attrs["cmd"])
    assert f"CPR {signed.attrs['cpr']:.3f}, CMD {absolute.attrs['cmd']:.3f}" in result.report()
