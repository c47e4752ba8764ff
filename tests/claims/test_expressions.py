"""Attention claims with expressions, several heads and virtual attention, against loops written here.

The models are built by hand so the answer is known: a pointer head whose query is the destination's
token and whose key is the source's position attends from ``dest`` to position ``tok[dest]``; a
previous-token head below it makes the virtual pattern land on ``tok[dest] - 1``.
"""

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.claims.checks import Context, check_claims
from pathpatch.claims.expressions import Scope, parse
from pathpatch.claims.hypotheses import Claim, Hypothesis
from pathpatch.errors import InputError
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.graph import ComputeGraph
from pathpatch.task.task import Task

N = 8  # vocabulary and context: token v names position v


def pointer_model(n_layers: int = 1, n_heads: int = 1, sharpness: float = 40.0, previous_below: bool = False) -> HookedTransformer:
    """Attention-only, no norms: tokens one-hot in dims 0..N-1, positions one-hot in N..2N-1.

    The last layer's heads point: query = the destination's token v, key = the source's position, so a
    head attends to position v. With ``previous_below`` layer 0 is a previous-token head that writes
    nothing (its W_V is zero), so the layer above reads the embeddings unchanged.
    """
    cfg = HookedTransformerConfig(n_layers=n_layers, n_heads=n_heads, d_model=2 * N, d_head=N, n_ctx=N, d_vocab=N,
                                  attn_only=True, normalization_type=None, act_fn="relu", seed=0, positional_embedding_type="standard")
    model = HookedTransformer(cfg).eval()
    eye = torch.eye(N)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.W_E[:, :N] = eye
        model.W_pos[:, N:] = eye
        model.W_U[:N, :] = eye
        top = model.blocks[n_layers - 1].attn  # the stacked model.W_Q is a copy: set each block's own weights
        for head in range(n_heads):
            top.W_Q[head, :N] = sharpness * eye
            top.W_K[head, N:] = eye
        if previous_below:  # position p queries with e_p, position s keys with e_{s+1}: p attends to p - 1
            previous(model.blocks[0].attn, 0, sharpness)
    return model


def previous(attn, head: int, sharpness: float = 40.0) -> None:
    """Make ``head`` of ``attn`` a previous-token head: its query is e_p, its key at position s is e_{s+1}."""
    eye = torch.eye(N)
    with torch.no_grad():
        attn.W_Q[head, N:] = sharpness * eye
        attn.W_K[head, N:] = torch.roll(eye, 1, dims=1)


