"""Exact edge patching, path patching and circuit runs against hand-built hook code."""

import pytest
import torch

from pathpatch.models import build_task, load_model
from pathpatch.patch.circuits import run_circuits
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges, path_patch
from pathpatch.patch.graph import ComputeGraph
from tests.conftest import hand_patched_metric, make_random_model, with_result_hook

EDGES = ["embed->L1H0.q", "L0H1->L1H1.k", "embed->L0H0.v", "L0H0->MLP1", "MLP0->logits", "MLP0->L1H0.q", "L1H0->logits", "embed->MLP0"]


@pytest.mark.parametrize("direction", ["noise", "denoise"])
def test_single_edges_match_hand_built_hooks(random_model, reference_model, random_task, direction):
    table = patch_edges(random_model, random_task, EDGES, config=PatchConfig(direction=direction)).set_index("edge")
    for edge in EDGES:
        src, dest = edge.split("->")
        expected = hand_patched_metric(reference_model, random_task, f"{src}->{dest}", noise=direction == "noise")
        assert table.loc[edge, "metric"] == pytest.approx(expected, abs=1e-5), edge


@pytest.mark.parametrize("act_fn", ["gelu_new", "gelu_fast"])
def test_gpt2s_gelu_runs_fused_during_patching_and_still_matches_hand_built_hooks(random_task, act_fn):
    """Patching runs GPT-2's GELU as torch's fused kernel; scores agree with the model's own function and the
    model gets that function back afterwards."""
    from pathpatch.models.hook_flags import enable_patching_hooks

    model = enable_patching_hooks(make_random_model(act_fn=act_fn))
    own = model.blocks[0].mlp.act_fn
    table = patch_edges(model, random_task, EDGES).set_index("edge")
    assert model.blocks[0].mlp.act_fn is own and own.__name__ == act_fn
    reference = with_result_hook(model)
    for edge in EDGES:
        src, dest = edge.split("->")
        assert table.loc[edge, "metric"] == pytest.approx(hand_patched_metric(reference, random_task, f"{src}->{dest}"), abs=1e-5), edge


def test_edges_by_position_match_hand_built_hooks(random_model, reference_model, random_task):
    table = patch_edges(random_model, random_task, ["L0H1->L1H1.k", "MLP0->logits"], by_pos=True).set_index("edge")
    assert len(table) == 2 * 6
    for edge, pos in [("L0H1->L1H1.k", 2), ("MLP0->logits", 5), ("MLP0->logits", 4)]:
        src, dest = edge.split("->")
        expected = hand_patched_metric(reference_model, random_task, f"{src}->{dest}", pos=pos)
        assert table.loc[f"{edge}@{pos}", "metric"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "overrides", [dict(use_qk_norm=True, normalization_type="RMS"), dict(attention_dir="bidirectional")], ids=["qk-norm", "bidirectional"]
)
def test_edges_on_models_that_rule_out_suffix_reuse_match_hand_built_hooks(random_task, overrides, monkeypatch):
    """q/k-normalised keys and bidirectional attention: no frozen key/value cache, no cut after the read position."""
    from dataclasses import replace

    from pathpatch.models.hook_flags import enable_patching_hooks
    from pathpatch.patch import schedule

    monkeypatch.setitem(schedule.CALL_COST_FLOPS, "cpu", 0.0)  # would-be suffix runs stay apart

    model = enable_patching_hooks(make_random_model(**overrides))
    task = replace(random_task, answers=random_task.answers[:, :1], wrong_answers=random_task.wrong_answers[:, :1], positions=torch.tensor([3]))
    edges = ["L0H1->L1H1.k", "embed->L1H0.q", "MLP0->logits"]
    table = patch_edges(model, task, edges, by_pos=True).set_index("edge")
    whole = patch_edges(model, task, edges).set_index("edge")
    reference = with_result_hook(model)
    checks = [("L0H1->L1H1.k", 2), ("embed->L1H0.q", 3), ("MLP0->logits", 3)]
    if "attention_dir" in overrides:  # a key after the read position still counts
        checks.append(("L0H1->L1H1.k", 5))
    for edge, pos in checks:
        src, dest = edge.split("->")
        expected = hand_patched_metric(reference, task, f"{src}->{dest}", pos=pos)
        assert table.loc[f"{edge}@{pos}", "metric"] == pytest.approx(expected, abs=1e-5), (edge, pos)
    for edge in edges:
        src, dest = edge.split("->")
        assert whole.loc[edge, "metric"] == pytest.approx(hand_patched_metric(reference, task, f"{src}->{dest}"), abs=1e-5), edge


