"""Planted-circuit models: hand-set weights whose circuit is known exactly, for measuring discovery.

Each model is a bias-free, LayerNorm-free ``HookedTransformer`` whose residual stream is cut into
named one-hot subspaces (``tok``, ``pos``, ``moved``, ``out``, ``junk``). Circuit heads attend by hard
(saturated) positional or token matches and copy one subspace into another; the unembedding reads
only ``out``. Distractor heads and MLPs read the same inputs (some with random, input-dependent
attention) but write only to ``junk``, which nothing reads, or write an input-independent constant
into ``out``; either way no distractor edge can move the metric. That makes the ground truth exact:

- ``planted-copy``: V-composition, as in document ``000``. ``L0H0`` is a previous-token head that moves
  each token into ``moved``; ``L1H0`` at the last position attends to position 2 and reads ``moved``
  through its value input, so the answer is the token at position 1.
- ``planted-induction``: K-composition. ``L0H0`` (previous-token head) writes ``moved``; ``L1H0``'s key
  reads it and its query reads the current token, so it attends to the token after the earlier copy
  of the current token and copies it (``... A B ... A -> B``).
- ``planted-negative``: ``L1H0`` copies the token at position 1 into the logits; ``L1H1`` is a negative
  copy head (OV = -I) that suppresses the token at position 2, the wrong answer of the metric.

Tasks are paired: the corrupt sequence is drawn afresh (disjoint tokens), so every ground-truth edge
carries the answer and every other edge carries nothing. ``tests/models/test_planted.py`` checks that
by exact patching.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.errors import InputError
from pathpatch.models.hook_flags import enable_patching_hooks
from pathpatch.task.task import Task

D_VOCAB = 16
N_CTX = 8
D_JUNK = 8
SHARPNESS = 20.0  # attention-score margin of a hard match, after TransformerLens' 1/sqrt(d_head)
LOGIT_SCALE = 4.0
CONSTANT_SCALE = 0.05  # the constant distractor's share of a copied token's logit
SUBSPACES = {"tok": D_VOCAB, "pos": N_CTX, "moved": D_VOCAB, "out": D_VOCAB, "junk": D_JUNK}


def subspace(name: str) -> slice:
    """Return the residual dimensions of subspace ``name`` (``tok``, ``pos``, ``moved``, ``out``, ``junk``)."""
    start = 0
    for key, size in SUBSPACES.items():
        if key == name:
            return slice(start, start + size)
        start += size
    raise InputError(f"Unknown subspace {name!r}; planted models have {', '.join(SUBSPACES)}.")


@dataclass(frozen=True)
class PlantedSpec:
    """One planted-circuit model: how to build it, its task, and its true edges.

    Attributes:
        name: Model and task name (``planted-copy``, ``planted-induction``, ``planted-negative``).
        summary: One line on the circuit.
        edges: The ground-truth edges (``src->dest`` names); every other edge has no effect.
        wire: Sets the circuit's and distractors' weights on a zeroed model.
        make_task: ``(n, seed) -> Task`` of clean/corrupt pairs.
    """

    name: str
    summary: str
    edges: tuple[str, ...]
    wire: Callable[[HookedTransformer, torch.Generator], None]
    make_task: Callable[[int, int], Task]


def planted_config(device: str | torch.device = "cpu") -> HookedTransformerConfig:
    """Return the shared config: 2 layers x 2 heads, no LayerNorm, ReLU MLPs, d_head fits one-hot codes."""
    return HookedTransformerConfig(
        n_layers=2, n_heads=2, d_model=sum(SUBSPACES.values()), d_head=max(D_VOCAB, N_CTX),
        d_mlp=16, d_vocab=D_VOCAB, n_ctx=N_CTX, act_fn="relu", normalization_type=None, seed=0, device=str(device),
    )


# --- weight wiring: each helper sets one head's QK or OV circuit ---------------------------------


def _hard(model: HookedTransformer) -> float:
    """Query scale that gives a hard match a score margin of ``SHARPNESS``."""
    return SHARPNESS * float(model.cfg.attn_scale)


def attend_to_position(model: HookedTransformer, layer: int, head: int, target: int) -> None:
    """Make head ``layer.head`` attend from every position to position ``target`` (where causal)."""
    attn = model.blocks[layer].attn
    attn.W_Q.data[head, subspace("pos"), 0] = _hard(model)
    attn.W_K.data[head, subspace("pos").start + target, 0] = 1.0


def attend_to_previous(model: HookedTransformer, layer: int, head: int) -> None:
    """Make head ``layer.head`` a previous-token head (position p attends to p - 1; position 0 to itself)."""
    attn = model.blocks[layer].attn
    pos = subspace("pos").start
    for p in range(N_CTX):
        attn.W_Q.data[head, pos + p, p] = _hard(model)
        if p + 1 < N_CTX:
            attn.W_K.data[head, pos + p, p + 1] = 1.0


def attend_to_match(model: HookedTransformer, layer: int, head: int, query: str, key: str) -> None:
    """Make the head attend where the key's ``key`` subspace holds the query's ``query`` token."""
    attn = model.blocks[layer].attn
    q, k = subspace(query).start, subspace(key).start
    for t in range(D_VOCAB):
        attn.W_Q.data[head, q + t, t] = _hard(model)
        attn.W_K.data[head, k + t, t] = 1.0


def copy(model: HookedTransformer, layer: int, head: int, src: str, dest: str, sign: float = 1.0) -> None:
    """Set the head's OV circuit to ``sign`` times the identity from subspace ``src`` to ``dest``."""
    attn = model.blocks[layer].attn
    s, d = subspace(src).start, subspace(dest).start
    for t in range(D_VOCAB):
        attn.W_V.data[head, s + t, t] = 1.0
        attn.W_O.data[head, t, d + t] = sign


