"""Batched activation patching equals TransformerLens' one-forward-per-patch reference."""

from functools import partial

import pytest
import torch
from transformer_lens import patching

from pathpatch.models import build_task, load_model
from pathpatch.patch.activation import activation_patch
from pathpatch.patch.config import PatchConfig

DENOISE = PatchConfig(direction="denoise")  # TransformerLens' patching convention: clean activations into the corrupt run

TL = {
    ("resid_pre", True): patching.get_act_patch_resid_pre,
    ("resid_mid", True): patching.get_act_patch_resid_mid,
    ("attn_out", True): patching.get_act_patch_attn_out,
    ("mlp_out", True): patching.get_act_patch_mlp_out,
    ("z", True): patching.get_act_patch_attn_head_out_by_pos,
    ("q", True): patching.get_act_patch_attn_head_q_by_pos,
    ("k", True): patching.get_act_patch_attn_head_k_by_pos,
    ("v", True): patching.get_act_patch_attn_head_v_by_pos,
    ("pattern", True): patching.get_act_patch_attn_head_pattern_by_pos,
    ("z", False): patching.get_act_patch_attn_head_out_all_pos,
    ("v", False): patching.get_act_patch_attn_head_v_all_pos,
    ("pattern", False): patching.get_act_patch_attn_head_pattern_all_pos,
}


@pytest.fixture(autouse=True)
def every_suffix_separately(monkeypatch):
    """Tiny test models would merge every suffix into one full-length run; split them so tests cover suffix runs."""
    from pathpatch.patch import schedule

    monkeypatch.setitem(schedule.CALL_COST_FLOPS, "cpu", 0.0)


def reference(model, task, act, per_pos):
    _, clean_cache = model.run_with_cache(task.clean)
    return TL[(act, per_pos)](model, task.corrupt, clean_cache, task.score)


@pytest.mark.parametrize("act, per_pos", list(TL))
def test_matches_transformer_lens_on_random_model(random_model, random_task, act, per_pos):
    ours = activation_patch(random_model, random_task, act, per_pos, config=DENOISE)
    torch.testing.assert_close(ours.values, reference(random_model, random_task, act, per_pos), atol=1e-5, rtol=0)


@pytest.mark.parametrize("act, per_pos", [("z", True), ("resid_pre", True), ("pattern", False)])
def test_matches_transformer_lens_on_permute(act, per_pos):
    model, task = load_model("permute"), build_task("permute", n=16, seed=1)
    ours = activation_patch(model, task, act, per_pos, config=DENOISE)
    torch.testing.assert_close(ours.values, reference(model, task, act, per_pos), atol=1e-5, rtol=0)


def test_result_hook_matches_a_run_with_hooks_loop(reference_model, random_task):
    """TransformerLens' patching has no `result` helper: compare with a plain loop of run_with_hooks."""
    random_model = reference_model
    ours = activation_patch(random_model, random_task, "result", per_pos=False, config=DENOISE)
    _, clean = random_model.run_with_cache(random_task.clean)
    for layer in range(2):
        for head in range(2):
            name = f"blocks.{layer}.attn.hook_result"

            def hook(act, hook, head=head, name=name):
                act = act.clone()
                act[:, :, head] = clean[name][:, :, head]
                return act

            logits = random_model.run_with_hooks(random_task.corrupt, fwd_hooks=[(name, hook)])
            assert ours.values[layer, head].item() == pytest.approx(random_task.score(logits).item(), abs=1e-5)