def test_every_edge_is_scored_once(random_model, random_task):
    table = patch_edges(random_model, random_task)
    graph = ComputeGraph.from_model(random_model)
    assert len(table) == graph.n_edges == table["edge"].nunique()
    assert set(table.columns) >= {"edge", "src", "dest", "channel", "metric", "score", "normalized", "method"}


def test_full_circuit_is_clean_and_empty_circuit_is_corrupt(random_model, random_task):
    graph = ComputeGraph.from_model(random_model)
    values = run_circuits(random_model, random_task, torch.stack([graph.valid, torch.zeros_like(graph.valid)]))
    clean = random_task.score(random_model(random_task.clean)).item()
    corrupt = random_task.score(random_model(random_task.corrupt)).item()
    assert values.tolist() == pytest.approx([clean, corrupt], abs=1e-5)


def test_corrupting_every_edge_into_logits_gives_the_corrupt_metric(random_model, random_task):
    graph = ComputeGraph.from_model(random_model)
    keep = graph.valid.clone()
    keep[:, graph.dest_index(graph.node("logits"))] = False
    corrupt = random_task.score(random_model(random_task.corrupt)).item()
    assert run_circuits(random_model, random_task, keep).item() == pytest.approx(corrupt, abs=1e-5)


def test_circuit_without_one_edge_equals_patching_that_edge(random_model, random_task):
    graph = ComputeGraph.from_model(random_model)
    edges = ["L0H1->L1H1.k", "embed->MLP0", "MLP1->logits"]
    masks = []
    for edge in edges:
        keep = graph.valid.clone()
        keep &= ~graph.mask([edge])
        masks.append(keep)
    circuits = run_circuits(random_model, random_task, torch.stack(masks))
    single = patch_edges(random_model, random_task, edges)["metric"].tolist()
    assert circuits.tolist() == pytest.approx(single, abs=1e-5)


def test_circuit_runs_use_patched_upstream_outputs(random_model, reference_model, random_task):
    """Cut embed->L0H0.q and L0H0->logits: logits must read L0H0's *patched* output, not its cached one."""
    graph = ComputeGraph.from_model(random_model)
    keep = graph.valid & ~graph.mask(["embed->L0H0.q", "L0H0->logits"])
    _, clean = reference_model.run_with_cache(random_task.clean)
    _, corrupt = reference_model.run_with_cache(random_task.corrupt)
    d_embed = corrupt["blocks.0.hook_resid_pre"] - clean["blocks.0.hook_resid_pre"]
    seen = {}

    def q_hook(act, hook):
        act = act.clone()
        act[:, :, 0] += d_embed
        return act

    def result_hook(act, hook):
        seen["L0H0"] = act[:, :, 0].clone()
        return act

    def logits_hook(act, hook):
        return act - seen["L0H0"] + corrupt["blocks.0.attn.hook_result"][:, :, 0]

    hooks = [("blocks.0.hook_q_input", q_hook), ("blocks.0.attn.hook_result", result_hook), ("blocks.1.hook_resid_post", logits_hook)]
    expected = random_task.score(reference_model.run_with_hooks(random_task.clean, fwd_hooks=hooks)).item()
    assert run_circuits(random_model, random_task, keep).item() == pytest.approx(expected, abs=1e-5)


def test_permute_v_composition_path_carries_most_of_the_logit_difference():
    model, task = load_model("permute"), build_task("permute", n=64, seed=3)
    table = patch_edges(model, task).set_index("edge")
    assert table.loc["L0H0->L1H0.v", "normalized"] > 0.5
    assert table.loc["embed->L0H0.v", "normalized"] > 0.5
    assert table.loc["L0H0->L1H0.v", "score"] > 10 * table.loc["L0H0->L1H0.k", "score"]
    paths = path_patch(model, task, ["L1H0.v"]).set_index("sender")
    assert paths.loc["L0H0", "normalized"] > 0.5 > paths.loc["embed", "normalized"]


