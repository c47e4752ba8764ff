"""One entry point for models: ``load_model(spec)``, whatever form the model comes in.

``spec`` may be:

- a bundled seed-model name (``permute``) or a planted toy model's name;
- a ``HookedTransformer`` or ``TransformerBridge`` object, returned as is;
- a TransformerLens checkpoint folder: ``config.json`` with ``HookedTransformerConfig`` fields plus
  ``model.safetensors`` or one ``*.pt``/``*.pth`` state dict, and optionally tokenizer files, as
  ``save_model(model, dir)`` writes it (see ``checkpoint.py``);
- a weights file (``.safetensors``, ``.pt``, ``.pth``) given with ``config=`` (a ``config.json``
  path, a dict of config fields or a ``HookedTransformerConfig``);
- a local Hugging Face folder (``config.json`` with ``model_type``, weights, tokenizer files), loaded
  fully offline. It becomes a ``HookedTransformer`` through TransformerLens' own config and weight
  converters, without folding or centering weights, so its logits equal the Hugging Face model's;
  ``backend="bridge"`` boots a ``TransformerBridge`` instead (same hook names);
- a GGUF file (a path ending in ``.gguf``, any case) of the Llama family, as llama.cpp writes it: its
  weights are dequantized to float32 and converted the same way as a Hugging Face folder, with the
  tokenizer stored in the file (see ``gguf.py``; needs ``pip install 'pathpatch[gguf]'``);
- a model factory ``path/to/file.py:function`` or ``package.module:function``: the function is called
  (with ``device=`` if it takes that argument) and must return a model object. This runs that file's
  code, so the file is logged at WARNING level. Nothing else runs code: weights are read as tensors
  only (safetensors, or ``torch.load(weights_only=True)``), and Hugging Face folders are read with
  ``trust_remote_code=False``, so an ``auto_map`` in their config never imports the folder's Python.

Models this function builds are in eval mode on ``device`` and ready for edge patching:
``use_split_qkv_input`` and (for models with MLPs) ``use_hook_mlp_in`` are switched on, so every head
input and MLP input has its own hook. ``use_attn_result`` stays off: pathpatch computes head outputs
from ``hook_z`` and ``W_O``, because that flag makes every forward pass materialise a
``[batch pos head d_head d_model]`` tensor.
"""

import inspect
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.errors import InputError
from pathpatch.factories import import_factory, parse_factory
from pathpatch.models.checkpoint import WEIGHT_SUFFIXES, ConfigSource, is_checkpoint_dir, load_checkpoint, load_weights
from pathpatch.models.gguf import PACKAGED, packaged_gguf
from pathpatch.models.hook_flags import enable_patching_hooks
from pathpatch.models.planted_zoo import PLANTED, build_planted
from pathpatch.models.zoo import SEEDS, TASK_ONLY, load_bundled

log = logging.getLogger(__name__)

Backend = Literal["hooked", "bridge"]
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
FORMS = (
    "a TransformerLens checkpoint folder (config.json + model.safetensors, as save_model writes), a weights file "
    "with config= (--config), a local Hugging Face folder, a Llama-family GGUF file (model.gguf), or "
    "path/to/file.py:function (package.module:function) returning a model"
)


def load_model(
    spec: "str | Path | HookedTransformer | torch.nn.Module",
    device: str | torch.device = "cpu",
    backend: Backend = "hooked",
    config: ConfigSource | None = None,
) -> torch.nn.Module:
    """Return a TransformerLens model for any of the spec forms in the module docstring.

    Args:
        spec: Bundled name, model object, checkpoint folder, weights file, Hugging Face folder, GGUF
            file or ``file.py:function`` / ``package.module:function`` factory.
        device: Device for models this function builds (``cpu``, ``cuda``, ``cuda:1``).
        backend: ``hooked`` (HookedTransformer) or ``bridge`` (TransformerBridge) for Hugging Face folders.
        config: Config of a weights file or checkpoint folder: a ``config.json`` path, a dict of
            ``HookedTransformerConfig`` fields or a ``HookedTransformerConfig``.

    Raises:
        KeyError: Unknown name that is none of the accepted forms.
        FileNotFoundError: A folder without config or weights, or a GGUF or factory file that does not exist.
        ModuleNotFoundError: A GGUF file without the ``gguf`` package installed.
        ValueError: Unsupported architecture, weights that do not match the config or are not a plain
            state dict, a weights file without ``config``, a GGUF file that is not one or cannot be
            dequantized, or a factory function that does not exist.
        TypeError: A model object or factory result that is not a TransformerLens model.
    """
    if isinstance(spec, torch.nn.Module):
        _refuse_config(config, "a model object")
        fix = f"pass a HookedTransformer, a TransformerBridge, a bundled name, {FORMS}"
        return _check_model(spec, f"load_model got a {type(spec).__name__}, which", fix)
    if backend not in ("hooked", "bridge"):
        raise InputError(f"Unknown backend {backend!r}; choose 'hooked' or 'bridge'.")
    name = str(spec)
    if name in SEEDS or name in PLANTED:
        _refuse_config(config, f"the bundled model {name!r}")
        return enable_patching_hooks(load_bundled(name, device)) if name in SEEDS else build_planted(name, device)
    if name in PACKAGED:
        return _load_gguf_file(packaged_gguf(name), device, backend, config)
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        return _load_gguf_file(path, device, backend, config)
    if path.exists():
        return _load_path(path, device, backend, config)
    if parse_factory(name) is not None:
        _refuse_config(config, f"the model factory {name!r}")
        return _prepare(_run_factory(name, device), device)
    if name in TASK_ONLY:
        raise InputError(
            f"{name!r} is a task without a bundled model; give a Hugging Face directory, e.g. a GPT-2 on disk."
        )
    raise InputError(
        f"Unknown model {name!r}: not a bundled model ({', '.join([*SEEDS, *PLANTED])}), not a packaged one "
        f"({', '.join(PACKAGED)}) and no such file or folder. "
        f"Give a bundled name, {FORMS}."
    )


