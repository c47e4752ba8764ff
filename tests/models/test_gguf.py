"""GGUF files: SmolLM2-135M-Instruct (Q4_1) as a HookedTransformer, checked against the file and transformers.

The model is loaded once (``smollm2_model``, about 30 s); the Hugging Face reference model once more in
the one test that compares logits (about 25 s). Both skip where the GGUF or the gguf package is absent.
"""

import random

import einops
import numpy as np
import pytest
import torch

from pathpatch.models import load_model, save_model

gguf = pytest.importorskip("gguf", reason="reading GGUF files needs pip install 'pathpatch[gguf]'")

SENTENCES = [
    "The cat sat on the mat and looked out of the window.",
    "Paris is the capital and largest city of France.",
    "She opened the door and walked into the kitchen to make some tea.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The children played in the park until the sun went down.",
]


@pytest.fixture(scope="module")
def reader(smollm2_gguf):
    return gguf.GGUFReader(smollm2_gguf)


def dequantized(reader, name: str) -> torch.Tensor:
    """The tensor ``name`` straight from the file, dequantized: [rows, columns] as in PyTorch's Linear."""
    tensor = next(t for t in reader.tensors if t.name == name)
    return torch.from_numpy(np.array(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32))


def unpermute_rotary_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's ``permute``: it stores each head's rows as interleaved pairs instead of two halves."""
    return einops.rearrange(weight, "(head half pair) d_model -> (head pair half) d_model", head=n_heads, pair=2)


def header(reader, key: str) -> int | float:
    """A number from the file's header (as ``ReaderField.contents()`` reads it, which gguf<0.16 lacks)."""
    field = reader.get_field(key)
    return field.parts[field.data[0]][0].item()


def test_config_matches_the_gguf_header(smollm2_model, reader):
    cfg = smollm2_model.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.n_key_value_heads) == (30, 9, 3)
    assert (cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.d_vocab) == (576, 64, 1536, 49152)
    assert cfg.normalization_type == "RMS" and cfg.gated_mlp and cfg.act_fn == "silu"
    assert cfg.positional_embedding_type == "rotary" and cfg.rotary_base == header(reader, "llama.rope.freq_base")
    assert cfg.rotary_base == 100000
    assert cfg.n_layers == header(reader, "llama.block_count") and cfg.n_ctx == header(reader, "llama.context_length")
    assert cfg.dtype == torch.float32 and cfg.use_split_qkv_input and cfg.use_hook_mlp_in


def test_to_tokens_prepends_the_gguf_bos_token(smollm2_model, reader):
    bos = header(reader, "tokenizer.ggml.bos_token_id")
    assert smollm2_model.cfg.default_prepend_bos
    assert smollm2_model.to_tokens("hi")[0, 0].item() == bos == 1
    assert smollm2_model.to_tokens("hi", prepend_bos=False).tolist() == [[6004]]
    assert smollm2_model.to_str_tokens("2024", prepend_bos=False) == ["2", "0", "2", "4"]


def test_embedding_and_norms_equal_the_dequantized_file(smollm2_model, reader):
    torch.testing.assert_close(smollm2_model.W_E, dequantized(reader, "token_embd.weight"), atol=1e-6, rtol=0)
    torch.testing.assert_close(smollm2_model.ln_final.w, dequantized(reader, "output_norm.weight"), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        smollm2_model.blocks[3].ln2.w, dequantized(reader, "blk.3.ffn_norm.weight"), atol=1e-6, rtol=0
    )


def test_mlp_weights_equal_the_dequantized_file(smollm2_model, reader):
    down = dequantized(reader, "blk.3.ffn_down.weight")  # [d_model d_mlp]
    torch.testing.assert_close(smollm2_model.blocks[3].mlp.W_out, down.T, atol=1e-6, rtol=0)
    gate = dequantized(reader, "blk.3.ffn_gate.weight")  # [d_mlp d_model]
    torch.testing.assert_close(smollm2_model.blocks[3].mlp.W_gate, gate.T, atol=1e-6, rtol=0)


