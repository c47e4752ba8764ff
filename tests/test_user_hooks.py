"""Models that carry hooks of their own: refused before any patching run, in one line, with exit 2 (and read as they are by the lens)."""

import pytest
import torch

from pathpatch.cli import main
from pathpatch.errors import InputError
from pathpatch.patch.user_hooks import find_user_hooks

# An exercise-style padding mask: cached from the tokens at hook_tokens, applied to every layer's
# attention scores, deleted after the last layer. Stateful across hook points, so runs that start
# mid-model or stack variants on the batch cannot honour it.
FACTORY = '''
import copy

from transformer_lens import HookedTransformer

from pathpatch.models.loading import load_model


def build():
    base = load_model("permute")
    cfg = copy.deepcopy(base.cfg)
    cfg.use_hook_tokens = True
    model = HookedTransformer(cfg, tokenizer=base.tokenizer)
    model.load_state_dict(base.state_dict())

    def mask_cache(tokens, hook):
        hook.ctx["padding_tokens_mask"] = (tokens == 0)[:, None, None, :]

    def mask_apply(attn_scores, hook):
        attn_scores.masked_fill_(model.hook_dict["hook_tokens"].ctx["padding_tokens_mask"], -1e5)
        if hook.layer() == model.cfg.n_layers - 1:
            del model.hook_dict["hook_tokens"].ctx["padding_tokens_mask"]

    for name, point in model.hook_dict.items():
        if name == "hook_tokens":
            point.add_perma_hook(mask_cache)
        elif name.endswith("attn_scores"):
            point.add_perma_hook(mask_apply)
    return model
'''


@pytest.fixture()
def factory(tmp_path) -> str:
    """The ``file.py:build`` spec of the masked permute model."""
    (tmp_path / "masked.py").write_text(FACTORY)
    return f"{tmp_path / 'masked.py'}:build"


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Run the command line; return the exit code and stderr."""
    code = main(argv)
    return code, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("pathpatch ") and ": error: " in line]


def test_discover_refuses_a_model_with_a_permanent_mask_hook_in_one_line(factory, tmp_path, capsys):
    code, err = run(["discover", "--model", factory, "--task", "permute", "--n", "8", "--out", str(tmp_path / "d")], capsys)
    assert code == 2, err
    [line] = error_lines(err)
    assert "permanent forward hook at hook_tokens (build.<locals>.mask_cache at " in line
    assert "blocks.0.attn.hook_attn_scores, blocks.1.attn.hook_attn_scores (build.<locals>.mask_apply" in line
    assert "reset_hooks(including_permanent=True)" in line and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_debug_shows_the_traceback_and_keeps_exit_code_2(factory, tmp_path, capsys):
    code, err = run(["--debug", "discover", "--model", factory, "--task", "permute", "--n", "8", "--out", str(tmp_path / "d")], capsys)
    assert code == 2
    assert "Traceback" in err and "InputError" in err
    assert err.strip().splitlines()[-1].startswith("pathpatch discover: error: The model carries hooks")


def test_activation_patching_refuses_the_masked_model_too(factory):
    from pathpatch.models import build_task
    from pathpatch.models.loading import load_model
    from pathpatch.patch.activation import activation_patch

    with pytest.raises(InputError, match="permanent forward hook at hook_tokens"):
        activation_patch(load_model(factory), build_task("permute", n=4), "resid_pre")


def test_library_discover_raises_input_error_naming_the_hooks(factory):
    from pathpatch.models.loading import load_model
    from pathpatch.pipeline import discover

    with pytest.raises(InputError, match=r"hook_tokens .*mask_cache.*hook_attn_scores .*mask_apply"):
        discover(load_model(factory), "permute", n=8)


def test_plain_torch_hooks_on_submodules_are_refused_with_their_place(random_model, random_task):
    from pathpatch.patch.edges import patch_edges

    def double(module, args):
        return (2 * args[0],)

    handle = random_model.blocks[1].ln1.register_forward_pre_hook(double)
    try:
        with pytest.raises(InputError, match=r"forward pre-hook at blocks\.1\.ln1 \(test_plain_torch_hooks_on_submodules_are_refused_with_their_place"
                                             r"\.<locals>\.double at .*test_user_hooks\.py:\d+\)"):
            patch_edges(random_model, random_task)
    finally:
        handle.remove()
    assert find_user_hooks(random_model) == []


def test_a_model_without_its_hooks_patches_as_the_bundled_one(factory):
    """Once the hooks are removed, the factory's model scores edges exactly as the bundled permute model does."""
    from pathpatch.models import build_task
    from pathpatch.models.loading import load_model
    from pathpatch.patch.edges import patch_edges

    bundled = load_model("permute")
    masked = load_model(factory)
    assert find_user_hooks(bundled) == [] and len(find_user_hooks(masked)) == 3
    masked.reset_hooks(including_permanent=True)
    assert find_user_hooks(masked) == []
    task = build_task("permute", n=8)
    edges = ["L0H0->L1H0.v", "embed->L1H0.q"]
    expected = patch_edges(bundled, task, edges)["score"].to_numpy()
    assert torch.allclose(torch.tensor(patch_edges(masked, task, edges)["score"].to_numpy()), torch.tensor(expected), atol=1e-5)


def test_hooks_pathpatch_adds_during_a_run_are_not_the_users(random_model):
    """Inside ``model.hooks(...)`` a hook is seen (it would be a user's at an engine's entry); after it, none is left."""
    with random_model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x)]):
        [hook] = find_user_hooks(random_model)
        assert (hook.place, hook.kind) == ("blocks.0.hook_resid_pre", "forward hook")
    assert find_user_hooks(random_model) == []


def test_the_lens_reads_a_masked_model_as_it_is(factory):
    """Whole-model reads run the user's hooks as built: the lens works and sees the masked model's logits."""
    from pathpatch.models import build_task
    from pathpatch.models.loading import load_model
    from pathpatch.patch.lens import first_look

    masked = load_model(factory)
    task = build_task("permute", n=8)
    look = first_look(masked, task)
    expected = task.score_per_prompt(masked(task.clean)).float()
    assert torch.allclose(torch.tensor(look.logit_diff["clean"].to_numpy()).float(), expected, atol=1e-4)
