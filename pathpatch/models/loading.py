"""One entry point for models: ``load_model(spec)``.

``spec`` may be a bundled seed-model name (``permute``), a ``HookedTransformer`` or TransformerBridge
(returned as is), or the path of a local Hugging Face directory (``config.json``, weights and
tokenizer files), which is loaded fully offline. A Hugging Face directory becomes a
``HookedTransformer`` through TransformerLens' own config and weight converters, without folding or
centering weights, so its logits equal the Hugging Face model's; ``backend="bridge"`` boots a
``TransformerBridge`` instead (same hook names).

Bundled and Hugging Face models are returned ready for edge patching: ``use_split_qkv_input`` and
(for models with MLPs) ``use_hook_mlp_in`` are switched on, so every head input and MLP input has its
own hook. ``use_attn_result`` stays off: pathpatch computes head outputs from ``hook_z`` and ``W_O``,
because that flag makes every forward pass materialise a ``[batch pos head d_head d_model]`` tensor.
"""

import logging
import warnings
from pathlib import Path
from typing import Literal

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.models.planted import PLANTED, build_planted
from pathpatch.models.zoo import SEEDS, TASK_ONLY, load_bundled

log = logging.getLogger(__name__)

Backend = Literal["hooked", "bridge"]
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def load_model(
    spec: "str | Path | HookedTransformer | torch.nn.Module",
    device: str | torch.device = "cpu",
    backend: Backend = "hooked",
) -> torch.nn.Module:
    """Return a TransformerLens model for a bundled name, a model object or a local HF directory.

    Args:
        spec: Bundled model name, ``HookedTransformer``/``TransformerBridge`` instance, or a path.
        device: Device for models this function builds (``cpu``, ``cuda``, ``cuda:1``).
        backend: ``hooked`` (HookedTransformer) or ``bridge`` (TransformerBridge) for HF directories.

    Raises:
        KeyError: Unknown name that is neither bundled nor an existing path.
        FileNotFoundError: A directory without config or weights.
        ValueError: Unsupported architecture, or weights that do not match the config.
    """
    if isinstance(spec, torch.nn.Module):
        if not hasattr(spec, "cfg") or not hasattr(spec, "run_with_hooks"):
            raise TypeError(
                f"load_model got a {type(spec).__name__}, which is not a TransformerLens model; pass a "
                "HookedTransformer, a TransformerBridge, a bundled name or a Hugging Face directory."
            )
        return spec
    if backend not in ("hooked", "bridge"):
        raise ValueError(f"Unknown backend {backend!r}; choose 'hooked' or 'bridge'.")
    name = str(spec)
    if name in SEEDS:
        return enable_patching_hooks(load_bundled(name, device))
    if name in PLANTED:
        return build_planted(name, device)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(
                f"{path} is a file; give the Hugging Face model directory that holds config.json and the weights."
            )
        return load_hf_directory(path, device, backend)
    if name in TASK_ONLY:
        raise KeyError(f"{name!r} is a task without a bundled model; give a Hugging Face directory, e.g. a GPT-2 on disk.")
    raise KeyError(
        f"Unknown model {name!r}: not a bundled model ({', '.join([*SEEDS, *PLANTED])}) and no such directory. "
        "Give a bundled name or the path of a local Hugging Face model directory."
    )


def enable_patching_hooks(model: torch.nn.Module) -> torch.nn.Module:
    """Switch on the per-head input hooks (and MLP input hooks) that edge patching reads; return the model."""
    model.set_use_split_qkv_input(True)
    if not model.cfg.attn_only:
        model.set_use_hook_mlp_in(True)
    return model