def test_mean_ablation_noising_matches_a_loop(random_model, random_task):
    ours = activation_patch(random_model, random_task, "z", per_pos=False, config=PatchConfig(direction="noise", corruption="mean"))
    _, clean = random_model.run_with_cache(random_task.clean)

    def hook(act, hook, head):
        act = act.clone()
        act[:, :, head] = act[:, :, head].mean(0, keepdim=True)
        return act

    for layer in range(2):
        for head in range(2):
            logits = random_model.run_with_hooks(random_task.clean, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", partial(hook, head=head))])
            assert ours.values[layer, head].item() == pytest.approx(random_task.score(logits).item(), abs=1e-5)
    row = ours.table.iloc[0]
    assert row["score"] == pytest.approx(ours.clean_metric - row["metric"], abs=1e-6)


def test_continuous_input_model_matches_a_loop():
    model, task = load_model("recurrence"), build_task("recurrence", n=4, seed=0)
    ours = activation_patch(model, task, "attn_out", per_pos=True, config=DENOISE)
    _, clean = model.run_with_cache(task.clean)
    for layer, pos in [(0, 1), (2, 12), (1, 5)]:
        name = f"blocks.{layer}.hook_attn_out"

        def hook(act, hook, name=name, pos=pos):
            act = act.clone()
            act[:, pos] = clean[name][:, pos]
            return act

        logits = model.run_with_hooks(task.corrupt, fwd_hooks=[(name, hook)])
        assert ours.values[layer, pos].item() == pytest.approx(task.score(logits).item(), abs=1e-5)
    assert (ours.table["score"] * (ours.table["metric"] - ours.corrupt_metric) <= 0).all(), "MSE: lower metric, higher score"


def test_chunk_size_does_not_change_results(random_model, random_task):
    whole = activation_patch(random_model, random_task, "z", True, config=DENOISE).values
    one_by_one = activation_patch(random_model, random_task, "z", True, PatchConfig(direction="denoise", chunk=1)).values
    torch.testing.assert_close(whole, one_by_one, atol=1e-6, rtol=0)


def test_table_has_one_row_per_patch_with_tensor_values(random_model, random_task):
    result = activation_patch(random_model, random_task, "z", True, config=DENOISE)
    assert list(result.table.columns) == ["act", "layer", "pos", "head", "metric", "score", "normalized"]
    assert len(result.table) == result.values.numel() == 2 * 6 * 2
    row = result.table.query("layer == 1 and pos == 3 and head == 0").iloc[0]
    assert row["metric"] == pytest.approx(result.values[1, 3, 0].item())


def test_bad_activation_names_are_refused(random_model, random_task):
    with pytest.raises(ValueError, match="Unknown activation 'attn'"):
        activation_patch(random_model, random_task, "attn", config=DENOISE)
    with pytest.raises(ValueError, match="attention-only model has no 'mlp_out'"):
        activation_patch(load_model("permute"), build_task("permute", n=2), "mlp_out", config=DENOISE)


def test_denoising_an_ablation_is_refused():
    with pytest.raises(ValueError, match="use direction='noise' for ablations"):
        PatchConfig(direction="denoise", corruption="mean")


def test_same_clean_and_corrupt_metric_is_explained(random_model, random_task):
    same = type(random_task)("same", random_task.clean, random_task.clean, random_task.answers, random_task.wrong_answers, random_task.positions)
    with pytest.raises(ValueError, match="clean and corrupt give the same metric"):
        activation_patch(random_model, same, "z", config=DENOISE)
    assert (activation_patch(random_model, same, "z", config=PatchConfig(normalize=False)).table["score"].abs() < 1e-5).all()


@pytest.mark.parametrize("act", ["z", "k", "resid_mid"])
def test_rotary_model_by_position_matches_transformer_lens(random_task, act):
    """Rotary positions: the suffix run's frozen key/value cache must apply the right position offsets."""
    from pathpatch.models.hook_flags import enable_patching_hooks
    from tests.conftest import make_random_model

    model = enable_patching_hooks(make_random_model(positional_embedding_type="rotary", rotary_dim=4))
    ours = activation_patch(model, random_task, act, per_pos=True, config=DENOISE)
    torch.testing.assert_close(ours.values, reference(model, random_task, act, True), atol=1e-5, rtol=0)


def test_mean_ablation_by_position_matches_a_loop(random_model, random_task):
    """Noising with mean ablation, one position at a time: earlier positions come from the clean cache."""
    ours = activation_patch(random_model, random_task, "attn_out", per_pos=True, config=PatchConfig(direction="noise", corruption="mean"))

    def hook(act, hook, pos):
        act = act.clone()
        act[:, pos] = act[:, pos].mean(0, keepdim=True)
        return act

    for layer, pos in [(0, 0), (0, 4), (1, 2), (1, 5)]:
        logits = random_model.run_with_hooks(random_task.clean, fwd_hooks=[(f"blocks.{layer}.hook_attn_out", partial(hook, pos=pos))])
        assert ours.values[layer, pos].item() == pytest.approx(random_task.score(logits).item(), abs=1e-5)


def test_suffix_reuse_is_used_and_agrees_with_full_runs(random_model, random_task, monkeypatch):
    """Switching suffix reuse off (full-length runs) gives the same values: the saving changes nothing."""
    import pathpatch.patch.activation as activation

    firsts = []
    original = activation.run_from_layer

    def spy(*args, **kwargs):
        firsts.append(args[6])
        return original(*args, **kwargs)

    monkeypatch.setattr(activation, "run_from_layer", spy)
    fast = activation_patch(random_model, random_task, "z", per_pos=True, config=DENOISE).values
    assert sorted(set(firsts)) == [0, 1, 2, 3], "positions 0..3 start their own suffix; later ones start at the first read (3)"
    monkeypatch.setattr(activation, "supports_suffix_reuse", lambda model: False)
    slow = activation_patch(random_model, random_task, "z", per_pos=True, config=DENOISE).values
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "act, per_pos", [("z", True), ("attn_out", True), ("mlp_out", True), ("resid_post", True), ("resid_pre", True), ("resid_mid", True), ("z", False)]
)
def test_residual_stream_patches_without_hooks_equal_patching_inside_the_layer(random_model, random_task, monkeypatch, act, per_pos):
    """Head outputs, attn_out and mlp_out add their difference to the residual stream, resid_pre/mid/post
    replace it (the MLP rerun where it reads the change), and the run starts there; hooking the
    activation gives the same values."""
    import pathpatch.patch.activation as activation

    calls = []
    original = activation._inject
    monkeypatch.setattr(activation, "_inject", lambda *args: calls.append(args[2]) or original(*args))
    fast = activation_patch(random_model, random_task, act, per_pos, config=DENOISE).values
    assert set(calls) == {0, 1}, "both layers' patches are added to the residual stream"
    monkeypatch.setattr(activation, "_injects", lambda model, act: False)
    slow = activation_patch(random_model, random_task, act, per_pos, config=DENOISE).values
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)