def distract_head(model: HookedTransformer, layer: int, head: int, reads: tuple[str, ...], g: torch.Generator) -> None:
    """A distractor: random attention and values read from ``reads``, output into ``junk`` only."""
    attn = model.blocks[layer].attn
    for name in reads:
        dims = subspace(name)
        for w in (attn.W_Q, attn.W_K, attn.W_V):
            w.data[head, dims] = torch.randn(dims.stop - dims.start, w.shape[-1], generator=g)
    attn.W_O.data[head, :, subspace("junk")] = torch.randn(attn.W_O.shape[1], D_JUNK, generator=g)


def constant_head(model: HookedTransformer, layer: int, head: int, g: torch.Generator) -> None:
    """A distractor writing a fixed vector into ``out`` (so into the logits) whatever the input.

    Its value is its bias alone, so attention weights (which sum to one) cannot change its output.
    """
    attn = model.blocks[layer].attn
    attn.W_Q.data[head, subspace("tok")] = torch.randn(D_VOCAB, attn.W_Q.shape[-1], generator=g)
    attn.b_V.data[head] = torch.randn(attn.b_V.shape[-1], generator=g)
    attn.W_O.data[head, :D_VOCAB, subspace("out")] = CONSTANT_SCALE * torch.eye(D_VOCAB)


def distract_mlp(model: HookedTransformer, layer: int, reads: tuple[str, ...], g: torch.Generator) -> None:
    """A distractor MLP reading ``reads`` and writing ``junk`` only."""
    mlp = model.blocks[layer].mlp
    for name in reads:
        dims = subspace(name)
        mlp.W_in.data[dims] = torch.randn(dims.stop - dims.start, mlp.W_in.shape[1], generator=g)
    mlp.b_in.data = torch.randn(mlp.W_in.shape[1], generator=g)
    mlp.W_out.data[:, subspace("junk")] = torch.randn(mlp.W_out.shape[0], D_JUNK, generator=g)


def embed_and_unembed(model: HookedTransformer) -> None:
    """One-hot token and position embeddings; the unembedding reads ``out`` only."""
    model.embed.W_E.data[:, subspace("tok")] = torch.eye(D_VOCAB)
    model.pos_embed.W_pos.data[:, subspace("pos")] = torch.eye(N_CTX)
    model.unembed.W_U.data[subspace("out")] = LOGIT_SCALE * torch.eye(D_VOCAB)


# --- the three circuits -----------------------------------------------------------------------------


def wire_copy(model: HookedTransformer, g: torch.Generator) -> None:
    """V-composition: L0H0 moves the previous token; L1H0 reads it at position 2 through its value."""
    attend_to_previous(model, 0, 0)
    copy(model, 0, 0, "tok", "moved")
    distract_head(model, 0, 1, ("tok", "pos"), g)
    distract_mlp(model, 0, ("tok", "moved"), g)
    attend_to_position(model, 1, 0, 2)
    copy(model, 1, 0, "moved", "out")
    distract_head(model, 1, 1, ("tok", "moved", "junk"), g)
    distract_mlp(model, 1, ("moved", "out", "junk"), g)


