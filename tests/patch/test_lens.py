"""Direct logit attribution and the logit lens against TransformerLens' own ActivationCache, on LN and RMS models."""

import copy
import warnings

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.models.hook_flags import enable_patching_hooks
from pathpatch.patch.lens import dla_components, dla_per_prompt, find_component, first_look, summarize
from pathpatch.task.groups import TaskGroups
from pathpatch.task.task import Task
from tests.conftest import make_random_model


def randomize(model: HookedTransformer, seed: int = 1) -> HookedTransformer:
    """A copy with random norm weights and biases (TransformerLens starts them at 1 and 0), so every bias term is tested."""
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith((".w", ".b", "b_O", "b_U")):
                param.copy_(torch.randn(param.shape, generator=g) * 0.3 + (1.0 if name.endswith(".w") else 0.0))
    return model


def rms_gqa_model() -> HookedTransformer:
    """A random Llama-shaped model: RMSNorm, rotary, gated SiLU MLP, 4 query heads sharing 2 key/value heads, no biases."""
    cfg = HookedTransformerConfig(n_layers=2, n_heads=4, n_key_value_heads=2, d_model=16, d_head=4, d_mlp=32, n_ctx=16, d_vocab=40,
                                  act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=4,
                                  gated_mlp=True, seed=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg).eval()
    return randomize(enable_patching_hooks(model), seed=2)


