"""load_model: bundled names, model objects, local Hugging Face directories, and clear errors."""

import json
import shutil

import pytest
import torch

from pathpatch.models import build_task, load_model


def hf_logits(folder, tokens):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        return model(tokens).logits


def test_hf_directory_logits_match_hugging_face(tiny_gpt2_dir):
    model = load_model(tiny_gpt2_dir)
    tokens = model.to_tokens(["Today it is Monday so tomorrow it is", "If today is Friday then tomorrow it is"])
    with torch.no_grad():
        ours = model(tokens)
    torch.testing.assert_close(ours, hf_logits(tiny_gpt2_dir, tokens), atol=1e-5, rtol=0)


def test_hf_directory_has_patching_hooks(tiny_gpt2_dir):
    model = load_model(tiny_gpt2_dir)
    _, cache = model.run_with_cache(model.to_tokens("Today it is Monday"))
    assert cache["blocks.1.attn.hook_z"].shape[-2:] == (2, 8)
    assert cache["blocks.1.hook_q_input"].shape[-2:] == (2, 16)
    assert cache["blocks.0.hook_v_input"].shape[-2] == 2
    assert "blocks.1.hook_mlp_in" in cache


def test_bridge_backend_matches_hugging_face(tiny_gpt2_dir):
    model = load_model(tiny_gpt2_dir, backend="bridge")
    assert type(model).__name__ == "TransformerBridge"
    tokens = model.to_tokens("Yesterday it was Sunday so today it is")
    with torch.no_grad():
        ours = model(tokens)
    torch.testing.assert_close(ours, hf_logits(tiny_gpt2_dir, tokens), atol=1e-5, rtol=0)


def test_model_objects_are_returned_as_is(random_model):
    assert load_model(random_model) is random_model


def test_weekday_task_on_local_gpt2(tiny_gpt2_dir):
    model = load_model(tiny_gpt2_dir)
    task = build_task("weekday", n=14, seed=0, model=model)
    task.check_model(model)
    monday, tuesday = (model.to_single_token(" " + d) for d in ("Monday", "Tuesday"))
    first_prompt = model.to_string(task.clean[0, 1:])
    assert first_prompt == "Today it is Monday so tomorrow it is"
    assert task.answers[0, 0] == tuesday and monday in task.clean[0]
    assert (task.answers != task.wrong_answers).all()
    assert ((task.clean != task.corrupt).sum(-1) == 1).all(), "corrupt prompts differ in the day only"


def test_weekday_needs_a_tokenizer():
    with pytest.raises(ValueError, match="needs a model with a tokenizer"):
        build_task("weekday", n=4)


@pytest.mark.parametrize("name", ["permutes", "gpt2-small"])
def test_unknown_name_lists_bundled_models(name):
    with pytest.raises(KeyError, match="permute, sorted-list, trigrams, recurrence"):
        load_model(name)


def test_task_only_name_says_it_has_no_model():
    with pytest.raises(KeyError, match="task without a bundled model"):
        load_model("weekday")


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)


def test_directory_without_weights_is_refused(tiny_gpt2_dir, tmp_path):
    shutil.copy(tiny_gpt2_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_model(tmp_path)


def test_file_path_is_refused(tiny_gpt2_dir):
    with pytest.raises(FileNotFoundError, match="is a file"):
        load_model(tiny_gpt2_dir / "config.json")


def test_weights_not_matching_config_are_refused(tiny_gpt2_dir, tmp_path):
    shutil.copytree(tiny_gpt2_dir, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config["n_embd"] = 32
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not (fit|match) its config.json"):
        load_model(tmp_path)


def test_unsupported_architecture_is_named(tiny_gpt2_dir, tmp_path):
    shutil.copytree(tiny_gpt2_dir, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["MadeUpForCausalLM"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="MadeUpForCausalLM"):
        load_model(tmp_path)


def test_non_transformer_lens_module_is_refused():
    with pytest.raises(TypeError, match="not a TransformerLens model"):
        load_model(torch.nn.Linear(2, 2))