def pointer_task(n: int = 24, seed: int = 0) -> Task:
    """Prompts whose token at each position names an earlier or equal position, so every target is visible."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.stack([torch.randint(0, p + 1, (n,), generator=g) for p in range(N)], dim=1)  # [batch pos], tok[p] <= p
    corrupt = (clean + 1) % N
    answers = clean[:, -1:].clone()
    return Task("pointer", clean, corrupt, answers, (answers + 1) % N, torch.tensor([N - 1]), features={"shift": torch.arange(n) % 3})


def context(model: HookedTransformer, task: Task) -> Context:
    return Context(model, task, None, ComputeGraph(model.cfg.n_layers, model.cfg.n_heads, True, False), PatchConfig(direction="noise"), 50, 0)


def claim(ctx: Context, **params):
    return check_claims(Hypothesis("h", "m", "t", {}, (Claim("c", "head_role", {"role": "attends_to", **params}),)), ctx).iloc[0]


def patterns(model: HookedTransformer, task: Task) -> dict[tuple[int, int], torch.Tensor]:
    _, cache = model.run_with_cache(task.clean)
    return {(layer, head): cache["pattern", layer][:, head].double()
            for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)}


def mass_by_loops(pattern: torch.Tensor, task: Task, target, dests=None, keep=None) -> float:
    """Mean over prompts of the mean over destinations with a visible target of the mass on ``target(b, dest, src)``."""
    per_prompt = []
    for b in range(task.clean.shape[0]):
        if keep is not None and not keep(b):
            continue
        values = []
        for dest in range(N) if dests is None else dests(b):
            targets = [src for src in range(dest + 1) if target(b, dest, src)]
            if targets:
                values.append(sum(float(pattern[b, dest, src]) for src in targets))
        if values:
            per_prompt.append(sum(values) / len(values))
    return sum(per_prompt) / len(per_prompt)


def test_a_pointer_head_attends_where_the_token_points_and_nowhere_else():
    model, task = pointer_model(), pointer_task()
    ctx, tok = context(model, task), task.clean
    right = claim(ctx, head="L0H0", to="pos == tok[dest]", min=0.9)
    expected = mass_by_loops(patterns(model, task)[0, 0], task, lambda b, d, s: s == int(tok[b, d]))
    assert right["verdict"] == "pass" and right["value"] == pytest.approx(expected, abs=1e-9) and expected > 0.99
    wrong = claim(ctx, head="L0H0", to="pos == tok[dest] - 1", min=0.5)
    assert wrong["verdict"] == "fail" and wrong["value"] == pytest.approx(
        mass_by_loops(patterns(model, task)[0, 0], task, lambda b, d, s: s == int(tok[b, d]) - 1), abs=1e-9)


def test_from_where_and_the_complement_of_same_token_match_loops():
    model, task = pointer_model(), pointer_task()
    ctx, tok, pattern = context(model, task), task.clean, patterns(model, task)[0, 0]
    row = claim(ctx, head="L0H0", to="tok != tok[dest]", report=True)
    expected = mass_by_loops(pattern, task, lambda b, d, s: tok[b, s] != tok[b, d])
    assert row["value"] == pytest.approx(expected, abs=1e-9)
    picked = claim(ctx, head="L0H0", to="pos == tok[dest]", **{"from": "tok > 2"}, where="shift == 1", report=True)
    expected = mass_by_loops(pattern, task, lambda b, d, s: s == int(tok[b, d]),
                             dests=lambda b: [d for d in range(N) if tok[b, d] > 2], keep=lambda b: b % 3 == 1)
    assert picked["value"] == pytest.approx(expected, abs=1e-9)


def test_virtual_attention_reads_through_the_previous_token_head():
    model, task = pointer_model(n_layers=2, previous_below=True), pointer_task()
    ctx, tok, pats = context(model, task), task.clean, patterns(model, task)
    virtual = pats[1, 0] @ pats[0, 0]  # [batch dest src]: written here, not the library's product
    row = claim(ctx, head="L1H0", through="L0H0", to="pos == tok[dest] - 1", min=0.8)
    assert row["value"] == pytest.approx(mass_by_loops(virtual, task, lambda b, d, s: s == int(tok[b, d]) - 1), abs=1e-9)
    assert row["verdict"] == "pass"
    direct = claim(ctx, head="L1H0", to="pos == tok[dest] - 1", min=0.8)
    assert direct["verdict"] == "fail"


def test_two_heads_that_each_carry_half_pass_only_summed():
    model, task = pointer_model(n_heads=2, sharpness=2.2), pointer_task()
    ctx, tok, pats = context(model, task), task.clean, patterns(model, task)
    alone = [claim(ctx, head=f"L0H{h}", to="pos == tok[dest]", min=0.6) for h in range(2)]
    summed = claim(ctx, heads=["L0H0", "L0H1"], combine="sum", to="pos == tok[dest]", min=0.6)
    expected = mass_by_loops(pats[0, 0] + pats[0, 1], task, lambda b, d, s: s == int(tok[b, d]))
    assert summed["value"] == pytest.approx(expected, abs=1e-9)
    assert [row["verdict"] for row in alone] == ["fail", "fail"] and summed["verdict"] == "pass", (alone, summed)


def test_cumsum_and_where_match_a_running_sum_written_here():
    task = pointer_task()
    scope = Scope(task, torch.arange(N))
    got = parse("cumsum(where(tok % 2 == 1, 1, -1)) < 0", "to").mask(scope)  # [batch dest src]
    destinations = parse("cumsum(where(tok % 2 == 1, 1, -1)) < 0", "from").mask(Scope(task, torch.arange(N), from_dest=True))[:, :, 0]
    steps = torch.where(task.clean % 2 == 1, 1, -1)
    for b in range(3):
        running = 0
        for src in range(N):
            running += int(steps[b, src])
            assert bool(got[b, 0, src]) == (running < 0) == bool(destinations[b, src])


@pytest.mark.parametrize("text, named", [
    ("__import__('os').system('true')", "the call __import__('os').system(...)"),
    ("tok.__class__", "the attribute tok.__class__"),
    ("open('x')", "the call open(...)"),
    ("lambda: 1", "Lambda syntax"),
    ("tok[0:2]", "Slice syntax"),
    ("'a' == tok", "the literal 'a'"),
    ("pos ** 2", "the operator Pow"),
    ("pos ==", "not an expression"),
    ("[1, 2]", "List syntax"),
])
def test_anything_outside_the_language_is_refused_naming_it(text, named):
    with pytest.raises(InputError, match=None) as err:
        parse(text, "to")
    assert named in str(err.value), str(err.value)


def test_a_where_filter_that_reads_positions_is_refused_when_the_file_is_read():
    with pytest.raises(InputError, match="a where filter keeps or drops a whole prompt"):
        Claim("c", "head_role", {"role": "attends_to", "head": "L0H0", "to": "pos == 0", "where": "tok > 3", "min": 0.5})
    Claim("c", "head_role", {"role": "attends_to", "head": "L0H0", "to": "pos == 0", "where": "tok[0] > 3", "min": 0.5})


def test_the_readme_examples_of_expressions_and_virtual_attention_run_and_pass_on_a_planted_model():
    """The claim table's examples, read as the TOML a user pastes, judged on a model built so that they hold."""
    import tomllib

    from pathpatch.claims.claim_reference import REFERENCE
    from tests.claims.test_claims import _split

    examples = {kind: example for kind, _, example in REFERENCE if kind.startswith("head_role") and ("expression" in kind or "virtual" in kind)}
    assert len(examples) == 2
    model = pointer_model(n_layers=2, n_heads=2, previous_below=True)
    previous(model.blocks[1].attn, 1)  # L1H1 a previous-token head too: read through L0H0 it lands on p - 2
    ctx = context(model, pointer_task())
    for kind, example in examples.items():
        table = tomllib.loads("\n".join(_split(example)))
        params = {k: v for k, v in table.items() if k != "kind"}
        row = check_claims(Hypothesis("h", "m", "t", {}, (Claim(kind, "head_role", params),)), ctx).iloc[0]
        assert row["verdict"] == "pass", (kind, row.to_dict())
