"""Claim kinds that say what researchers write: each measured against independent hook code, true and false."""

import pytest
import torch

from pathpatch.circuit.circuit import Circuit
from pathpatch.claims.checks import Context, check_claims
from pathpatch.claims.hypotheses import Claim, Hypothesis
from pathpatch.models import build_task, load_model
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph
from pathpatch.task.groups import with_metric


def context(name: str, n: int = 16, corruption: str | None = None) -> Context:
    model, task = load_model(name), build_task(name, n=n, seed=0, corruption=corruption)
    graph = ComputeGraph.from_model(model)
    scores = patch_edges(model, task)
    circuit = Circuit.from_edges(scores[scores["normalized"].abs() >= 0.05], graph, name, name)
    return Context(model, task, circuit, graph, PatchConfig(direction="noise"), 20, 0)


@pytest.fixture(scope="module")
def permute():
    return context("permute", corruption="values")


def run(ctx: Context, **params):
    kind = params.pop("kind")
    table = check_claims(Hypothesis("h", "m", "t", {}, (Claim("c", kind, params),)), ctx)
    return table.iloc[0]


def effect_of(ctx: Context, edge: str) -> float:
    row = patch_edges(ctx.model, ctx.task, [edge]).iloc[0]
    return float(row["normalized"])


def test_an_upper_bound_says_a_path_is_negligible(permute):
    small = run(permute, kind="effect", edge="embed->logits", max=0.05)
    assert small["op"] == "<=" and small["passed"] and small["value"] == pytest.approx(effect_of(permute, "embed->logits"), abs=1e-5)
    assert not run(permute, kind="effect", edge="L0H0->L1H0.v", max=0.05)["passed"]


def test_compare_measures_the_difference_of_two_effects(permute):
    row = run(permute, kind="compare", a="L0H0->L1H0.v", b="embed->logits")
    expected = effect_of(permute, "L0H0->L1H0.v") - effect_of(permute, "embed->logits")
    assert row["value"] == pytest.approx(expected, abs=1e-5) and row["passed"]
    assert not run(permute, kind="compare", a="embed->logits", b="L0H0->L1H0.v")["passed"]


def test_rank_passes_only_when_the_claimed_nodes_are_the_strongest(permute):
    among = ["L0H0->L1H0.v", "embed->logits", "embed->L1H0.q"]
    assert run(permute, kind="rank", nodes=["L0H0->L1H0.v"], among=among)["passed"]
    wrong = run(permute, kind="rank", nodes=["embed->logits"], among=among)
    assert not wrong["passed"] and wrong["value"] == 0.0 and "L0H0->L1H0.v" in wrong["detail"]


def test_rank_with_a_share_passes_when_that_share_of_the_named_nodes_is_on_top(permute):
    among = ["L0H0->L1H0.v", "embed->logits", "embed->L1H0.q"]
    effects = {edge: effect_of(permute, edge) for edge in among}
    strongest, weakest = max(among, key=effects.get), min(among, key=effects.get)
    half = run(permute, kind="rank", nodes=[strongest, weakest], among=among, min=0.5)
    assert half["value"] == 0.5 and half["verdict"] == "pass", half.to_dict()
    assert run(permute, kind="rank", nodes=[strongest, weakest], among=among)["verdict"] != "pass"  # default: all of them
    assert run(permute, kind="rank", nodes=[weakest], among=among)["verdict"] == "fail"


def test_any_and_all_groups_combine_their_parts_verdicts(permute):
    strong = {"kind": "effect", "edge": "L0H0->L1H0.v", "min": 0.5}
    weak = {"kind": "effect", "edge": "embed->logits", "min": 0.5}
    assert effect_of(permute, "L0H0->L1H0.v") > 0.5 > effect_of(permute, "embed->logits")
    either = run(permute, kind="any", claims=[strong, weak])
    assert either["verdict"] == "pass" and either["value"] == 0.5 and "part 2: fail" in either["detail"]
    assert run(permute, kind="all", claims=[strong, weak])["verdict"] == "fail"
    assert run(permute, kind="any", claims=[weak, {**weak, "edge": "embed->L1H0.q"}])["verdict"] == "fail"


def test_a_report_only_claim_is_measured_but_never_fails(permute):
    row = run(permute, kind="effect", edge="L0H0->L1H0.v", max=0.0, report=True)
    assert row["passed"] and row["op"] == "report" and row["value"] > 0.5


def pattern(ctx: Context, layer: int, head: int) -> torch.Tensor:
    _, cache = ctx.model.run_with_cache(ctx.task.clean)
    return cache[f"blocks.{layer}.attn.hook_pattern"][:, head]