def test_path_patching_to_several_receivers_matches_hooks(random_model, reference_model, random_task):
    table = path_patch(random_model, random_task, ["L1H0.q", "L1H1.k"], senders=["L0H1"])
    _, clean = reference_model.run_with_cache(random_task.clean)
    _, corrupt = reference_model.run_with_cache(random_task.corrupt)
    delta = corrupt["blocks.0.attn.hook_result"][:, :, 1] - clean["blocks.0.attn.hook_result"][:, :, 1]

    def add(act, hook, head):
        act = act.clone()
        act[:, :, head] += delta
        return act

    hooks = [("blocks.1.hook_q_input", lambda a, hook: add(a, hook, 0)), ("blocks.1.hook_k_input", lambda a, hook: add(a, hook, 1))]
    expected = random_task.score(random_model.run_with_hooks(random_task.clean, fwd_hooks=hooks)).item()
    assert table.loc[0, "metric"] == pytest.approx(expected, abs=1e-5)


def test_chunking_gives_identical_edge_scores(random_model, random_task):
    a = patch_edges(random_model, random_task)["metric"]
    b = patch_edges(random_model, random_task, config=PatchConfig(direction="noise", chunk=3))["metric"]
    assert (a - b).abs().max() < 1e-6


def test_unknown_edge_names_suggest_close_matches(random_model, random_task):
    with pytest.raises(KeyError, match=r"Did you mean 'L1H0.v'"):
        patch_edges(random_model, random_task, ["L0H0->L1H0.w"])
    with pytest.raises(KeyError, match="heads are L0H0..L1H1"):
        patch_edges(random_model, random_task, ["L0H0->L9H0.v"])
    with pytest.raises(ValueError, match="No edge L1H0->L1H1.q"):
        patch_edges(random_model, random_task, ["L1H0->L1H1.q"])
    with pytest.raises(ValueError, match="empty edge list"):
        patch_edges(random_model, random_task, [])


def test_models_without_per_head_hooks_get_them_for_the_call_and_back_afterwards(random_model, random_task):
    """A user's own model, hooks off: the engine switches them on, scores exactly, and restores the settings."""
    plain = make_random_model()
    assert not plain.cfg.use_split_qkv_input and not plain.cfg.use_hook_mlp_in
    ours = patch_edges(plain, random_task, ["L0H0->L1H0.v", "MLP0->logits"])
    expected = patch_edges(random_model, random_task, ["L0H0->L1H0.v", "MLP0->logits"])
    torch.testing.assert_close(torch.tensor(ours["score"].values), torch.tensor(expected["score"].values), atol=1e-6, rtol=0)
    assert not plain.cfg.use_split_qkv_input and not plain.cfg.use_hook_mlp_in
    _, cache = plain.run_with_cache(random_task.clean)
    assert "blocks.0.hook_v_input" not in cache.keys()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(use_normalization_before_and_after=True, normalization_type="RMS"), "post-LayerNorm"),
    ],
)
def test_unsupported_architectures_are_named(overrides, message):
    graph_check = pytest.importorskip("pathpatch.patch.graph").check_supported
    with pytest.raises(ValueError, match=message):
        graph_check(make_random_model(**overrides))


def test_bad_circuit_mask_shape_is_explained(random_model, random_task):
    with pytest.raises(ValueError, match=r"this model needs \[circuits 7 15\]"):
        run_circuits(random_model, random_task, torch.ones(3, 3, dtype=torch.bool))


def test_transformer_bridge_gives_the_same_scores_as_hooked_transformer(tiny_gpt2_dir):
    hooked, bridge = load_model(tiny_gpt2_dir), load_model(tiny_gpt2_dir, backend="bridge")
    task = build_task("weekday", n=7, model=hooked)
    a, b = patch_edges(hooked, task), patch_edges(bridge, task)
    assert (a["metric"] - b["metric"]).abs().max() < 1e-6
    assert a["score"].abs().max() > 1e-4, "the random model must react to the corruption"