def test_query_and_key_weights_equal_the_file_with_rotary_rows_unpermuted(smollm2_model, reader):
    attn = smollm2_model.blocks[0].attn
    query = unpermute_rotary_rows(dequantized(reader, "blk.0.attn_q.weight"), 9)  # [(head d_head) d_model]
    key = unpermute_rotary_rows(dequantized(reader, "blk.0.attn_k.weight"), 3)
    rows = "(head d_head) d_model -> head d_model d_head"
    torch.testing.assert_close(attn.W_Q, einops.rearrange(query, rows, head=9), atol=1e-6, rtol=0)
    torch.testing.assert_close(attn._W_K, einops.rearrange(key, rows, head=3), atol=1e-6, rtol=0)
    raw = einops.rearrange(dequantized(reader, "blk.0.attn_q.weight"), rows, head=9)
    assert (attn.W_Q - raw).abs().max() > 0.01, "the file's rows are permuted; the model's must not be"


def test_logits_equal_the_hugging_face_model(smollm2_model, smollm2_gguf):
    from transformers import AutoModelForCausalLM

    hf_model = AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32, local_files_only=True
    ).eval()
    assert type(hf_model).__name__ == "LlamaForCausalLM"
    tokens = smollm2_model.to_tokens(SENTENCES[0])
    with torch.no_grad():
        expected = hf_model(tokens).logits
        ours = smollm2_model(tokens)
    assert ours.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_it_is_a_working_language_model(smollm2_model):
    def loss(text: str) -> float:  # without BOS, as llama.cpp reads it (add_bos_token is false in this file)
        with torch.no_grad():
            return smollm2_model(smollm2_model.to_tokens(text, prepend_bos=False), return_type="loss").item()

    shuffle = random.Random(0)
    plain = np.mean([loss(text) for text in SENTENCES])
    shuffled = np.mean([loss(" ".join(shuffle.sample(text.split(), len(text.split())))) for text in SENTENCES])
    assert plain < 4 and shuffled > plain + 2, (plain, shuffled)
    with torch.no_grad():
        logits = smollm2_model(smollm2_model.to_tokens("The capital of France is"))
    assert smollm2_model.to_string(logits[0, -1].argmax()) == " Paris"


def test_saved_checkpoint_loads_back_with_same_tokens_and_logits(smollm2_model, tmp_path):
    folder = save_model(smollm2_model, tmp_path / "smollm2")
    loaded = load_model(folder)
    texts = ["The capital of France is", "Digits 12345 split one per token"]
    tokens = smollm2_model.to_tokens(texts)
    assert torch.equal(loaded.to_tokens(texts), tokens) and tokens[0, 0].item() == 1
    assert torch.equal(loaded.to_tokens("hi", prepend_bos=False), smollm2_model.to_tokens("hi", prepend_bos=False))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), smollm2_model(tokens), atol=0, rtol=0)


def write_gguf(path, arch: str, tensor: np.ndarray) -> None:
    """Write a tiny GGUF file with one tensor, as llama.cpp's writer does."""
    writer = gguf.GGUFWriter(path, arch=arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_other_architectures_are_refused_by_name(tmp_path):
    path = tmp_path / "tiny-mamba.gguf"
    write_gguf(path, "mamba", np.zeros((4, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"tiny-mamba\.gguf holds a 'mamba' model .*Llama family only \('llama'\)"):
        load_model(path)


def test_tensors_gguf_cannot_dequantize_are_refused(tmp_path):
    path = tmp_path / "ints.GGUF"
    write_gguf(path, "llama", np.zeros((4, 8), dtype=np.int32))
    with pytest.raises(ValueError, match=r"tensor 'token_embd.weight' is stored as I32, which .* cannot dequantize"):
        load_model(str(path))


def test_missing_and_malformed_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"GGUF file .*nope\.gguf does not exist"):
        load_model(tmp_path / "nope.gguf")
    (tmp_path / "text.gguf").write_text("not a model\n")
    with pytest.raises(ValueError, match=r"text\.gguf is not a readable GGUF file \(GGUF magic invalid\)"):
        load_model(tmp_path / "text.gguf")


def test_gguf_file_refuses_config_and_bridge(tmp_path):
    path = tmp_path / "m.gguf"
    with pytest.raises(ValueError, match="GGUF file .* has its own config"):
        load_model(path, config={"d_model": 4})
    with pytest.raises(ValueError, match="loads as a HookedTransformer only"):
        load_model(path, backend="bridge")


def test_missing_gguf_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "gguf", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'pathpatch\[gguf\]'"):
        load_model(tmp_path / "m.gguf")


def test_cli_names_a_missing_gguf_file(tmp_path, capsys):
    from pathpatch.cli import main

    assert main(["save", "--model", str(tmp_path / "nope.gguf"), str(tmp_path / "out")]) == 2
    assert "nope.gguf does not exist" in capsys.readouterr().err