def test_attention_to_a_set_of_positions(permute):
    p = pattern(permute, 1, 0)
    row = run(permute, kind="head_role", head="L1H0", role="attends_to", to=[1, 2, 3], positions="read", report=True)
    read = permute.task.positions % p.shape[-1]
    assert row["value"] == pytest.approx(p[:, read][:, :, 1:4].sum(-1).mean().item(), abs=1e-6)
    assert not run(permute, kind="head_role", head="L1H0", role="attends_to", to=[0], positions="read", min=0.5)["passed"]


@pytest.fixture(scope="module")
def sorted_list():
    return context("sorted-list")


def test_attention_to_the_smallest_larger_value_follows_the_data(sorted_list):
    p = pattern(sorted_list, 0, 0)
    tokens = sorted_list.task.clean
    per_prompt = []
    for b in range(tokens.shape[0]):
        mass = []
        for dest in range(11, 20):
            larger = [q for q in range(10) if tokens[b, q] > tokens[b, dest]]
            if larger:
                mass.append(p[b, dest, min(larger, key=lambda q: tokens[b, q])].item())
        per_prompt.append(sum(mass) / len(mass))
    row = run(sorted_list, kind="head_role", head="L0H0", role="attends_to", to="smallest_larger", among=list(range(10)),
              positions=list(range(11, 20)), min=0.5)
    assert row["value"] == pytest.approx(sum(per_prompt) / len(per_prompt), abs=1e-5)
    assert row["passed"]
    assert not run(sorted_list, kind="head_role", head="L0H0", role="attends_to", to="largest_smaller", among=list(range(10)),
                   positions=list(range(11, 20)), min=0.5)["passed"]


def test_uniform_attention_is_a_distance_from_uniform(sorted_list):
    p = pattern(sorted_list, 0, 1)
    rows = [0.5 * (p[:, d, : d + 1] - 1 / (d + 1)).abs().sum(-1) for d in range(p.shape[-1])]  # causal: no mass after d
    expected = torch.stack(rows, -1).mean().item()
    row = run(sorted_list, kind="head_role", head="L0H1", role="uniform", report=True)
    assert row["value"] == pytest.approx(expected, abs=1e-5) and row["verdict"] == "report"
    assert run(sorted_list, kind="head_role", head="L0H1", role="uniform", max=0.01)["verdict"] == "fail"


@pytest.fixture(scope="module")
def trigrams():
    return context("trigrams", n=64)


def test_forced_attention_equals_feeding_the_previous_value_to_the_head(trigrams):
    """Reference: a one-layer head attending only to p - 1 outputs z[p] = v[p - 1]; patch hook_z with that."""
    model, task = trigrams.model, with_metric(trigrams.task, "accuracy")
    _, cache = model.run_with_cache(task.clean)
    read = task.positions % task.clean.shape[1]

    def feed(z, hook):
        z = z.clone()
        z[:, read, 0] = cache["blocks.0.attn.hook_v"][:, read - 1, 0]
        return z

    with torch.no_grad():
        expected = task.score_per_prompt(model.run_with_hooks(task.clean, fwd_hooks=[("blocks.0.attn.hook_z", feed)])).mean().item()
    row = run(trigrams, kind="forced_attention", heads=["L0H0"], offset=1, min=0.75)
    assert row["value"] == pytest.approx(expected, abs=1e-6) and row["passed"]
    assert not run(trigrams, kind="forced_attention", heads=["L0H0"], offset=1, min=0.99)["passed"]


def test_a_neurons_direct_effect_equals_removing_it_from_the_final_stream_with_norm_scales_frozen(trigrams):
    model, task = trigrams.model, trigrams.task
    neuron = 5
    _, cache = model.run_with_cache(task.clean)
    out = cache["blocks.0.mlp.hook_post"][:, :, neuron, None] * model.blocks[0].mlp.W_out[neuron]  # [batch pos d_model]
    scale = cache["ln_final.hook_scale"]
    hooks = [("blocks.0.hook_resid_post", lambda x, hook: x - out), ("ln_final.hook_scale", lambda s, hook: scale)]
    with torch.no_grad():
        base = task.score_per_prompt(model(task.clean))
        without = task.score_per_prompt(model.run_with_hooks(task.clean, fwd_hooks=hooks))
    row = run(trigrams, kind="neuron", layer=0, neuron=neuron, report=True)
    assert row["value"] == pytest.approx((base - without).mean().item(), abs=1e-4)
    assert run(trigrams, kind="neuron", layer=0, neuron=neuron, min=row["value"] + 1.0)["verdict"] == "fail"