def wire_induction(model: HookedTransformer, g: torch.Generator) -> None:
    """K-composition: L0H0's previous token feeds L1H0's key; L1H0 copies the matched successor."""
    attend_to_previous(model, 0, 0)
    copy(model, 0, 0, "tok", "moved")
    constant_head(model, 0, 1, g)
    distract_mlp(model, 0, ("tok", "pos"), g)
    attend_to_match(model, 1, 0, "tok", "moved")
    copy(model, 1, 0, "tok", "out")
    distract_head(model, 1, 1, ("tok", "moved", "pos"), g)
    distract_mlp(model, 1, ("moved", "out"), g)


def wire_negative(model: HookedTransformer, g: torch.Generator) -> None:
    """L1H0 copies the token at position 1; L1H1 (OV = -I) suppresses the token at position 2."""
    distract_head(model, 0, 0, ("tok", "pos"), g)
    constant_head(model, 0, 1, g)
    distract_mlp(model, 0, ("tok",), g)
    attend_to_position(model, 1, 0, 1)
    copy(model, 1, 0, "tok", "out")
    attend_to_position(model, 1, 1, 2)
    copy(model, 1, 1, "tok", "out", sign=-1.0)
    distract_mlp(model, 1, ("tok", "out", "junk"), g)


# --- tasks ------------------------------------------------------------------------------------------


def _distinct_pairs(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Clean and corrupt rows of ``N_CTX`` distinct tokens, sharing no token within a pair."""
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(n, D_VOCAB, generator=g).argsort(-1)  # [batch d_vocab]
    return order[:, :N_CTX].clone(), order[:, N_CTX : 2 * N_CTX].clone()


def _task(name: str, clean: Tensor, corrupt: Tensor, answers: Tensor, wrong: Tensor) -> Task:
    """A logit-difference task read at the last position."""
    return Task(name, clean, corrupt, answers[:, None], wrong[:, None], torch.tensor([N_CTX - 1]), "logit_diff", "paired")


def copy_task(n: int, seed: int) -> Task:
    """Answer: the token at position 1, against the corrupt run's."""
    clean, corrupt = _distinct_pairs(n, seed)
    return _task("planted-copy", clean, corrupt, clean[:, 1], corrupt[:, 1])


def _repeat(rows: Tensor, at: Tensor) -> Tensor:
    """Set each row's last token to a copy of its token at ``at`` (an induction prompt)."""
    rows = rows.clone()
    rows[:, -1] = rows.gather(1, at[:, None])[:, 0]
    return rows


def induction_task(n: int, seed: int) -> Task:
    """``... A B ... A``: answer B (the token after A's first copy), against the corrupt run's B."""
    clean, corrupt = _distinct_pairs(n, seed)
    # A sits at 1..N_CTX-3: position 0's previous-token head reads itself, which would match A there.
    at = torch.randint(1, N_CTX - 2, (n,), generator=torch.Generator().manual_seed(seed + 1))
    clean, corrupt = _repeat(clean, at), _repeat(corrupt, at)
    answer = lambda rows: rows.gather(1, (at + 1)[:, None])[:, 0]  # noqa: E731
    return _task("planted-induction", clean, corrupt, answer(clean), answer(corrupt))


def negative_task(n: int, seed: int) -> Task:
    """Answer: the token at position 1, against the (suppressed) token at position 2 of the same prompt."""
    clean, corrupt = _distinct_pairs(n, seed)
    return _task("planted-negative", clean, corrupt, clean[:, 1], clean[:, 2])


SPECS: tuple[PlantedSpec, ...] = (
    PlantedSpec(
        "planted-copy", "V-composition: previous-token head L0H0 -> L1H0.v copies the token at position 1",
        ("embed->L0H0.v", "L0H0->L1H0.v", "L1H0->logits"), wire_copy, copy_task,
    ),
    PlantedSpec(
        "planted-induction", "K-composition: previous-token head L0H0 -> induction head L1H0.k",
        ("embed->L0H0.v", "L0H0->L1H0.k", "embed->L1H0.q", "embed->L1H0.v", "L1H0->logits"), wire_induction, induction_task,
    ),
    PlantedSpec(
        "planted-negative", "copy head L1H0 and negative copy head L1H1 (OV = -I) suppressing the wrong answer",
        ("embed->L1H0.v", "L1H0->logits", "embed->L1H1.v", "L1H1->logits"), wire_negative, negative_task,
    ),
)


def build(spec: PlantedSpec, device: str | torch.device = "cpu", seed: int = 0) -> HookedTransformer:
    """Return the planted model of ``spec`` with its weights set (distractors drawn from ``seed``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        model = HookedTransformer(planted_config(device))
    for param in model.parameters():
        param.data.zero_()
    embed_and_unembed(model)
    spec.wire(model, torch.Generator().manual_seed(seed))
    return enable_patching_hooks(model.eval())