def load_hf_directory(path: Path, device: str | torch.device = "cpu", backend: Backend = "hooked") -> torch.nn.Module:
    """Load a local Hugging Face causal-LM directory offline as a TransformerLens model."""
    from transformers import AutoConfig

    _check_hf_directory(path)
    hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    if backend == "bridge":
        from transformer_lens.model_bridge import TransformerBridge

        try:
            bridge = TransformerBridge.boot_transformers(str(path), device=str(device))
        except (ValueError, NotImplementedError, KeyError) as err:
            raise ValueError(_unsupported(path, hf_config, err)) from err
        return enable_patching_hooks(bridge)
    cfg = HookedTransformerConfig(**_tl_config_dict(path, hf_config), device=str(device))
    hf_model = _load_hf_weights(path)
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict

    state = get_pretrained_state_dict(str(path), cfg, hf_model=hf_model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=_load_tokenizer(path))
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return enable_patching_hooks(model.eval())


def _check_hf_directory(path: Path) -> None:
    """Raise FileNotFoundError naming what a Hugging Face directory lacks."""
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path} has no config.json, so it is not a Hugging Face model directory; save one with "
            "model.save_pretrained(dir) and tokenizer.save_pretrained(dir)."
        )
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise FileNotFoundError(
            f"{path} has config.json but no weights (model.safetensors or pytorch_model.bin); "
            "save the weights with model.save_pretrained(dir)."
        )


def _tl_config_dict(path: Path, hf_config) -> dict:
    """Return HookedTransformerConfig fields for ``path`` through TransformerLens' converter."""
    from transformer_lens.loading_from_pretrained import convert_hf_model_config

    try:
        return convert_hf_model_config(str(path))
    except AttributeError as err:
        # TransformerLens reads GPT-2's legacy `n_ctx`, which transformers>=5 no longer writes.
        if getattr(hf_config, "model_type", None) == "gpt2":
            return _gpt2_config_dict(hf_config)
        raise ValueError(_unsupported(path, hf_config, err)) from err
    except (NotImplementedError, ValueError, KeyError) as err:
        raise ValueError(_unsupported(path, hf_config, err)) from err


def _gpt2_config_dict(hf_config) -> dict:
    """Return the TransformerLens config of a GPT-2 Hugging Face config (as TransformerLens builds it)."""
    return {
        "d_model": hf_config.n_embd,
        "d_head": hf_config.n_embd // hf_config.n_head,
        "n_heads": hf_config.n_head,
        "d_mlp": hf_config.n_inner or 4 * hf_config.n_embd,
        "n_layers": hf_config.n_layer,
        "n_ctx": hf_config.n_positions,
        "eps": hf_config.layer_norm_epsilon,
        "d_vocab": hf_config.vocab_size,
        "act_fn": hf_config.activation_function,
        "use_attn_scale": True,
        "use_local_attn": False,
        "scale_attn_by_inverse_layer_idx": hf_config.scale_attn_by_inverse_layer_idx,
        "normalization_type": "LN",
        "original_architecture": "GPT2LMHeadModel",
    }


def _load_hf_weights(path: Path):
    """Load the Hugging Face model; raise ValueError if its weights do not match its config."""
    from transformers import AutoModelForCausalLM

    try:
        hf_model, info = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, output_loading_info=True)
    except (RuntimeError, ValueError, OSError) as err:
        raise ValueError(
            f"The weights in {path} do not fit its config.json ({str(err).splitlines()[0][:300]}); "
            "re-save the model and config together with model.save_pretrained(dir)."
        ) from err
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if problems:
        raise ValueError(
            f"The weights in {path} do not match its config.json: {problems}; re-save the model with "
            "model.save_pretrained(dir) so weights and config agree."
        )
    return hf_model.eval()


def _load_tokenizer(path: Path):
    """Return the directory's tokenizer, or None (with a log line) when it has none."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        log.warning("No usable tokenizer in %s (%s); the model will take token ids only.", path, err)
        return None


def _unsupported(path: Path, hf_config, err: Exception) -> str:
    """Return the message for an architecture TransformerLens cannot convert."""
    arch = (getattr(hf_config, "architectures", None) or [getattr(hf_config, "model_type", "unknown")])[0]
    return (
        f"Cannot load {path}: TransformerLens does not convert architecture {arch!r} ({err}). "
        "Use a supported architecture (GPT-2, GPT-Neo, Llama, Pythia, ...) or try backend='bridge'."
    )