@pytest.mark.parametrize("corruption", ["zero", "mean", "resample"])
def test_ablations_match_hand_built_hooks(random_model, reference_model, random_task, corruption):
    config = PatchConfig(direction="noise", corruption=corruption, seed=4)
    metric = patch_edges(random_model, random_task, ["L0H1->L1H1.k"], config=config).loc[0, "metric"]
    random_model = reference_model
    _, clean = random_model.run_with_cache(random_task.clean)
    out = clean["blocks.0.attn.hook_result"][:, :, 1]
    if corruption == "zero":
        ablated = torch.zeros_like(out)
    elif corruption == "mean":
        ablated = out.mean(0, keepdim=True).expand_as(out)
    else:
        order = torch.randperm(4, generator=torch.Generator().manual_seed(4))
        _, shuffled = random_model.run_with_cache(random_task.clean[order])
        ablated = shuffled["blocks.0.attn.hook_result"][:, :, 1]

    def hook(act, hook):
        act = act.clone()
        act[:, :, 1] += ablated - out
        return act

    expected = random_task.score(random_model.run_with_hooks(random_task.clean, fwd_hooks=[("blocks.1.hook_k_input", hook)]))
    assert metric == pytest.approx(expected.item(), abs=1e-5)


def test_recurrence_edges_match_hand_built_hooks():
    model, task = load_model("recurrence"), build_task("recurrence", n=4, seed=0)
    table = patch_edges(model, task, ["L0H7->L2H3.v", "MLP1->logits"]).set_index("edge")
    model = with_result_hook(model)
    _, clean = model.run_with_cache(task.clean)
    _, corrupt = model.run_with_cache(task.corrupt)
    delta = corrupt["blocks.0.attn.hook_result"][:, :, 7] - clean["blocks.0.attn.hook_result"][:, :, 7]

    def hook(act, hook):
        act = act.clone()
        act[:, :, 3] += delta
        return act

    expected = task.score(model.run_with_hooks(task.clean, fwd_hooks=[("blocks.2.hook_v_input", hook)])).item()
    assert table.loc["L0H7->L2H3.v", "metric"] == pytest.approx(expected, abs=1e-5)
    row = table.loc["MLP1->logits"]
    assert row["score"] == pytest.approx(row["metric"] - table.attrs["clean_metric"], abs=1e-7), "MSE: cutting a helpful edge raises it"
    assert row["score"] > 0


def test_same_inputs_give_identical_scores(random_model, random_task):
    a, b = patch_edges(random_model, random_task), patch_edges(random_model, random_task)
    assert a.equals(b)


def test_nan_metric_is_reported(random_model, random_task):
    nan_task = type(random_task)(
        "nan", random_task.clean, random_task.corrupt, random_task.answers, None, random_task.positions,
        metric=lambda read: read[..., 0].mean(-1) * float("nan"),
    )
    with pytest.raises(ValueError, match=r"returned NaN or inf for 4 of 4 prompt runs"):
        patch_edges(random_model, nan_task)


def test_shared_head_inputs_agree_with_split_inputs_and_restore_the_flag(random_model, random_task, monkeypatch):
    """Recomputing one head's q/k/v from the shared input equals TransformerLens' per-head input copies."""
    import pathpatch.patch.variants as variants

    fast = patch_edges(random_model, random_task)["score"].to_numpy()
    fast_pos = patch_edges(random_model, random_task, ["embed->L1H0.q", "L0H1->L1H1.v"], by_pos=True)["score"].to_numpy()
    assert random_model.cfg.use_split_qkv_input, "the model's flag is restored after the shared-input run"
    monkeypatch.setattr(variants, "shared_head_inputs", lambda model: False)
    slow = patch_edges(random_model, random_task)["score"].to_numpy()
    slow_pos = patch_edges(random_model, random_task, ["embed->L1H0.q", "L0H1->L1H1.v"], by_pos=True)["score"].to_numpy()
    assert abs(fast - slow).max() <= 1e-5 and abs(fast_pos - slow_pos).max() <= 1e-5