@pytest.mark.parametrize("overrides", [dict(parallel_attn_mlp=True), dict(use_normalization_before_and_after=True, normalization_type="RMS")], ids=["parallel", "post-attn-norm"])
@pytest.mark.parametrize("act", ["z", "attn_out"])
def test_blocks_whose_attention_output_is_not_simply_added_match_transformer_lens(random_task, overrides, act):
    """A parallel MLP reads resid_pre, and a norm after attention makes z's effect non-additive: those
    models patch inside the layer instead of adding the patch after it."""
    from pathpatch.models.hook_flags import enable_patching_hooks
    from tests.conftest import make_random_model

    model = enable_patching_hooks(make_random_model(**overrides))
    ours = activation_patch(model, random_task, act, per_pos=True, config=DENOISE)
    torch.testing.assert_close(ours.values, reference(model, random_task, act, True), atol=1e-5, rtol=0)


def test_last_layer_runs_only_the_read_positions_when_no_patch_acts_there(random_model, random_task, monkeypatch):
    """Layer-0 key patches (hooked) run the last layer from the first read position (3); the values equal full last-layer runs."""
    from pathpatch.patch import runner

    tails = []
    original = runner.read_suffix

    def spy(model, start, layer, first, tail, cache):
        tails.append((layer, tail))
        return original(model, start, layer, first, tail, cache)

    monkeypatch.setattr(runner, "read_suffix", spy)
    fast = activation_patch(random_model, random_task, "k", per_pos=True, config=DENOISE).values
    assert tails and set(tails) == {(0, 3)}
    monkeypatch.setattr(runner, "supports_read_suffix", lambda *args: False)
    slow = activation_patch(random_model, random_task, "k", per_pos=True, config=DENOISE).values
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "overrides", [dict(use_qk_norm=True, normalization_type="RMS"), dict(attention_dir="bidirectional")], ids=["qk-norm", "bidirectional"]
)
@pytest.mark.parametrize("act", ["z", "k"])
def test_models_that_rule_out_suffix_reuse_match_transformer_lens(random_task, overrides, act):
    """TransformerLens caches keys after q/k normalisation (``hook_k`` is before it), and bidirectional
    attention lets later positions change earlier ones: neither may use a frozen key/value cache or
    cut the inputs after the last read position."""
    from dataclasses import replace

    from pathpatch.models.hook_flags import enable_patching_hooks
    from tests.conftest import make_random_model

    model = enable_patching_hooks(make_random_model(**overrides))
    task = replace(random_task, answers=random_task.answers[:, :1], wrong_answers=random_task.wrong_answers[:, :1], positions=torch.tensor([3]))
    ours = activation_patch(model, task, act, per_pos=True, config=DENOISE)
    torch.testing.assert_close(ours.values, reference(model, task, act, True), atol=1e-5, rtol=0)


