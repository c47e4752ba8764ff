"""Bundled seed models: the shipped weights are real, meet their targets, and load correctly."""

import pytest
import torch

from pathpatch.models import build_task, load_model
from pathpatch.models.training import train_seed
from pathpatch.models.zoo import SEEDS, evaluate, get_seed, meets_target, read_card, weights_dir

FRESH_SEED = 2024  # neither the training seed nor the card's evaluation seed


@pytest.fixture(scope="module", params=[pytest.param(s, marks=pytest.mark.slow) if s == "recurrence" else s for s in SEEDS])  # recurrence: seconds per 1024 prompts
def bundled(request):
    return request.param, load_model(request.param)


def test_bundled_model_meets_its_target_on_fresh_data(bundled):
    name, model = bundled
    spec = get_seed(name)
    metrics = evaluate(model, spec, n=256, seed=FRESH_SEED)
    assert meets_target(spec, metrics), f"{name}: {metrics} misses target {spec.target}"


def test_card_records_what_the_weights_measure(bundled):
    name, model = bundled
    spec, card = get_seed(name), read_card(name)
    assert card["config"] == spec.config
    measured = evaluate(model, spec)  # same data as the card: identical numbers
    key = "mse" if spec.continuous else "accuracy"
    assert measured[key] == pytest.approx(card["metrics"][key], rel=1e-4, abs=1e-6)


def test_bundled_config_follows_the_documents():
    cfg = load_model("permute").cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.n_ctx, cfg.d_vocab, cfg.d_vocab_out) == (2, 1, 128, 12, 53, 50)
    assert cfg.attn_only and cfg.normalization_type is None
    assert all(p.abs().max() == 0 for n, p in load_model("permute").named_parameters() if ".b_" in n)
    cfg = load_model("recurrence").cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.act_fn) == (3, 8, 128, 64, 3072, "gelu_new")
    cfg = load_model("trigrams").cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.attn_only) == (1, 1, 32, False)
    cfg = load_model("sorted-list").cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.normalization_type, cfg.attn_only) == (1, 2, "LN", True)


def test_weights_fit_the_size_budget():
    total = sum(p.stat().st_size for p in weights_dir().glob("*.safetensors"))
    assert total <= 20 * 2**20, f"bundled weights take {total / 2**20:.1f} MB, over 20 MB"


@pytest.mark.parametrize("name", ["permute", "sorted-list", "trigrams"])
def test_clean_beats_corrupt_on_the_task(name):
    model, task = load_model(name), build_task(name, n=64, seed=FRESH_SEED)
    task.check_model(model)
    with torch.no_grad():
        clean, corrupt = task.score(model(task.clean)), task.score(model(task.corrupt))
    assert clean > 1.0 and corrupt < -1.0, (clean, corrupt)


def test_recurrence_task_clean_error_is_far_below_corrupt():
    model, task = load_model("recurrence"), build_task("recurrence", n=64, seed=FRESH_SEED)
    with torch.no_grad():
        clean, corrupt = task.score(model(task.clean)), task.score(model(task.corrupt))
    assert clean * 5 < corrupt, (clean, corrupt)


def test_recurrence_model_keeps_transformer_lens_hook_names():
    model, task = load_model("recurrence"), build_task("recurrence", n=2, seed=0)
    logits, cache = model.run_with_cache(task.clean)
    torch.testing.assert_close(cache["hook_embed"], task.clean @ model.W_E)
    assert cache["blocks.2.attn.hook_z"].shape == (2, 13, 8, 64)
    assert cache["blocks.2.hook_v_input"].shape == (2, 13, 8, 128)
    assert logits.shape == (2, 13, 40)


def test_recurrence_model_refuses_token_ids():
    with pytest.raises(ValueError, match="reads float vectors"):
        load_model("recurrence")(torch.zeros(1, 5, dtype=torch.long))


def test_training_is_deterministic():
    spec = SEEDS["permute"]
    a, _ = train_seed(spec, steps=3)
    b, _ = train_seed(spec, steps=3)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert not torch.equal(a.W_E, load_model("permute").W_E)
