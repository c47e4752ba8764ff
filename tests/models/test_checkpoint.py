"""TransformerLens checkpoints, weights files with a config, model factories, and code that must never run."""

import json
import logging
import os
import shutil
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.models import load_model, save_model
from pathpatch.models.hook_flags import enable_patching_hooks
from tests.conftest import make_random_model

TOKENS = torch.tensor([[1, 5, 2, 7, 3, 9], [4, 4, 0, 31, 8, 6]])
ATTN_ONLY = dict(attn_only=True, normalization_type=None, d_mlp=None, act_fn=None, seed=1)
FACTORY_SOURCE = """
from transformer_lens import HookedTransformer, HookedTransformerConfig

def make_model():
    cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=8, d_head=4, n_ctx=16, d_vocab=32,
                                  attn_only=True, seed=3)
    return HookedTransformer(cfg).train()

def not_a_model():
    return 42
"""


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS)


def patchable(model: HookedTransformer) -> HookedTransformer:
    """The model with the hooks load_model switches on, so that both compute along the same path."""
    return enable_patching_hooks(model)


def write_tl_folder(folder, model, weights="model.pt", extra_config=None, state=None):
    """Write config.json as model.cfg.to_dict() gives it (dtype as 'torch.float32') and a torch state dict."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {**model.cfg.to_dict(), **(extra_config or {})}
    (folder / "config.json").write_text(json.dumps(config, default=str))
    torch.save(model.state_dict() if state is None else state, folder / weights)
    return folder


def tiny_tokenizer(folder):
    """A word-level tokenizer over 12 words, saved to ``folder`` and read back as Hugging Face reads any."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    words = ["<bos>", "<unk>", "Today", "it", "is", "Monday", "so", "tomorrow", "Tuesday", "if", "then", "."]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<bos>", unk_token="<unk>")
    tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.mark.parametrize("overrides", [{}, ATTN_ONLY], ids=["layernorm-mlp", "attn-only-no-norm"])
def test_save_model_round_trip_keeps_logits(tmp_path, overrides):
    model = patchable(make_random_model(**overrides))
    loaded = load_model(save_model(model, tmp_path / "ckpt"))
    assert isinstance(loaded, HookedTransformer) and not loaded.training
    assert (loaded.cfg.attn_only, loaded.cfg.normalization_type) == (model.cfg.attn_only, model.cfg.normalization_type)
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-6, rtol=0)


def test_saved_weights_leave_out_derived_buffers(tmp_path):
    model = make_random_model()
    saved = load_file(save_model(model, tmp_path) / "model.safetensors")
    assert "blocks.0.attn.mask" in model.state_dict()
    assert not [key for key in saved if key.endswith((".mask", ".IGNORE"))]
    assert set(saved) == {key for key in model.state_dict() if not key.endswith((".mask", ".IGNORE"))}
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float32"


@pytest.mark.parametrize("tokenizer_files", ["as saved", "tokenizer.json only"])
def test_round_trip_keeps_tokenizer(tmp_path, tokenizer_files):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=8, d_head=4, d_mlp=16, n_ctx=16, d_vocab=12,
                                      act_fn="relu", normalization_type="LN", seed=2)
        model = patchable(HookedTransformer(cfg, tokenizer=tiny_tokenizer(tmp_path / "tokenizer")).eval())
    folder = save_model(model, tmp_path / "ckpt")
    assert (folder / "tokenizer.json").is_file()
    if tokenizer_files == "tokenizer.json only":
        (folder / "tokenizer_config.json").unlink()
    loaded = load_model(folder)
    text = "Today it is Monday so tomorrow it is"
    assert loaded.to_tokens(text).tolist() == model.to_tokens(text).tolist() == [[0, 2, 3, 4, 5, 6, 7, 3, 4]]
    assert loaded.to_string(loaded.to_tokens(text)[0, 1:]) == text
    with torch.no_grad():
        torch.testing.assert_close(loaded(text), model(text), atol=1e-6, rtol=0)


def test_tokenizer_named_in_config_but_not_cached_is_left_out(tmp_path, caplog):
    model = patchable(make_random_model())
    write_tl_folder(tmp_path, model, extra_config={"tokenizer_name": "pathpatch-tests/no-such-tokenizer"})
    with caplog.at_level(logging.WARNING, logger="pathpatch.models.checkpoint"):
        loaded = load_model(tmp_path)
    assert loaded.tokenizer is None and "'pathpatch-tests/no-such-tokenizer' is not available offline" in caplog.text
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-6, rtol=0)