def test_a_neuron_is_a_node_of_effect_ablation_and_compare_claims_as_hook_code_measures_it(trigrams):
    model, task = trigrams.model, trigrams.task
    post = "blocks.0.mlp.hook_post"

    def metric_with(inputs, value, neuron=5):  # the neuron's activation replaced by ``value`` [batch pos]
        def put(act, hook):
            act = act.clone()
            act[:, :, neuron] = value
            return act
        with torch.no_grad():
            return task.score_per_prompt(model.run_with_hooks(inputs, fwd_hooks=[(post, put)]))

    with torch.no_grad():
        _, clean_cache = model.run_with_cache(task.clean)
        _, corrupt_cache = model.run_with_cache(task.corrupt)
        clean, corrupt = task.score_per_prompt(model(task.clean)), task.score_per_prompt(model(task.corrupt))
    act = clean_cache[post][:, :, 5]
    noised = metric_with(task.clean, corrupt_cache[post][:, :, 5])
    expected = ((clean.mean() - noised.mean()) / (clean.mean() - corrupt.mean())).item()
    assert run(trigrams, kind="effect", node="MLP0.n5", report=True)["value"] == pytest.approx(expected, abs=1e-5)
    restored = metric_with(task.corrupt, act)
    expected = ((restored.mean() - corrupt.mean()) / (clean.mean() - corrupt.mean())).item()
    assert run(trigrams, kind="effect", node="MLP0.n5", direction="denoise", report=True)["value"] == pytest.approx(expected, abs=1e-5)
    loss_up = lambda n: (clean - metric_with(task.clean, clean_cache[post][:, :, n].mean(0, keepdim=True).expand_as(act), n)).mean().item()  # noqa: E731
    assert run(trigrams, kind="ablation", node="MLP0.n5", report=True)["value"] == pytest.approx(loss_up(5), abs=1e-5)
    row = run(trigrams, kind="compare", a="MLP0.n5", b="MLP0.n6", by="ablation", margin=-100.0)
    assert row["value"] == pytest.approx(loss_up(5) - loss_up(6), abs=1e-5)


def test_faithfulness_by_noising_is_what_corrupting_only_the_circuit_loses(permute):
    denoise = run(permute, kind="faithfulness", direction="denoise", min=0.9)
    noise = run(permute, kind="faithfulness", direction="noise", min=0.9)
    assert denoise["passed"] and noise["passed"] and noise["value"] != denoise["value"]


def test_an_effect_at_a_position_is_patching_that_edge_at_that_position(permute):
    row = run(permute, kind="effect", edge="L0H0->L1H0.v@a1", min=0.1)
    table = patch_edges(permute.model, permute.task, ["L0H0->L1H0.v"], by_pos=True).set_index("edge")
    assert row["value"] == pytest.approx(float(table.loc["L0H0->L1H0.v@a1", "normalized"]), abs=1e-5)


def test_a_nodes_effect_at_a_position_is_patching_its_output_there(permute):
    """Noising every output of L0H0 at MID equals TransformerLens activation patching of hook_result there."""
    row = run(permute, kind="effect", node="L0H0@MID", report=True)
    model, task = permute.model, permute.task
    reference = load_model("permute")
    reference.set_use_attn_result(True)
    _, corrupt = reference.run_with_cache(task.corrupt)
    mid = task.labels.index("MID")

    def hook(act, hook):
        act = act.clone()
        act[:, mid, 0] = corrupt["blocks.0.attn.hook_result"][:, mid, 0]
        return act

    clean, wrong = task.score(reference(task.clean)).item(), task.score(reference(task.corrupt)).item()
    patched = task.score(reference.run_with_hooks(task.clean, fwd_hooks=[("blocks.0.attn.hook_result", hook)])).item()
    assert row["value"] == pytest.approx((clean - patched) / (clean - wrong), abs=1e-5)


def test_a_path_through_positions_is_its_weakest_hop(permute):
    nodes = ["embed@a2", "L0H0.v@a2", "L0H0@MID", "L1H0.v@MID", "L1H0@END", "logits@END"]
    row = run(permute, kind="path", nodes=nodes, min_effect=0.05)
    hops = ["embed->L0H0.v@a2", "L0H0->L1H0.v@MID", "L1H0->logits@END"]
    table = patch_edges(permute.model, permute.task, hops).set_index("edge")
    assert row["value"] == pytest.approx(float(table["normalized"].min()), abs=1e-5)
    assert row["passed"]  # a position-free circuit keeps its edges at every position