def _refuse_config(config: ConfigSource | None, what: str) -> None:
    """Raise ValueError if ``config`` was given for a spec that does not read one."""
    if config is not None:
        raise InputError(
            f"config= was given for {what}, which has its own config; config= goes with a weights file or a "
            "checkpoint folder. Drop config=."
        )


def _load_gguf_file(
    path: Path, device: str | torch.device, backend: Backend, config: ConfigSource | None
) -> HookedTransformer:
    """Load a GGUF file (see ``gguf.py``); it carries its own config and loads as a HookedTransformer."""
    from pathpatch.models.gguf import load_gguf

    _refuse_config(config, f"the GGUF file {str(path)!r}")
    if backend != "hooked":
        raise InputError(
            f"{path} is a GGUF file, which loads as a HookedTransformer only; use backend='hooked' "
            "(backend='bridge' boots Hugging Face folders)."
        )
    return load_gguf(path, device)


def _check_model(model: object, what: str, fix: str) -> torch.nn.Module:
    """Return ``model`` if it is a TransformerLens model, else raise TypeError ``"{what} is not ...; {fix}."``."""
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "cfg") or not hasattr(model, "run_with_hooks"):
        raise InputError(f"{what} is not a TransformerLens model; {fix}.")
    return model


def _load_path(
    path: Path, device: str | torch.device, backend: Backend, config: ConfigSource | None
) -> torch.nn.Module:
    """Load a checkpoint folder, a Hugging Face folder or a weights file with its config."""
    if path.is_dir() and config is None and not is_checkpoint_dir(path):
        return load_hf_directory(path, device, backend)
    if path.is_dir() or path.suffix in WEIGHT_SUFFIXES:
        if backend != "hooked":
            raise InputError(
                f"{path} is TransformerLens weights, which load as a HookedTransformer; use backend='hooked' "
                "(backend='bridge' boots Hugging Face folders)."
            )
        if path.is_dir():
            return enable_patching_hooks(load_checkpoint(path, device, config))
        if config is None:
            raise InputError(
                f"{path} is a weights file without a config; pass config='path/to/config.json' (--config on the "
                "command line) holding the HookedTransformerConfig fields it was saved with."
            )
        return enable_patching_hooks(load_weights(path, config, device))
    if path.suffix == ".py":
        raise InputError(f"{path} is a Python file; name the function that builds the model: '{path}:make_model'.")
    raise FileNotFoundError(
        f"{path} is a file; give the model folder that holds config.json and the weights, a weights file "
        f"({', '.join(WEIGHT_SUFFIXES)}) with config=, or 'file.py:function'."
    )


def _run_factory(spec: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Import the factory ``spec`` names, call its function and return the model it builds.

    This runs the user's code, so the file it imports is logged at WARNING level. The function is
    called with ``device=device`` if it takes a ``device`` argument, else with no arguments.

    Raises:
        FileNotFoundError: The ``.py`` file does not exist.
        ValueError: The module cannot be found or lacks ``function``.
        TypeError: The function returns something that is not a TransformerLens model.
    """
    factory = import_factory(spec, "model", log)
    kwargs = {"device": device} if "device" in inspect.signature(factory).parameters else {}
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        raise InputError(
            f"Model factory {spec!r} cannot be called with {'only device=' if kwargs else 'no arguments'} ({err}); "
            "give it defaults for its other parameters, or wrap it in a function that takes none."
        ) from None
    model = factory(**kwargs)
    what = f"Model factory {spec!r} returned a value of type {type(model).__name__}, which"
    return _check_model(model, what, "make the function return a HookedTransformer or TransformerBridge")


def _prepare(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """Move a factory's model to ``device``, put it in eval mode and switch on the patching hooks."""
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.device != torch.device(device):
        model = model.to(str(device), print_details=False)
    return enable_patching_hooks(model.eval())


def load_hf_directory(path: Path, device: str | torch.device = "cpu", backend: Backend = "hooked") -> torch.nn.Module:
    """Load a local Hugging Face causal-LM directory offline as a TransformerLens model."""
    from transformers import AutoConfig

    _check_hf_directory(path)
    try:
        hf_config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError, OSError) as err:
        raise InputError(
            f"{path}/config.json does not load as a Hugging Face config ({str(err).splitlines()[0][:300]}). "
            "pathpatch never runs a folder's own Python (auto_map, trust_remote_code); build such a model in "
            "'file.py:function' instead. A TransformerLens checkpoint's config.json needs the fields d_model, "
            "d_head, n_layers and n_ctx."
        ) from err
    if backend == "bridge":
        from transformer_lens.model_bridge import TransformerBridge

        try:
            bridge = TransformerBridge.boot_transformers(str(path), device=str(device), trust_remote_code=False)
        except (ValueError, NotImplementedError, KeyError) as err:
            raise InputError(_unsupported(path, hf_config, err)) from err
        return enable_patching_hooks(bridge.eval())
    cfg_fields = tl_config_dict(path, hf_config)
    return hooked_from_hf(path, cfg_fields, _load_hf_weights(path), _load_tokenizer(path), device)