def random_task(d_vocab: int, n: int = 5, n_pos: int = 7, positions=(3, 6), seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    tokens = lambda *shape: torch.randint(0, d_vocab, shape, generator=g)  # noqa: E731
    answers = tokens(n, len(positions))
    wrong = (answers + 1 + tokens(n, len(positions)) % (d_vocab - 1)) % d_vocab
    return Task("random", tokens(n, n_pos), tokens(n, n_pos), answers, wrong, torch.tensor(positions))


def reference(model: HookedTransformer, task: Task) -> dict[str, torch.Tensor]:
    """The same numbers from TransformerLens' cache methods and a hand-built direction, per prompt."""
    logits, cache = model.run_with_cache(task.clean)
    pos = task.positions
    W_U, b_U = model.W_U, model.b_U
    unembed = W_U.T[task.answers] - W_U.T[task.wrong_answers]  # [batch pos d_model]
    weight = getattr(model.ln_final, "w", torch.ones(model.cfg.d_model))
    shift = getattr(model.ln_final, "b", None)
    bias = b_U[task.answers] - b_U[task.wrong_answers] + (0 if shift is None else unembed @ shift)  # [batch pos]
    read = lambda stack: (stack[:, :, pos] * weight * unembed).sum(-1).mean(-1)  # noqa: E731  [x batch pos d_model] -> [x batch]
    heads = cache.stack_head_results(layer=-1, apply_ln=True)
    layers, labels = cache.decompose_resid(layer=-1, apply_ln=True, return_labels=True)
    if labels[1] == "pos_embed":
        layers, labels = torch.cat([layers[:1] + layers[1:2], layers[2:]]), ["embed", *labels[2:]]
    accumulated = cache.accumulated_resid(layer=-1, incl_mid=True)
    final = read(cache.apply_ln_to_stack(accumulated, layer=-1)) + bias.mean(-1)
    own = (cache.accumulated_resid(layer=-1, incl_mid=True, apply_ln=True)[:, :, pos] * unembed).sum(-1) + b_U[task.answers] - b_U[task.wrong_answers]
    return {"heads": read(heads), "layers": read(layers), "bias": bias.mean(-1), "final": final, "own": own.mean(-1),
            "logit_diff": task.score_per_prompt(logits)}


def ours(look, kind: str) -> torch.Tensor:
    rows = look.dla[look.dla["kind"] == kind]
    return torch.tensor(rows.pivot(index="component", columns="prompt", values="dla").loc[list(dict.fromkeys(rows["component"]))].to_numpy())


@pytest.fixture(scope="module")
def ln_model(random_model):
    return randomize(random_model)


@pytest.fixture(scope="module")
def rms_model():
    return rms_gqa_model()


@pytest.mark.parametrize("which", ["random_model", "ln_model", "rms_model"])
def test_dla_and_lens_match_transformer_lens_cache_methods(which, request):
    model = request.getfixturevalue(which)
    task = random_task(model.cfg.d_vocab)
    look, ref = first_look(model, task), reference(model, task)
    layer_kinds = look.dla[look.dla["kind"].isin(["embed", "attn", "mlp"])].drop_duplicates("component")["component"].tolist()
    assert layer_kinds == ["embed", "ATTN0", "MLP0", "ATTN1", "MLP1"]
    torch.testing.assert_close(ours(look, "head"), ref["heads"].double(), atol=1e-5, rtol=0)
    steps = torch.cat([ours(look, "embed"), torch.stack([ours(look, k)[i] for i in range(2) for k in ("attn", "mlp")])])
    torch.testing.assert_close(steps, ref["layers"].double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours(look, "bias")[0], ref["bias"].double(), atol=1e-5, rtol=0)
    for column, key in (("final_scale", "final"), ("own_scale", "own")):
        lens = torch.tensor(look.lens.pivot(index="stage", columns="prompt", values=column).to_numpy())
        torch.testing.assert_close(lens, ref[key].double(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("which", ["ln_model", "rms_model"])
def test_components_and_bias_add_up_to_the_logit_difference(which, request):
    model = request.getfixturevalue(which)
    task = random_task(model.cfg.d_vocab)
    look = first_look(model, task)
    total = look.dla[look.dla["kind"].isin(["embed", "attn", "mlp", "bias"])].groupby("prompt")["dla"].sum()
    clean = torch.tensor(look.logit_diff["clean"].to_numpy())
    torch.testing.assert_close(torch.tensor(total.to_numpy()), clean, atol=1e-4, rtol=0)
    torch.testing.assert_close(clean, task.score_per_prompt(model(task.clean)).double(), atol=1e-5, rtol=0)
    last = look.lens[look.lens["stage"] == look.lens["stage"].max()]
    torch.testing.assert_close(torch.tensor(last[["final_scale", "own_scale"]].to_numpy()), clean[:, None].expand(-1, 2), atol=1e-4, rtol=0)


def test_attention_layer_is_its_heads_plus_the_output_bias(ln_model):
    task = random_task(ln_model.cfg.d_vocab)
    look = first_look(ln_model, task)
    _, cache = ln_model.run_with_cache(task.clean)
    for layer in range(2):
        b_O = ln_model.blocks[layer].attn.b_O.expand(*task.clean.shape, -1)  # [batch pos d_model]
        direction = (ln_model.W_U.T[task.answers] - ln_model.W_U.T[task.wrong_answers]) * ln_model.ln_final.w
        scaled = cache.apply_ln_to_stack(b_O[None], layer=-1)[0][:, task.positions]  # [batch pos d_model]
        expected = (scaled * direction).sum(-1).mean(-1).double()
        heads = ours(look, "head")[2 * layer: 2 * layer + 2].sum(0)
        torch.testing.assert_close(ours(look, "attn")[layer] - heads, expected, atol=1e-5, rtol=0)


def test_prompt_groups_join_in_task_order_and_match_single_runs(rms_model):
    short, long = random_task(40, n=3, n_pos=5, positions=(4,), seed=1), random_task(40, n=2, n_pos=8, positions=(7,), seed=2)
    look = first_look(rms_model, TaskGroups("mixed", (short, long)), batch_size=2)
    alone = [first_look(rms_model, t).dla for t in (short, long)]
    expected = torch.cat([torch.tensor(a.pivot(index="prompt", columns="component", values="dla").to_numpy()) for a in alone])
    got = torch.tensor(look.dla.pivot(index="prompt", columns="component", values="dla").to_numpy())
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert look.logit_diff["prompt"].tolist() == [0, 1, 2, 3, 4] and look.logit_diff["corrupt"].notna().all()


def test_dla_per_prompt_is_the_table_column(ln_model):
    task = random_task(ln_model.cfg.d_vocab)
    look = first_look(ln_model, task, corrupt=False)
    for name in ("L1H0", "ATTN0", "MLP1", "embed"):
        expected = look.dla[look.dla["component"] == name]["dla"].to_numpy()
        torch.testing.assert_close(dla_per_prompt(ln_model, task, name).double(), torch.tensor(expected), atol=1e-6, rtol=0)


def test_summary_tables_have_fixed_columns_and_bracket_the_mean(ln_model):
    look = first_look(ln_model, random_task(ln_model.cfg.d_vocab, n=12))
    layers, heads, lens = look.dla_table(), look.dla_table(("head",)), look.lens_table()
    assert list(layers.columns) == ["component", "kind", "layer", "head", "mean", "std", "ci_low", "ci_high"]
    assert layers["component"].tolist() == ["embed", "ATTN0", "MLP0", "ATTN1", "MLP1", "bias"]
    assert heads["component"].tolist() == ["L0H0", "L0H1", "L1H0", "L1H1"] and heads["head"].tolist() == [0, 1, 0, 1]
    assert lens["after"].tolist() == ["embed", "ATTN0", "MLP0", "ATTN1", "MLP1"]
    assert lens["resid"].tolist() == ["0_pre", "0_mid", "1_pre", "1_mid", "final_post"]
    for table, prefix in ((layers, ""), (heads, ""), (lens, ""), (lens, "own_")):
        assert ((table[f"{prefix}ci_low"] <= table[f"{prefix}mean"]) & (table[f"{prefix}mean"] <= table[f"{prefix}ci_high"])).all()


def test_bootstrap_intervals_are_the_claims_intervals():
    from pathpatch.claims.checks import bootstrap

    values = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    table = summarize(values, resamples=50, seed=4)
    low, high = bootstrap(lambda idx: float(values[idx, 1].double().mean()), 9, 50, 4)
    assert (table.loc[1, "ci_low"], table.loc[1, "ci_high"]) == pytest.approx((low, high), abs=1e-6)  # checks.bootstrap keeps float32


def test_unknown_component_names_the_spellings():
    model = make_random_model()
    with pytest.raises(KeyError, match="Did you mean 'ATTN1'"):
        find_component(model, "attn1")
    with pytest.raises(KeyError, match="'L0H0'..'L1H1'"):
        find_component(model, "L9H0")
    assert [c.name for c in dla_components(model)][:5] == ["embed", "ATTN0", "L0H0", "L0H1", "MLP0"]


def test_other_metrics_are_refused_with_the_fix(ln_model):
    from dataclasses import replace

    task = replace(random_task(ln_model.cfg.d_vocab), metric="loss")
    with pytest.raises(ValueError, match="scored with 'logit_diff'"):
        first_look(ln_model, task)


def test_attention_only_model_without_norm():
    model = enable_patching_hooks(make_random_model(attn_only=True, normalization_type=None))
    task = random_task(32)
    look = first_look(model, task)
    total = look.dla[look.dla["kind"] != "head"].groupby("prompt")["dla"].sum().to_numpy()
    torch.testing.assert_close(torch.tensor(total), torch.tensor(look.logit_diff["clean"].to_numpy()), atol=1e-4, rtol=0)
    assert look.lens["after"].drop_duplicates().tolist() == ["embed", "ATTN0", "ATTN1"]


@pytest.mark.slow  # the real LM
def test_real_llama_model_adds_up(request):
    """SmolLM2-135M (RMSNorm, RoPE, 9 query / 3 key-value heads): the pieces add up to its logit difference."""
    try:
        model = request.getfixturevalue("smollm2_model")
    except pytest.FixtureLookupError:
        pytest.skip("the smollm2_model fixture is not in tests/conftest.py")
    tokens = model.to_tokens(["Today it is Monday so tomorrow it is"], prepend_bos=True)
    ids = [model.to_single_token(day) for day in (" Tuesday", " Monday")]
    task = Task("weekday", tokens, tokens, torch.tensor([[ids[0]]]), torch.tensor([[ids[1]]]), torch.tensor([tokens.shape[1] - 1]))
    look = first_look(model, task, corrupt=False)
    total = look.dla[look.dla["kind"].isin(["embed", "attn", "mlp", "bias"])]["dla"].sum()
    assert total == pytest.approx(float(look.logit_diff["clean"].iloc[0]), abs=1e-3)
    heads = look.dla[look.dla["kind"] == "head"].groupby("layer")["dla"].sum().to_numpy()
    attn = look.dla[look.dla["kind"] == "attn"]["dla"].to_numpy()
    assert len(heads) == model.cfg.n_layers and abs(heads - attn).max() < 1e-3  # no attention biases in Llama
