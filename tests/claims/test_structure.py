"""Weight-structure claims (OV rank, QK terms, circles, Fourier frequencies) against NumPy written here,
on models whose weights are set by hand so the answer is known."""

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.claims.checks import Context, check_claims
from pathpatch.claims.hypotheses import Claim, Hypothesis
from pathpatch.errors import InputError
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.graph import ComputeGraph
from pathpatch.task.task import Task

P = 13  # vocabulary: tokens 0..P-1, as a modular-arithmetic model's


def model_with(embed: np.ndarray, d_head: int = 4) -> HookedTransformer:
    """One attention-only layer, no norms, with the given embedding ``[P d_model]`` and seeded random other weights."""
    cfg = HookedTransformerConfig(n_layers=1, n_heads=1, d_model=embed.shape[1], d_head=d_head, n_ctx=6, d_vocab=P, attn_only=True,
                                  normalization_type=None, act_fn="relu", seed=0)
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():
        model.W_E[:] = torch.tensor(embed, dtype=torch.float32)
    return model


def fourier_embedding(frequencies: list[int], noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Token t's vector: cos and sin of 2 pi k t / P for each frequency k, plus Gaussian noise."""
    t = np.arange(P)[:, None]
    columns = [f(2 * np.pi * k * t / P) for k in frequencies for f in (np.cos, np.sin)]
    table = np.concatenate(columns, axis=1)
    table = np.concatenate([table, np.zeros((P, 2))], axis=1)  # two spare dimensions
    return table + noise * np.random.default_rng(seed).normal(size=table.shape)


def run(model: HookedTransformer, kind: str, **params):
    task = Task("t", torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long),
                torch.ones(2, 1, dtype=torch.long), torch.tensor([2]))
    ctx = Context(model, task, None, ComputeGraph.from_model(model), PatchConfig(), 20, 0)
    return check_claims(Hypothesis("h", "m", "t", {}, (Claim("c", kind, params),)), ctx).iloc[0]


def numpy_fourier_share(embed: np.ndarray, frequencies: list[int]) -> float:
    """Share of the squared norm at the frequencies, the constant term left out, by an explicit DFT."""
    t = np.arange(P)
    power = np.zeros(P)
    for k in range(P):
        basis = np.exp(-2j * np.pi * k * t / P)
        power[k] = (np.abs(basis @ embed) ** 2).sum()
    keep = [k for k in range(1, P) if min(k, P - k) in frequencies]
    return power[keep].sum() / power[1:].sum()


def test_fourier_share_finds_the_planted_frequencies_as_numpy_does():
    embed = fourier_embedding([3, 5], noise=0.05)
    model = model_with(embed)
    row = run(model, "fourier", modulus=P, frequencies=[3, 5], min=0.9)
    assert row["value"] == pytest.approx(numpy_fourier_share(embed, [3, 5]), abs=1e-6) and row["verdict"] == "pass"
    wrong = run(model, "fourier", modulus=P, frequencies=[1], min=0.5)
    assert wrong["value"] == pytest.approx(numpy_fourier_share(embed, [1]), abs=1e-6) and wrong["verdict"] == "fail"
    found = run(model, "fourier", modulus=P, report=True)
    assert found["detail"].startswith("strongest frequencies 3 (") or found["detail"].startswith("strongest frequencies 5 (")
    assert {found["detail"].split()[2], found["detail"].split()[4]} == {"3", "5"}, found["detail"]


def test_a_circle_in_token_order_passes_and_a_circle_out_of_order_fails():
    in_order = model_with(fourier_embedding([1], noise=0.01))
    assert run(in_order, "geometry", of="embed", tokens=list(range(P)), shape="circle", min=0.9)["value"] == 1.0
    skipping = model_with(fourier_embedding([2], noise=0.01))  # a circle, but token t sits between t - 6 and t + 6 (mod 13)
    row = run(skipping, "geometry", of="embed", tokens=list(range(P)), shape="circle", min=0.9)
    assert row["value"] == 0.0 and row["verdict"] == "fail"


