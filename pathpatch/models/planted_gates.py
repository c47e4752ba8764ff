"""Planted models whose circuits one patching experiment alone cannot see.

Built from the blocks of ``planted`` (one-hot subspaces, hard attention, copies, distractors that write
only ``junk``), each hides its circuit from a different default:

- ``planted-redundant``: a saturating OR. ``L0H0`` and ``L1H0`` both attend to position 1 and write a
  flag into ``moved`` when the token there is the trigger; ``MLP1`` turns "at least one flag" into the
  answer (``min(2 * flags, 1)``), so either head alone suffices. Noising one edge at a time (clean run,
  one edge corrupt) leaves the other head's flag and changes nothing, except at ``MLP1->logits``;
  denoising one edge (corrupt run, one edge clean) restores the whole answer. Only the denoising
  direction shows the edges into ``MLP1``.
- ``planted-pointer``: the token at position 0 says which position to copy. ``L0H0`` moves it into
  ``moved`` everywhere; ``L1H0``'s query reads it, its key reads positions, and it copies the pointed-to
  token. The paired corrupt prompt keeps the pointer and changes every other token, so the pointer's
  edges (``embed->L0H0.v``, ``L0H0->L1H0.q``) carry the same value in both runs: paired patching gives
  them exactly zero effect in either direction, and a circuit without them is fully faithful to the
  paired task. Resampling (another clean prompt, another pointer) or mean ablation shows them.

``SEEN_BY`` names, for each model, a direction and corruption under which every true edge has an effect
alone; ``tests/models/test_planted.py`` checks the ground truth there.
"""

import torch
from transformer_lens import HookedTransformer

from pathpatch.models.planted import (D_VOCAB, N_CTX, PlantedSpec, _hard, _task, attend_to_position, copy, distract_head, distract_mlp,
                                      subspace)
from pathpatch.task.task import Task

TRIGGER, YES, NO = 0, 1, 2  # planted-redundant: the trigger token and the two answers
FILLER = 3  # planted-redundant: prompt tokens run from here to D_VOCAB - 1
TARGETS = tuple(range(1, N_CTX - 1))  # planted-pointer: pointer token t points at position TARGETS[t]


# --- planted-redundant ------------------------------------------------------------------------------


def detect_trigger(model: HookedTransformer, layer: int, head: int) -> None:
    """Make the head read position 1 and write a flag (``moved`` dimension 0) when the token there is ``TRIGGER``."""
    attend_to_position(model, layer, head, 1)
    attn = model.blocks[layer].attn
    attn.W_V.data[head, subspace("tok").start + TRIGGER, 0] = 1.0
    attn.W_O.data[head, 0, subspace("moved").start] = 1.0


def or_gate(model: HookedTransformer, layer: int) -> None:
    """Make the MLP write ``min(2 * flag, 1)`` times (YES - NO) into ``out``: one flag saturates it."""
    mlp, flag = model.blocks[layer].mlp, subspace("moved").start
    mlp.W_in.data[flag, :2] = 1.0
    mlp.b_in.data[1] = -0.5  # hidden 0 - hidden 1 = relu(f) - relu(f - 1/2) = min(f, 1/2)
    out = subspace("out").start
    for hidden, sign in ((0, 2.0), (1, -2.0)):
        mlp.W_out.data[hidden, out + YES] = sign
        mlp.W_out.data[hidden, out + NO] = -sign


def wire_redundant(model: HookedTransformer, g: torch.Generator) -> None:
    """Two trigger detectors in different layers (L0H0, L1H0) joined by an OR in MLP1; the rest distracts."""
    detect_trigger(model, 0, 0)
    distract_head(model, 0, 1, ("tok", "pos"), g)
    distract_mlp(model, 0, ("tok", "pos"), g)
    detect_trigger(model, 1, 0)
    distract_head(model, 1, 1, ("tok", "moved", "junk"), g)
    or_gate(model, 1)


def redundant_task(n: int, seed: int) -> Task:
    """Clean prompts hold the trigger at position 1, corrupt ones another token there; answer YES against NO."""
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(n, D_VOCAB - FILLER, generator=g).argsort(-1) + FILLER  # [batch filler]
    clean, corrupt = order[:, :N_CTX].clone(), order[:, :N_CTX].clone()
    clean[:, 1] = TRIGGER
    corrupt[:, 1] = order[:, N_CTX]  # a filler token absent from the rest of the prompt
    return _task("planted-redundant", clean, corrupt, torch.full((n,), YES), torch.full((n,), NO))


# --- planted-pointer --------------------------------------------------------------------------------


def follow_pointer(model: HookedTransformer, layer: int, head: int) -> None:
    """Make the head's query read the pointer from ``moved`` and attend to the position it names."""
    attn = model.blocks[layer].attn
    moved, pos = subspace("moved").start, subspace("pos").start
    for token, target in enumerate(TARGETS):
        attn.W_Q.data[head, moved + token, token] = _hard(model)
        attn.W_K.data[head, pos + target, token] = 1.0


def wire_pointer(model: HookedTransformer, g: torch.Generator) -> None:
    """L0H0 moves the pointer (position 0) everywhere; L1H0 follows it and copies the token it points at."""
    attend_to_position(model, 0, 0, 0)
    copy(model, 0, 0, "tok", "moved")
    distract_head(model, 0, 1, ("tok", "pos"), g)
    distract_mlp(model, 0, ("tok",), g)
    follow_pointer(model, 1, 0)
    copy(model, 1, 0, "tok", "out")
    distract_head(model, 1, 1, ("tok", "moved", "junk"), g)
    distract_mlp(model, 1, ("moved", "out", "junk"), g)


def pointer_task(n: int, seed: int) -> Task:
    """A pointer at position 0, distinct content tokens after it; the corrupt prompt keeps the pointer and
    changes every content token. Answer: the token pointed at, against the corrupt prompt's token there."""
    g = torch.Generator().manual_seed(seed)
    pointer = torch.randint(0, len(TARGETS), (n,), generator=g)
    content = torch.rand(n, D_VOCAB - len(TARGETS), generator=g).argsort(-1) + len(TARGETS)  # [batch content]
    shift = content.shape[1] - (N_CTX - 1)  # corrupt content starts this far along the same permutation
    clean = torch.cat([pointer[:, None], content[:, : N_CTX - 1]], 1)
    corrupt = torch.cat([pointer[:, None], content[:, shift : shift + N_CTX - 1]], 1)
    at = torch.tensor(TARGETS)[pointer][:, None]  # [batch 1]
    return _task("planted-pointer", clean, corrupt, clean.gather(1, at)[:, 0], corrupt.gather(1, at)[:, 0])


SPECS: tuple[PlantedSpec, ...] = (
    PlantedSpec(
        "planted-redundant", "saturating OR: trigger detectors L0H0 and L1H0 each suffice for MLP1 (only denoising sees them)",
        ("embed->L0H0.v", "L0H0->MLP1", "embed->L1H0.v", "L1H0->MLP1", "MLP1->logits"), wire_redundant, redundant_task,
    ),
    PlantedSpec(
        "planted-pointer", "pointer at position 0 steers L1H0's query; the paired corruption keeps it (resampling sees it)",
        ("embed->L0H0.v", "L0H0->L1H0.q", "embed->L1H0.v", "L1H0->logits"), wire_pointer, pointer_task,
    ),
)

SEEN_BY: dict[str, tuple[str, str]] = {  # (direction, corruption) under which every true edge has an effect alone
    "planted-redundant": ("denoise", "paired"),
    "planted-pointer": ("noise", "resample"),
}