def test_the_positions_seed_file_passes_and_checks_a_position_aware_circuit(tmp_path, capsys):
    import json
    from pathlib import Path

    from pathpatch.cli import main

    path = Path(__file__).resolve().parents[2] / "hypotheses" / "permute-positions.toml"
    assert main(["check", str(path), "--out", str(tmp_path / "c")]) == 0, capsys.readouterr().err
    circuit = json.loads((tmp_path / "c" / "circuit.json").read_text())
    assert circuit["graph"]["granularity"] == "position" and all("@" in n["id"] for n in circuit["nodes"])


def test_the_readme_claim_table_is_the_reference_check_explain_prints():
    from pathlib import Path

    from pathpatch.claims.claim_reference import REFERENCE, explain
    from pathpatch.claims.hypotheses import parse_hypothesis

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text().split("<!-- claims -->")[1].split("\n\n")[0]
    for kind, _, example in REFERENCE:
        assert f"| {kind} |" in readme and f"`{example}`" in readme and example in explain()
        fields = dict(part.split(" = ", 1) for part in _split(example))
        import tomllib

        table = tomllib.loads("\n".join(f"{k} = {v}" for k, v in fields.items()))
        parse_hypothesis({"model": "m", "task": "t", "claim": [table]}, "example")  # every example parses


def test_every_claim_kind_has_a_reference_row_and_explains_its_keys():
    from pathpatch.claims.claim_keys import CLAIM_KEYS, COMMON
    from pathpatch.claims.claim_reference import KEY_MEANINGS, REFERENCE, explain

    named = {word for kind, _, _ in REFERENCE for word in kind.replace(",", " ").split()}
    assert set(CLAIM_KEYS) <= named, set(CLAIM_KEYS) - named
    keys = {key for required, optional in CLAIM_KEYS.values() for key in required | optional} | COMMON
    assert keys <= set(KEY_MEANINGS), keys - set(KEY_MEANINGS)
    assert all(explain(kind).count("\n    kind = ") >= 1 for kind in CLAIM_KEYS)


def _split(example: str) -> list[str]:
    """Split ``a = 1, b = [1, 2], c = {from = 1, to = 2}`` at top-level commas."""
    parts, depth, current = [], 0, ""
    for ch in example:
        depth += ch in "[{" and 1 or 0
        depth -= ch in "]}" and 1 or 0
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return parts + [current.strip()]


FALSE_CLAIMS = {
    "effect max": 'kind = "effect"\nedge = "L0H0->L1H0.v"\nmax = 0.05',
    "compare": 'kind = "compare"\na = "embed->logits"\nb = "L0H0->L1H0.v"',
    "rank": 'kind = "rank"\nnodes = ["embed->logits"]\namong = ["embed->logits", "L0H0->L1H0.v"]',
    "attends_to set": 'kind = "head_role"\nhead = "L1H0"\nrole = "attends_to"\nto = [0]\npositions = "read"\nmin = 0.9',
    "attends_to rule": 'kind = "head_role"\nhead = "L1H0"\nrole = "attends_to"\nto = "mismatch"\npositions = "read"\nmin = 0.99',
    "uniform": 'kind = "head_role"\nhead = "L1H0"\nrole = "uniform"\nmax = 0.001',
    "forced attention": 'kind = "forced_attention"\nheads = ["L1H0"]\noffset = 1\nmin = 0.99',
    "denoised effect": 'kind = "effect"\nedge = "embed->logits"\ndirection = "denoise"\nmin = 0.5',
    "faithfulness max": 'kind = "faithfulness"\nmax = 0.5',
    "effect at a position": 'kind = "effect"\nedge = "L0H0->L1H0.v@a2"\nmin = 0.2',
    "node at a position": 'kind = "effect"\nnode = "L0H0@a1"\nmax = 0.05',
    "path at positions": 'kind = "path"\nnodes = ["embed@p0", "L1H0.v@p0", "L1H0@END", "logits@END"]\nmin_effect = 0.2',
}
BAD_CLAIMS = {
    "unknown rule": ('kind = "head_role"\nhead = "L1H0"\nrole = "attends_to"\nto = "biggest"\nmin = 0.5', "to = 'biggest'"),
    "position out of range": ('kind = "head_role"\nhead = "L1H0"\nrole = "attends_to"\nto = [40]\nmin = 0.5', "to = 40: positions 40 lie outside"),
    "rank outsider": ('kind = "rank"\nnodes = ["L0H0"]\namong = ["L1H0"]', "not among the candidates"),
    "neuron without MLP": ('kind = "neuron"\nlayer = 0\nneuron = 1\nmin = 0.0', "has no MLP"),
    "report not bool": ('kind = "faithfulness"\nmin = 0.5\nreport = "yes"', "report = 'yes'"),
    "by unknown": ('kind = "compare"\na = "L0H0"\nb = "L1H0"\nby = "vibes"', "by = 'vibes'"),
    "two bounds": ('kind = "effect"\nnode = "L0H0"\nmin = 0.1\nmax = 0.5', "exactly one bound"),
    "nan bound": ('kind = "effect"\nnode = "L0H0"\nmax = nan', "finite number"),
    "unknown position": ('kind = "effect"\nedge = "L0H0->L1H0.v@S9"\nmin = 0.1', "Unknown position 'S9'; this task's positions are BOS, a0"),
    "query across positions": ('kind = "path"\nnodes = ["embed@a0", "L1H0.q@a0", "L1H0@END", "logits@END"]\nmin_effect = 0.1', "cannot reach"),
    "residual hop across positions": ('kind = "path"\nnodes = ["embed@a0", "L0H0.v@a1", "L0H0@a1", "logits@a1"]\nmin_effect = 0.1', "joins two positions"),
    "unknown granularity": ('kind = "faithfulness"\nmin = 0.5', "granularity = 'token'"),
    "position on a head role": ('kind = "head_role"\nhead = "L1H0@END"\nrole = "previous_token"\nmin = 0.5', "names a position ('L1H0@END')"),
}