def test_ov_rank_share_is_numpys_singular_value_share():
    model = model_with(fourier_embedding([1, 2], noise=0.1), d_head=4)
    with torch.no_grad():
        model.blocks[0].attn.W_V[0, :, 1:] = 0.0  # one value direction: the OV circuit has rank 1
    row = run(model, "ov_rank", head="L0H0", top=1, space="residual", min=0.99)
    ov = (model.W_V[0, 0] @ model.W_O[0, 0]).detach().double().numpy()
    s = np.linalg.svd(ov, compute_uv=False) ** 2
    assert row["value"] == pytest.approx(s[0] / s.sum(), abs=1e-9) and row["verdict"] == "pass"
    full = model_with(fourier_embedding([1, 2], noise=0.1), d_head=4)
    vocab = run(full, "ov_rank", head="L0H0", top=2, report=True)
    W_U = full.W_U.detach().double().numpy()
    circuit = full.W_E.detach().double().numpy() @ (full.W_V[0, 0] @ full.W_O[0, 0]).detach().double().numpy() @ (W_U - W_U.mean(1, keepdims=True))
    s = np.linalg.svd(circuit, compute_uv=False) ** 2
    assert vocab["value"] == pytest.approx(s[:2].sum() / s.sum(), abs=1e-6)


def test_a_qk_term_that_points_each_position_at_the_one_before():
    model = model_with(fourier_embedding([1, 2, 3]), d_head=6)
    with torch.no_grad():  # position p queries with e_p, position s keys with e_{s+1}: row p tops at column p - 1
        eye = torch.eye(6)
        attn = model.blocks[0].attn  # the stacked model.W_Q is a copy: set the block's own weights
        model.W_pos[:, :] = torch.cat([torch.zeros(6, model.cfg.d_model - 6), eye], dim=1)
        attn.W_Q[0] = torch.cat([torch.zeros(model.cfg.d_model - 6, 6), eye])
        attn.W_K[0] = torch.cat([torch.zeros(model.cfg.d_model - 6, 6), torch.roll(eye, 1, dims=1)])
    q = model.W_pos.detach().double().numpy() @ model.blocks[0].attn.W_Q[0].detach().double().numpy()
    k = model.W_pos.detach().double().numpy() @ model.blocks[0].attn.W_K[0].detach().double().numpy()
    scores = q @ k.T
    assert [int(np.argmax(scores[p])) for p in (2, 3, 4)] == [1, 2, 3]
    assert run(model, "qk_term", head="L0H0", query="pos", key="pos", pairs=[[2, 1], [3, 2], [4, 3]], min=0.9)["value"] == 1.0
    assert run(model, "qk_term", head="L0H0", query="pos", key="pos", pattern="diagonal", max=0.5)["value"] == 0.0


@pytest.mark.parametrize("params, named", [
    ({"kind": "fourier", "modulus": P, "min": 0.5}, "name the key frequencies"),
    ({"kind": "fourier", "modulus": P, "frequencies": [9], "min": 0.5}, "the frequencies are 1..6"),
    ({"kind": "qk_term", "head": "L0H0", "query": "embed", "key": "pos", "min": 0.5}, "exactly one of pattern"),
    ({"kind": "geometry", "of": "embed", "tokens": [0, 1, 2], "shape": "circle", "min": 0.5}, "at least 4 tokens"),
    ({"kind": "ov_rank", "head": "L0H0", "top": 99, "min": 0.5}, "singular values; give 1.."),
])
def test_impossible_structure_claims_are_refused_naming_the_value(params, named):
    model = model_with(fourier_embedding([1]))
    with pytest.raises(InputError) as err:
        run(model, **params)
    assert named in str(err.value), str(err.value)