@pytest.mark.parametrize("direction", ["noise", "denoise"])
def test_edges_by_position_with_every_suffix_apart_match_full_runs(random_model, random_task, monkeypatch, direction):
    """Position-wise edge variants run positions >= p only (frozen keys/values); forced apart, they equal full-length runs."""
    import pathpatch.patch.edges as edges
    import pathpatch.patch.variants as variants
    from pathpatch.patch import schedule

    config = PatchConfig(direction=direction)
    monkeypatch.setitem(schedule.CALL_COST_FLOPS, "cpu", 0.0)
    firsts = []
    original = variants.run_from_layer

    def spy(*args, **kwargs):
        firsts.append(args[6] if len(args) > 6 else 0)
        return original(*args, **kwargs)

    monkeypatch.setattr(variants, "run_from_layer", spy)
    fast = patch_edges(random_model, random_task, by_pos=True, config=config)["score"].to_numpy()
    assert max(firsts) == 3, "positions 1..3 start their own suffix (3 is the first read position)"
    monkeypatch.setattr(edges, "supports_suffix_reuse", lambda model: False)
    slow = patch_edges(random_model, random_task, by_pos=True, config=config)["score"].to_numpy()
    assert abs(fast - slow).max() <= 1e-5


def test_one_head_input_from_several_sources_in_one_variant_is_refused(random_model, random_task):
    """Shared head inputs recompute a head from one delta; two sources into one head input must go through run_circuits."""
    from pathpatch.patch.config import NOISE
    from pathpatch.patch.variants import Variant, collect_outputs, prepare_edges, run_variants

    graph = ComputeGraph.from_model(random_model)
    prep = prepare_edges(random_model, graph, random_task)
    outputs = collect_outputs(random_model, graph, prep, NOISE)
    variant = Variant("two sources", (graph.edge("embed->L1H0.q"), graph.edge("L0H1->L1H0.q")))
    with pytest.raises(ValueError, match="run_circuits"):
        run_variants(random_model, graph, prep, outputs, [variant], NOISE)


@pytest.mark.parametrize("direction", ["noise", "denoise"])
def test_edges_into_the_last_layers_queries_mlp_and_logits_run_from_the_first_read_position(
    random_model, reference_model, random_task, monkeypatch, direction
):
    """Those inputs change only their own position's output, so earlier positions keep the base run's keys
    and values; every edge (and path patching) still equals full-length runs and hand-built hooks."""
    import pathpatch.patch.edges as edges
    import pathpatch.patch.variants as variants
    from pathpatch.patch import schedule

    config = PatchConfig(direction=direction)
    monkeypatch.setitem(schedule.CALL_COST_FLOPS, "cpu", 0.0)
    firsts = []
    original = variants.run_from_layer

    def spy(*args, **kwargs):
        firsts.append((args[3], args[6]))
        return original(*args, **kwargs)

    monkeypatch.setattr(variants, "run_from_layer", spy)
    fast = patch_edges(random_model, random_task, config=config).set_index("edge")
    paths = path_patch(random_model, random_task, receivers=["L1H0.q", "MLP1"], config=config)["score"].to_numpy()
    assert (1, 3) in firsts and (1, 0) in firsts, "last-layer q/MLP/logits edges start at position 3, k/v edges at 0"
    for edge in ["embed->L1H0.q", "L0H1->MLP1", "MLP0->logits"]:
        src, dest = edge.split("->")
        expected = hand_patched_metric(reference_model, random_task, f"{src}->{dest}", noise=direction == "noise")
        assert fast.loc[edge, "metric"] == pytest.approx(expected, abs=1e-5), edge
    monkeypatch.setattr(edges, "supports_suffix_reuse", lambda model: False)
    slow = patch_edges(random_model, random_task, config=config).set_index("edge")
    slow_paths = path_patch(random_model, random_task, receivers=["L1H0.q", "MLP1"], config=config)["score"].to_numpy()
    assert abs(fast["score"] - slow["score"]).max() <= 1e-5
    assert abs(paths - slow_paths).max() <= 1e-5