def write_claim(tmp_path, claim: str, granularity: str = "edge"):
    path = tmp_path / "h.toml"
    path.write_text(f'model = "permute"\ntask = "permute"\n[method]\nn = 8\nbootstrap = 10\ntask_corruption = "values"\ngranularity = "{granularity}"\n'
                    '[[claim]]\n' + claim + "\n")
    return path


@pytest.mark.parametrize("kind", list(FALSE_CLAIMS))
def test_a_false_claim_of_every_kind_exits_1(kind, tmp_path, capsys):
    from pathpatch.cli import main

    assert main(["check", str(write_claim(tmp_path, FALSE_CLAIMS[kind]))]) == 1, capsys.readouterr().err
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize("kind", list(BAD_CLAIMS))
def test_a_malformed_or_impossible_claim_exits_2_naming_it(kind, tmp_path, capsys):
    from pathpatch.cli import main

    claim, message = BAD_CLAIMS[kind]
    assert main(["check", str(write_claim(tmp_path, claim, "token" if kind == "unknown granularity" else "edge"))]) == 2
    assert message in capsys.readouterr().err


def test_a_neuron_correlates_with_a_feature_the_task_file_carries(tmp_path, capsys):
    """JSONL prompts carry "features"; the claim's value is Pearson's r of the neuron's activation with it."""
    import json

    from pathpatch.cli import main

    model, task = load_model("trigrams"), build_task("trigrams", n=32, seed=0)
    feature = task.clean[:, 0].float()  # the first token: something the input fixes
    lines = [json.dumps({"clean": task.clean[i].tolist(), "corrupt": task.corrupt[i].tolist(), "answer": task.answers[i].tolist(),
                         "wrong_answer": task.wrong_answers[i].tolist(), "positions": task.positions.tolist(),
                         "features": {"first": float(feature[i])}}) for i in range(32)]
    (tmp_path / "tri.jsonl").write_text("\n".join(lines) + "\n")
    _, cache = model.run_with_cache(task.clean)
    act = cache["blocks.0.mlp.hook_post"][:, task.positions, 7].mean(-1)
    r = torch.corrcoef(torch.stack([act.double(), feature.double()]))[0, 1].item()
    claim = 'kind = "neuron"\nlayer = 0\nneuron = 7\ncorrelates_with = "first"\n'
    base = 'model = "trigrams"\ntask = "tri.jsonl"\n[method]\nbootstrap = 10\n[[claim]]\n'
    (tmp_path / "ok.toml").write_text(base + claim + "min = -0.5\n")  # below the whole interval: pass
    (tmp_path / "near.toml").write_text(base + claim + f"min = {r - 0.01}\n")  # inside it: inconclusive (exit 4)
    (tmp_path / "no.toml").write_text(base + claim + "min = 0.9\n")  # above it: fail
    assert main(["check", str(tmp_path / "ok.toml")]) == 0, capsys.readouterr().err
    assert f"{r:.4g}" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "near.toml")]) == 4
    assert "prompts would settle it" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "no.toml")]) == 1
    (tmp_path / "bad.toml").write_text(base + 'kind = "neuron"\nlayer = 0\nneuron = 7\ncorrelates_with = "second"\nmin = 0.0\n')
    assert main(["check", str(tmp_path / "bad.toml")]) == 2
    assert "no feature 'second'" in capsys.readouterr().err