def test_grid_fourier_share_of_a_planted_function_is_numpys():
    from pathpatch.claims.structure import grid_fourier_share

    a, b = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
    values = np.stack([np.cos(2 * np.pi * 3 * (a + b) / P) + 0.5 * np.cos(2 * np.pi * 5 * a / P), 0.2 * np.sin(2 * np.pi * 1 * b / P)], -1)
    spectrum = (np.abs(np.fft.fft2(values - values.mean((0, 1)), axes=(0, 1))) ** 2).sum(-1)
    fold = np.minimum(np.arange(P), P - np.arange(P))
    for keys in ([3, 5], [3], [1, 3, 5]):
        allowed = np.isin(fold, [0, *keys])
        expected = spectrum[allowed[:, None] & allowed[None, :]].sum() / spectrum.sum()
        assert grid_fourier_share(torch.tensor(values), keys)[0] == pytest.approx(expected, abs=1e-9)
    assert grid_fourier_share(torch.tensor(values), [1, 3, 5])[0] == pytest.approx(1.0, abs=1e-9)


def test_a_fourier_claim_on_neurons_reads_the_model_over_the_whole_grid():
    from tests.conftest import make_random_model

    model, p = make_random_model(), 5
    pairs = torch.tensor([(x, y) for x in range(p) for y in range(p)])
    clean = torch.cat([pairs, torch.full((p * p, 1), 30)], dim=1)  # [a, b, =]
    task = Task("grid", clean, clean.flip(0), torch.zeros(p * p, 1, dtype=torch.long), torch.ones(p * p, 1, dtype=torch.long), torch.tensor([2]))
    ctx = Context(model, task, None, ComputeGraph.from_model(model), PatchConfig(), 20, 0)
    row = check_claims(Hypothesis("h", "m", "t", {}, (Claim("c", "fourier", {"of": "neurons", "layer": 1, "modulus": p, "frequencies": [1],
                                                                              "report": True}),)), ctx).iloc[0]
    grid = np.zeros((p, p, model.cfg.d_mlp))
    for x in range(p):
        for y in range(p):
            _, cache = model.run_with_cache(torch.tensor([[x, y, 30]]))
            grid[x, y] = cache["blocks.1.mlp.hook_post"][0, 2].detach().double().numpy()
    spectrum = (np.abs(np.fft.fft2(grid - grid.mean((0, 1)), axes=(0, 1))) ** 2).sum(-1)
    allowed = np.isin(np.minimum(np.arange(p), p - np.arange(p)), [0, 1])
    assert row["value"] == pytest.approx(spectrum[allowed[:, None] & allowed[None, :]].sum() / spectrum.sum(), abs=1e-6)
    short = Task("part", clean[:-1], clean[:-1], task.answers[:-1], task.wrong_answers[:-1], torch.tensor([2]))
    with pytest.raises(InputError, match="covering 24 of the 25 pairs"):
        check_claims(Hypothesis("h", "m", "t", {}, (Claim("c", "fourier", {"of": "logits", "modulus": p, "report": True}),)),
                     Context(model, short, None, ctx.graph, PatchConfig(), 20, 0))


def test_the_readme_examples_of_the_newer_kinds_run_on_a_model_that_has_what_they_name():
    """Every claim table example of these kinds, as a user pastes it, is measured and judged (whatever the verdict)."""
    import tomllib

    from pathpatch.claims.claim_reference import REFERENCE
    from tests.claims.test_claims import _split
    from tests.conftest import make_random_model

    model = make_random_model(d_vocab=120)
    g = torch.Generator().manual_seed(0)
    tokens = lambda: torch.randint(0, 120, (8, 6), generator=g)  # noqa: E731
    task = Task("t", tokens(), tokens(), tokens()[:, :1], tokens()[:, :1], torch.tensor([5]))
    ctx = Context(model, task, None, ComputeGraph.from_model(model), PatchConfig(), 20, 0)
    kinds = ("ov_rank", "qk_term", "geometry", "fourier", "any")
    examples = [example for kind, _, example in REFERENCE if kind.split()[0] in kinds]
    assert len(examples) == len(kinds)
    for example in examples:
        table = tomllib.loads("\n".join(_split(example)))
        claim = Claim("example", table.pop("kind"), table)
        row = check_claims(Hypothesis("h", "m", "t", {}, (claim,)), ctx).iloc[0]
        assert row["verdict"] in ("pass", "fail", "inconclusive") and np.isfinite(row["value"]), (example, row.to_dict())
