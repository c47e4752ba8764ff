"""One description of what a model's blocks do, read once from its config.

Every exact shortcut of the engine rests on a property of the architecture: starting mid-way needs a
model that can (``HookedTransformer``'s ``start_at_layer``); trimming later positions and reusing
earlier keys and values need causal attention and keys cached as ``hook_k`` records them; adding a
head's output straight into the residual stream needs that output to be added as it is (no parallel
MLP reading the same input, no norm after attention); recomputing one head's q/k/v from a shared input
needs one key/value head per query head. Edge patching itself needs a residual stream that is the sum
of the components' outputs, which post-norm blocks break. ``Architecture`` states these facts once;
``runner``, ``edges``, ``activation`` and ``graph`` read their shortcuts and refusals from it, so a new
family is described in one place.
"""

from dataclasses import dataclass
from typing import Literal

import torch

# Norms after attention and MLP. TransformerBridge configs name the Hugging Face class in `architecture`
# and do not set `use_normalization_before_and_after`, so the class name is what identifies them there.
POST_NORM_ARCHITECTURES = ("Olmo2ForCausalLM", "Olmo3ForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
                           "Gemma3ForConditionalGeneration")
TL_POST_NORM_ARCHITECTURES = ("Olmo2ForCausalLM", "Olmo3ForCausalLM")  # TransformerLens skips ln1 on the q/k/v inputs
QK_NORM_ARCHITECTURES = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """What a model's blocks do, as far as exact patching cares.

    Attributes:
        name: ``original_architecture`` (``custom`` when unset).
        positions: How positions enter: ``standard`` (added to the residual stream), ``rotary``,
            ``alibi`` (inside attention) or ``shortformer`` (added to q/k inputs after ``ln1`` only).
        causal: Attention looks only backwards.
        starts_midway: The model can start a forward pass at any layer (``HookedTransformer``).
        parallel: Attention and MLP read the same block input (Pythia, GPT-J).
        norm_after: A norm sits after attention/MLP (Gemma 2's post-norms, OLMo-2): outputs are not
            added to the residual stream as they are.
        grouped: Key/value heads are shared by several query heads (grouped-query attention).
        can_ungroup: The model can compute every query head's keys and values from that head's own
            input (``HookedTransformer``'s ``ungroup_grouped_query_attention``; TransformerBridge cannot).
        plain_keys: Keys and values are cached as ``hook_k``/``hook_v`` record them and projected
            with plain weights (no q/k norm or clipping after the hooks, no 4-bit weights).
        attn_in: ``use_attn_in`` is on (one shared input copy per head for q, k and v together).
        soft_cap: Output-logit soft cap (``cap * tanh(logits / cap)``), or None.
    """

    name: str
    positions: Literal["standard", "rotary", "alibi", "shortformer"] | str
    causal: bool
    starts_midway: bool
    parallel: bool
    norm_after: bool
    grouped: bool
    can_ungroup: bool
    plain_keys: bool
    attn_in: bool
    soft_cap: float | None

    @classmethod
    def of(cls, model: torch.nn.Module) -> "Architecture":
        """Read the description from ``model.cfg`` (and the model's class)."""
        from transformer_lens import HookedTransformer

        cfg = model.cfg
        name = str(getattr(cfg, "original_architecture", None) or getattr(cfg, "architecture", None) or "custom")
        cap = getattr(cfg, "output_logits_soft_cap", None)
        return cls(
            name=name,
            positions=getattr(cfg, "positional_embedding_type", "standard"),
            causal=getattr(cfg, "attention_dir", "causal") == "causal",
            starts_midway=isinstance(model, HookedTransformer),
            parallel=bool(getattr(cfg, "parallel_attn_mlp", False)),
            norm_after=bool(getattr(cfg, "use_normalization_before_and_after", False)) or name in POST_NORM_ARCHITECTURES,
            grouped=getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads),
            can_ungroup=hasattr(model, "set_ungroup_grouped_query_attention"),
            plain_keys=not getattr(cfg, "use_qk_norm", False) and getattr(cfg, "clip_qkv", None) is None
            and name not in QK_NORM_ARCHITECTURES and not getattr(cfg, "load_in_4bit", False),
            attn_in=bool(getattr(cfg, "use_attn_in", False)),
            soft_cap=float(cap) if cap is not None and cap > 0 else None,
        )

    @property
    def suffix_reuse(self) -> bool:
        """Positions before a patch can be skipped, their keys and values fed as a frozen cache."""
        return (self.starts_midway and self.causal and self.positions in ("standard", "rotary", "shortformer")
                and not self.grouped and self.plain_keys)

    @property
    def shared_head_inputs(self) -> bool:
        """One head's q/k/v can be recomputed from the shared block input instead of per-head copies."""
        return self.starts_midway and not self.attn_in and not self.grouped and self.name not in TL_POST_NORM_ARCHITECTURES

    @property
    def additive_outputs(self) -> bool:
        """Head and MLP outputs are added to the residual stream as they are, so an activation patch can
        be injected into the cached stream without hooks (and suffix reuse holds)."""
        return self.suffix_reuse and not self.parallel and not self.norm_after

    def refusal(self) -> str | None:
        """Why edges of this model cannot be patched exactly, with what to do instead; None if they can."""
        if self.norm_after:
            return (f"Edge patching needs a pre-LN residual stream, but this model ({self.name}) normalises after attention "
                    "and MLP (post-LayerNorm or Gemma-2-style post-norms), so its components' outputs do not add up to the next "
                    "input. Use activation patching (pathpatch.patch.activation_patch), which stays exact, or a pre-LN model.")
        if self.grouped and not self.can_ungroup:
            return ("This TransformerBridge model shares key/value heads between query heads (grouped-query attention) and "
                    "cannot give each query head its own k/v input, which edges into .k/.v need. Load it as a "
                    "HookedTransformer instead (load_model(folder) or --model FOLDER without backend='bridge').")
        return None