def test_pt_state_dict_folder_loads(tmp_path):
    model = patchable(make_random_model())
    loaded = load_model(write_tl_folder(tmp_path, model))
    assert loaded.cfg.use_split_qkv_input and loaded.cfg.use_hook_mlp_in
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-6, rtol=0)


def test_older_attention_buffers_are_replaced(tmp_path):
    model = patchable(make_random_model())
    state = {key: value for key, value in model.state_dict().items() if not key.endswith((".mask", ".IGNORE"))}
    for layer in (0, 1, 5):  # an older n_ctx, a float IGNORE, and a layer this model does not have
        state[f"blocks.{layer}.attn.mask"] = torch.tril(torch.ones(32, 32, dtype=torch.bool))
        state[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-1e5)
    loaded = load_model(write_tl_folder(tmp_path, model, state=state))
    torch.testing.assert_close(loaded.blocks[0].attn.mask, model.blocks[0].attn.mask, atol=0, rtol=0)
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-6, rtol=0)


def test_nested_state_dict_loads(tmp_path):
    model = patchable(make_random_model())
    loaded = load_model(write_tl_folder(tmp_path, model, state={"state_dict": model.state_dict(), "step": 7}))
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-6, rtol=0)


def test_unknown_config_keys_are_named_in_one_warning(tmp_path):
    model = patchable(make_random_model())
    write_tl_folder(tmp_path, model, extra_config={"junk_key": 1, "trained_on": "weekdays"})
    with pytest.warns(UserWarning, match="junk_key, trained_on") as record:
        loaded = load_model(tmp_path)
    assert len([w for w in record if "HookedTransformerConfig does not take" in str(w.message)]) == 1
    assert loaded.cfg.dtype == torch.float32
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-6, rtol=0)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("config_kind", ["path", "dict", "object"])
def test_weights_file_with_config(tmp_path, suffix, config_kind):
    model = patchable(make_random_model(**ATTN_ONLY))
    weights = tmp_path / f"weights{suffix}"
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, weights) if suffix == ".safetensors" else torch.save(state, weights)
    (tmp_path / "cfg.json").write_text(json.dumps(model.cfg.to_dict(), default=str))
    config = {"path": str(tmp_path / "cfg.json"), "dict": dict(model.cfg.to_dict()), "object": model.cfg}[config_kind]
    loaded = load_model(weights, config=config)
    assert loaded is not model and loaded.cfg.use_split_qkv_input
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-6, rtol=0)


def test_weights_file_without_config_is_refused(tmp_path):
    torch.save(make_random_model().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"weights\.pt is a weights file without a config; pass config="):
        load_model(tmp_path / "weights.pt")


def test_config_for_a_bundled_model_is_refused():
    with pytest.raises(ValueError, match="config= was given for the bundled model 'permute'"):
        load_model("permute", config={"d_model": 8})


def test_factory_file_is_run_and_logged(tmp_path, caplog):
    source = tmp_path / "my_models.py"
    source.write_text(FACTORY_SOURCE)
    with caplog.at_level(logging.WARNING, logger="pathpatch.models.loading"):
        model = load_model(f"{source}:make_model")
    assert [r.getMessage() for r in caplog.records] == [f"running model factory make_model from {source.resolve()}"]
    assert not model.training and model.cfg.use_split_qkv_input and model.cfg.seed == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = patchable(HookedTransformer(HookedTransformerConfig(
            n_layers=2, n_heads=2, d_model=8, d_head=4, n_ctx=16, d_vocab=32, attn_only=True, seed=3)).eval())
    torch.testing.assert_close(logits(model), logits(expected), atol=1e-6, rtol=0)


def test_factory_module_gets_the_device(tmp_path, monkeypatch, caplog):
    source = FACTORY_SOURCE.replace("make_model():", "make_model(device):").replace("seed=3)", "seed=3, device=device)")
    (tmp_path / "pathpatch_test_factories.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with caplog.at_level(logging.WARNING, logger="pathpatch.models.loading"):
            model = load_model("pathpatch_test_factories:make_model", device="cpu")
    finally:
        sys.modules.pop("pathpatch_test_factories", None)
    assert str(tmp_path / "pathpatch_test_factories.py") in caplog.text
    assert model.cfg.device == "cpu" and model.cfg.n_layers == 2


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("{tmp}/absent.py:make_model", FileNotFoundError, r"absent\.py:make_model'.*does not exist"),
        ("{tmp}/my_models.py:nope", ValueError, "has no function 'nope'; it defines make_model, not_a_model"),
        ("{tmp}/my_models.py:not_a_model", TypeError, "returned a value of type int, which is not a TransformerLens"),
        ("pathpatch.models.zoo:load_bundled", TypeError, "load_bundled' cannot be called with only device= .*'name'"),
        ("no_such_pkg_xyz.models:make", ValueError, "no module 'no_such_pkg_xyz.models' on sys.path"),
    ],
)
def test_factory_errors_name_the_spec(tmp_path, spec, error, match):
    (tmp_path / "my_models.py").write_text(FACTORY_SOURCE)
    with pytest.raises(error, match=match):
        load_model(spec.format(tmp=tmp_path))