def test_suffix_starts_merge_when_a_call_costs_more_than_the_positions_saved():
    from pathpatch.patch.schedule import merge_suffixes

    counts = {0: 2, 1: 2, 2: 2, 5: 2}
    assert merge_suffixes(counts, position_cost=1.0, call_cost=0.0) == {0: 0, 1: 1, 2: 2, 5: 5}
    assert merge_suffixes(counts, position_cost=1.0, call_cost=1e9) == {0: 0, 1: 0, 2: 0, 5: 0}
    # 5 -> 2 costs 2 * 3 = 6 >= 5: kept apart; 2 -> 1 costs 2 < 5: merged; {2, 1} -> 0 costs 2*2 + 2*1 = 6: apart.
    assert merge_suffixes(counts, position_cost=1.0, call_cost=5.0) == {0: 0, 1: 1, 2: 1, 5: 5}


def test_block_every_matches_transformer_lens(random_model, random_task):
    """One shared clean/corrupt pass for resid_pre, attn_out and mlp_out; same numbers as TL's block_every."""
    from pathpatch.patch import block_every

    ours = block_every(random_model, random_task, config=DENOISE)
    _, clean_cache = random_model.run_with_cache(random_task.clean)
    theirs = patching.get_act_patch_block_every(random_model, random_task.corrupt, clean_cache, random_task.score)
    torch.testing.assert_close(ours.values, theirs, atol=1e-5, rtol=0)
    assert list(ours.table["act"].unique()) == ["resid_pre", "attn_out", "mlp_out"]


def test_transformer_bridge_activation_patching_matches_hooked_transformer(tiny_gpt2_dir):
    """The bridge runs full forwards (no prefix or suffix reuse, full logits); the numbers must not change."""
    from pathpatch.models import Task

    hooked, bridge = load_model(tiny_gpt2_dir), load_model(tiny_gpt2_dir, backend="bridge")
    g = torch.Generator().manual_seed(0)
    tokens = lambda: torch.randint(0, hooked.cfg.d_vocab, (3, 6), generator=g)  # noqa: E731
    task = Task("tiny", tokens(), tokens(), tokens()[:, :1], tokens()[:, :1], torch.tensor([5]))
    for act in ("z", "resid_pre"):
        a, b = activation_patch(hooked, task, act, per_pos=True, config=DENOISE), activation_patch(bridge, task, act, per_pos=True, config=DENOISE)
        torch.testing.assert_close(a.values, b.values, atol=1e-5, rtol=0)


def test_prompts_of_several_lengths_are_refused_naming_the_lengths_and_the_fix(random_model):
    """Activation patching indexes its values by position, so a task of several prompt lengths cannot be one table."""
    from pathpatch.errors import InputError
    from pathpatch.task.groups import Prompt, from_prompts

    def prompt(length: int) -> Prompt:
        tokens = torch.arange(length) % 32
        return Prompt(tokens, tokens.flip(0), torch.tensor([1]), torch.tensor([2]), torch.tensor([length - 1]))

    task = from_prompts("mixed", [prompt(5), prompt(6), prompt(5)])
    with pytest.raises(InputError, match=r"'mixed': the prompts have 2 shapes \(lengths 5, 6\); activation patching .* "
                                         r"patch edges instead \(patch_edges handles mixed lengths\)"):
        activation_patch(random_model, task, "z")