def hooked_from_hf(
    source: Path, cfg_fields: dict, hf_model: torch.nn.Module, tokenizer, device: str | torch.device = "cpu"
) -> HookedTransformer:
    """Convert a loaded Hugging Face causal LM into a HookedTransformer ready for edge patching.

    The weights go through TransformerLens' own converter for ``cfg_fields["original_architecture"]``
    and are loaded without folding norms, centering or refactoring, so the logits equal the Hugging
    Face model's.

    Args:
        source: The file or folder the model came from (must exist; TransformerLens resolves it).
        cfg_fields: HookedTransformerConfig fields, as ``tl_config_dict`` returns them.
        hf_model: The Hugging Face model holding the weights.
        tokenizer: Its tokenizer, or None for a model that takes token ids only.
        device: Device to build the model on.
    """
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict

    cfg = HookedTransformerConfig(**cfg_fields, device=str(device))
    if tokenizer is None:
        cfg.tokenizer_name = None  # otherwise HookedTransformer fetches a tokenizer by this name
    state = get_pretrained_state_dict(str(source), cfg, hf_model=hf_model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=tokenizer)
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
            f"{path} has no config.json, so it is neither a TransformerLens checkpoint nor a Hugging Face model "
            "directory; write one with pathpatch.models.save_model(model, dir) or model.save_pretrained(dir), or pass "
            "config= with the folder's weights."
        )
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise FileNotFoundError(
            f"{path} has config.json but no weights (model.safetensors or pytorch_model.bin); "
            "save the weights with model.save_pretrained(dir)."
        )


def tl_config_dict(source: Path, hf_config) -> dict:
    """Return HookedTransformerConfig fields for ``hf_config`` through TransformerLens' converter.

    The converter reads a folder's ``config.json``, but picks the architecture by name alone when the
    path contains ``llama`` or ``gemma``, without reading the config. So the config is written into a
    fresh temporary folder and converted from there; ``tokenizer_name`` is set back to ``source``.

    Args:
        source: The folder or file the config came from, named in errors and kept as ``tokenizer_name``.
        hf_config: The Hugging Face config; its ``architectures`` names the converter to use.

    Raises:
        ValueError: TransformerLens does not convert this architecture.
    """
    from transformer_lens.loading_from_pretrained import convert_hf_model_config

    with tempfile.TemporaryDirectory(prefix="pathpatch-config-") as folder:
        hf_config.to_json_file(Path(folder) / "config.json", use_diff=False)
        try:
            fields = convert_hf_model_config(folder, local_files_only=True, trust_remote_code=False)
        except AttributeError as err:
            # TransformerLens reads GPT-2's legacy `n_ctx`, which transformers>=5 no longer writes.
            if getattr(hf_config, "model_type", None) == "gpt2":
                return _gpt2_config_dict(hf_config)
            raise InputError(_unsupported(source, hf_config, err)) from err
        except (NotImplementedError, ValueError, KeyError, TypeError) as err:
            raise InputError(_unsupported(source, hf_config, err)) from err
    return fields | {"tokenizer_name": str(source)}


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
        hf_model, info = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, trust_remote_code=False, output_loading_info=True
        )
    except (RuntimeError, ValueError, OSError) as err:
        raise InputError(
            f"The weights in {path} do not fit its config.json ({str(err).splitlines()[0][:300]}); "
            "re-save the model and config together with model.save_pretrained(dir)."
        ) from err
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if problems:
        raise InputError(
            f"The weights in {path} do not match its config.json: {problems}; re-save the model with "
            "model.save_pretrained(dir) so weights and config agree."
        )
    return hf_model.eval()


def _load_tokenizer(path: Path):
    """Return the directory's tokenizer, or None (with a log line) when it has none."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
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