@pytest.mark.parametrize("name", ["C:model", "permutes", "ckpt/v1.pt"])
def test_names_that_are_not_factories_or_files_are_unknown(name):
    with pytest.raises(KeyError, match=r"Unknown model .*file\.py:function"):
        load_model(name)


def test_existing_folder_with_colon_is_a_checkpoint_not_a_factory(tmp_path):
    model = patchable(make_random_model())
    loaded = load_model(str(save_model(model, tmp_path / "ckpt:v1")))
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-6, rtol=0)


class RunsCode:
    """Unpickling this makes a directory: the stand-in for arbitrary code in a weights file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("form", ["folder", "weights-file"])
def test_pickle_that_runs_code_is_refused(tmp_path, form):
    model, marker = make_random_model(), tmp_path / "code-ran"
    state = {**model.state_dict(), "embed.W_E": RunsCode(marker)}
    folder = write_tl_folder(tmp_path / "ckpt", model, weights="evil.pt", state=state)
    spec, config = (folder, None) if form == "folder" else (folder / "evil.pt", folder / "config.json")
    with pytest.raises(ValueError, match=r"evil\.pt is not a plain state dict.*never runs code"):
        load_model(spec, config=config)
    assert not marker.exists()


def test_mismatched_shapes_are_listed(tmp_path):
    model = make_random_model()
    write_tl_folder(tmp_path, model, extra_config={"d_model": 16, "d_head": 8})
    wrong_shape = r"do not fit the config \(wrong shape: .*embed\.W_E \(32, 8\) \(config wants \(32, 16\)\)"
    with pytest.raises(ValueError, match=wrong_shape):
        load_model(tmp_path)


def test_missing_keys_are_listed(tmp_path):
    model = make_random_model()
    state = {key: value for key, value in model.state_dict().items() if key != "unembed.W_U"}
    write_tl_folder(tmp_path, model, state=state)
    with pytest.raises(ValueError, match=r"missing: unembed\.W_U\)"):
        load_model(tmp_path)


def test_checkpoint_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(make_random_model().cfg.to_dict(), default=str))
    with pytest.raises(FileNotFoundError, match="HookedTransformerConfig fields but no weights"):
        load_model(tmp_path)


def test_two_pt_files_are_refused(tmp_path):
    model = make_random_model()
    write_tl_folder(tmp_path, model, weights="a.pt")
    torch.save(model.state_dict(), tmp_path / "b.pt")
    with pytest.raises(ValueError, match=r"holds 2 weights files \(a\.pt, b\.pt\); keep one"):
        load_model(tmp_path)


def test_bridge_backend_is_refused_for_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="backend='hooked'"):
        load_model(save_model(make_random_model(), tmp_path), backend="bridge")


def test_save_model_refuses_subclasses(tmp_path):
    from pathpatch.models.continuous import ContinuousInputTransformer

    cfg = make_random_model().cfg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = ContinuousInputTransformer(cfg)
    with pytest.raises(TypeError, match="got a ContinuousInputTransformer"):
        save_model(model, tmp_path)
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("model_type", ["gpt2", "evil-gpt"])
def test_hf_auto_map_code_never_runs(tiny_gpt2_dir, tmp_path, model_type):
    folder, marker = tmp_path / "hf", tmp_path / "code-ran"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    for name, key, target in [("config.json", "AutoModelForCausalLM", "evil.Model"),
                              ("tokenizer_config.json", "AutoTokenizer", ["evil.Tokenizer", None])]:
        config = json.loads((folder / name).read_text())
        config["auto_map"] = {key: target, **({"AutoConfig": "evil.Config"} if name == "config.json" else {})}
        config["model_type"] = model_type if name == "config.json" else config.get("model_type")
        (folder / name).write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    if model_type == "gpt2":
        model = load_model(folder)
        assert model.cfg.n_layers == 2 and model.to_tokens("Today it is").shape == (1, 4)
    else:
        with pytest.raises(ValueError, match="never runs a folder's own Python"):
            load_model(folder)
    assert not marker.exists()
