"""A HookedTransformer whose inputs are vectors, embedded linearly: ``embed = x @ W_E``.

The recurrence model of document ``004`` reads a sequence of 40-dimensional vectors instead of token
ids and outputs the next vector through its unembedding. Everything after the embedding is a plain
HookedTransformer, so every TransformerLens hook name (``hook_embed``, ``blocks.0.hook_resid_pre``,
``blocks.{l}.attn.hook_result``, ...) and all of ``transformer_lens.patching`` work unchanged; only
``input_to_embed`` differs. ``W_E`` keeps its name and shape ``[d_vocab d_model]``.
"""

import torch
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.errors import InputError


class LinearEmbed(nn.Module):
    """Embed continuous input vectors with a matrix ``W_E [d_vocab d_model]``."""

    def __init__(self, cfg: HookedTransformerConfig):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))
        nn.init.normal_(self.W_E, std=cfg.initializer_range)

    def forward(self, x: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, "batch pos d_model"]:
        return x @ self.W_E


class ContinuousInputTransformer(HookedTransformer):
    """HookedTransformer fed ``[batch pos d_vocab]`` float vectors instead of tokens."""

    def __init__(self, cfg: HookedTransformerConfig):
        super().__init__(cfg)
        self.embed = LinearEmbed(self.cfg).to(self.cfg.device)
        self.setup()

    def input_to_embed(self, input, prepend_bos=None, padding_side=None, attention_mask=None, past_kv_cache=None):
        """Embed float vectors; refuse token ids and caches, which this model cannot read."""
        if not torch.is_tensor(input) or not input.is_floating_point() or input.ndim != 3:
            shape = tuple(input.shape) if torch.is_tensor(input) else type(input).__name__
            raise InputError(
                f"This model reads float vectors [batch pos {self.cfg.d_vocab}], got {shape}; "
                "pass the task's vectors (e.g. load_task('recurrence').clean), not token ids."
            )
        if past_kv_cache is not None or attention_mask is not None:
            raise InputError("Continuous-input models take no attention_mask or past_kv_cache.")
        embed = self.hook_embed(self.embed(input.to(self.W_pos.device)))  # [batch pos d_model]
        residual, shortformer_pos_embed = self.get_residual(embed, 0, tokens=None)
        return residual, None, shortformer_pos_embed, None
