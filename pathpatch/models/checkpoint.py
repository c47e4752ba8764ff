"""TransformerLens checkpoints: a folder holding ``config.json`` and the weights of a HookedTransformer.

A HookedTransformer is fully described by its ``HookedTransformerConfig`` and its state dict, so a
checkpoint is exactly those two: ``config.json`` (the config's fields, as ``model.cfg.to_dict()``
gives them, dtypes written as strings) and ``model.safetensors`` (or one ``*.pt``/``*.pth`` state
dict), plus the tokenizer's files when the model has one. Loading rebuilds the model from the config
and copies the weights in with ``strict=True``, so the loaded model computes the saved model's logits
exactly, and any key or shape that does not fit is an error rather than a silently random weight.

Weights files hold tensors only: safetensors cannot hold code, and pickles are read with
``torch.load(..., weights_only=True)``, which refuses anything but tensors and plain containers, so
loading a checkpoint never runs code. The attention buffers ``*.mask`` and ``*.IGNORE`` are derived
from the config; they are not saved, and those left in older TransformerLens state dicts are replaced
by the ones the rebuilt model computes. Config keys that ``HookedTransformerConfig`` does not take are
dropped with one warning naming them; every other key is checked (JSON type, sign, allowed values, float
dtype) before the model is built, so a bad value is named with its file rather than failing deep inside
TransformerLens, and a config that needs far more weights than the file holds is refused before allocating.
"""

import json
import logging
import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.errors import InputError, listed
from pathpatch.files import write_atomic, write_text_atomic
from pathpatch.models.checkpoint_config import ConfigSource, _is_tl_config, config_to_json, make_config

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
DERIVED_BUFFERS = (".mask", ".IGNORE")
HF_TOKENIZER_FILES = ("tokenizer_config.json", "vocab.json", "tokenizer.model")

def save_model(model: HookedTransformer, directory: str | Path) -> Path:
    """Write ``model`` as a TransformerLens checkpoint folder that ``load_model`` reads back.

    Writes ``model.safetensors`` (contiguous CPU tensors, without the derived ``*.mask``/``*.IGNORE``
    buffers), the tokenizer's files when the model has a tokenizer, and ``config.json`` last, each
    file atomically, so a folder with a ``config.json`` is complete.

    Args:
        model: A plain ``HookedTransformer`` (subclasses change the forward pass, which a config
            and state dict cannot record).
        directory: Folder to write; created if missing, files of the same names are replaced.

    Returns:
        The folder, as a ``Path``.

    Raises:
        TypeError: ``model`` is not a plain ``HookedTransformer``.
    """
    if type(model) is not HookedTransformer:
        raise InputError(
            f"save_model writes plain HookedTransformer checkpoints, got a {type(model).__name__}; its forward "
            "pass is not recorded by a config and state dict. Save its state_dict yourself and rebuild it with a "
            "'file.py:function' factory spec."
        )
    directory = Path(directory)
    state = {
        key: value.detach().to("cpu").contiguous()
        for key, value in model.state_dict().items()
        if not key.endswith(DERIVED_BUFFERS)
    }
    write_atomic(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    if model.tokenizer is not None:
        _save_tokenizer(model.tokenizer, directory)
    write_text_atomic(directory / CONFIG_NAME, json.dumps(config_to_json(model.cfg), indent=2) + "\n")
    return directory



def _save_tokenizer(tokenizer, directory: Path) -> None:
    """Save the tokenizer into a temporary folder, then move each of its files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".tokenizer.") as staging:
        tokenizer.save_pretrained(staging)
        for file in Path(staging).iterdir():
            os.replace(file, directory / file.name)


def is_checkpoint_dir(path: Path) -> bool:
    """Whether ``path`` holds a ``config.json`` of HookedTransformerConfig fields (not a Hugging Face one)."""
    try:
        fields = json.loads((Path(path) / CONFIG_NAME).read_text(encoding="utf-8-sig"))
    except (ValueError, OSError):
        return False
    return isinstance(fields, dict) and _is_tl_config(fields)



def load_checkpoint(
    directory: Path, device: str | torch.device = "cpu", config: ConfigSource | None = None
) -> HookedTransformer:
    """Load a TransformerLens checkpoint folder (``config.json`` and weights) in eval mode on ``device``.

    Args:
        directory: Folder with ``config.json`` and ``model.safetensors`` or one ``*.pt``/``*.pth``.
        device: Device to build the model on.
        config: Config to use instead of the folder's ``config.json`` (path, dict or config).

    Raises:
        FileNotFoundError: No config or no weights in the folder.
        ValueError: Several weights files, a weights file that is not a plain state dict, or
            weights that do not fit the config.
    """
    directory = Path(directory)
    cfg = make_config(directory / CONFIG_NAME if config is None else config, device)
    return _build(cfg, find_weights(directory), directory)


def load_weights(path: Path, config: ConfigSource, device: str | torch.device = "cpu") -> HookedTransformer:
    """Load one weights file (``.safetensors``, ``.pt``, ``.pth``) with the config it was saved with.

    A tokenizer in the weights file's folder is loaded with it.

    Raises:
        FileNotFoundError: The config file does not exist.
        ValueError: The file is not a plain state dict, or its weights do not fit the config.
    """
    path = Path(path)
    return _build(make_config(config, device), path, path.parent)


def find_weights(directory: Path) -> Path:
    """Return ``model.safetensors``, or else the folder's only ``*.safetensors``/``*.pt``/``*.pth`` file."""
    if (directory / WEIGHTS_NAME).is_file():
        return directory / WEIGHTS_NAME
    files = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if len(files) == 1:
        return files[0]
    if not files:
        raise FileNotFoundError(
            f"{directory} has config.json with HookedTransformerConfig fields but no weights (model.safetensors or "
            "one *.pt/*.pth); write them with pathpatch.models.save_model(model, dir) or "
            "torch.save(model.state_dict(), dir / 'model.pt')."
        )
    raise InputError(
        f"{directory} holds {len(files)} weights files ({', '.join(p.name for p in files)}); keep one, or load one "
        f"as a weights file with its config: load_model('{files[0]}', config='{directory / CONFIG_NAME}') "
        "(--config on the command line)."
    )



def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``.pt``/``.pth`` file without running any code in it.

    Raises:
        ValueError: The file is unreadable, holds objects other than tensors, or is not a state dict.
    """
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise InputError(f"{path} is not a readable safetensors file ({err}); re-save it with save_model.") from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL (\S+)", str(err)) or re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
        reason = f"it would run code when loaded: {named.group(1)[:100]}" if named and "GLOBAL" in named.group(0) else (
            named.group(1)[:200] if named else "an unreadable pickle")
        raise InputError(
            f"{path} is not a plain state dict: torch.load(weights_only=True) refused it ({reason}), and pathpatch "
            "never runs code from a weights file. Re-save the weights with torch.save(model.state_dict(), path) or "
            "pathpatch.models.save_model(model, dir)."
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError) as err:  # what damaged files raise
        reason = str(err).strip().split(". ")[0][:200] if isinstance(err, (RuntimeError, OSError, ValueError)) else ""
        raise InputError(f"{path} is not a readable torch file ({reason or 'neither a torch zip archive nor a pickle'}); "
                         "re-save it with torch.save.") from None
    return _unwrap_state_dict(state, path)


def _unwrap_state_dict(state, path: Path) -> dict[str, torch.Tensor]:
    """Return ``state`` if it maps names to tensors, or its ``state_dict``/``model`` entry if that does."""
    for candidate in (state, *(state.get(key) for key in ("state_dict", "model") if isinstance(state, dict))):
        if isinstance(candidate, dict) and candidate and all(torch.is_tensor(v) for v in candidate.values()):
            return dict(candidate)
    kind = f"a dict with keys {sorted(map(str, state))[:5]}" if isinstance(state, dict) else f"a {type(state).__name__}"
    raise InputError(f"{path} holds {kind}, not a state dict (names -> tensors); save model.state_dict() instead.")


def fit_state_dict(model: HookedTransformer, state: dict, source: Path) -> dict[str, torch.Tensor]:
    """Return ``state`` with the model's own derived buffers; raise if keys or shapes do not fit ``model``.

    Raises:
        ValueError: Missing, unexpected or wrongly shaped keys, a few of each named.
    """
    expected = model.state_dict()
    parameters = {name for name, _ in model.named_parameters()}
    derived = {k for k in state.keys() | expected.keys() if k.endswith(DERIVED_BUFFERS) and k not in parameters}
    state = {k: v for k, v in state.items() if k not in derived} | {k: expected[k] for k in derived if k in expected}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    shapes = [
        f"{k} {tuple(state[k].shape)} (config wants {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = {"missing": missing, "unexpected": unexpected, "wrong shape": shapes}
    found = "; ".join(f"{kind}: {listed(keys, 4)}" for kind, keys in problems.items() if keys)
    if found:
        raise InputError(
            f"The weights in {source} do not fit the config ({found}); pass the config the weights were saved "
            "with, e.g. re-save both together with pathpatch.models.save_model(model, dir)."
        )
    return state


def read_tokenizer(directory: Path, tokenizer_name: str | None = None):
    """Return the tokenizer saved in ``directory``, else ``tokenizer_name``'s from the local cache, else None.

    Only local files are read and no tokenizer code from the folder runs.

    Raises:
        ValueError: Tokenizer files in ``directory`` that do not load.
    """
    from transformers import AutoTokenizer

    bare = directory / "tokenizer.json"
    if any((directory / name).is_file() for name in HF_TOKENIZER_FILES):
        try:
            return AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as err:
            if not bare.is_file():
                raise InputError(
                    f"The tokenizer files in {directory} do not load ({err}); re-save them with "
                    "tokenizer.save_pretrained(dir), or remove them to load the model without a tokenizer."
                ) from err
    if bare.is_file():
        return _bare_tokenizer(bare)
    if tokenizer_name is None:
        return None
    try:  # with add_bos_token set, TransformerLens does not reload it by name (online)
        return AutoTokenizer.from_pretrained(
            tokenizer_name, local_files_only=True, trust_remote_code=False, add_bos_token=True
        )
    except (OSError, ValueError, KeyError) as err:
        log.warning("Tokenizer %r is not available offline (%s); the model takes token ids only.", tokenizer_name, err)
        return None


def _bare_tokenizer(path: Path):
    """Wrap a lone ``tokenizer.json``; its first special token serves as BOS and EOS, as ``<|endoftext|>`` in GPT-2.

    ``add_bos_token`` is set here so that TransformerLens does not reload the tokenizer by name.
    """
    from transformers import PreTrainedTokenizerFast

    try:
        added = json.loads(path.read_text()).get("added_tokens") or []
        special = [token["content"] for token in sorted(added, key=lambda t: t["id"]) if token.get("special")]
        tokens = {"bos_token": special[0], "eos_token": special[0], "add_bos_token": True} if special else {}
        return PreTrainedTokenizerFast(tokenizer_file=str(path), name_or_path=str(path.parent), **tokens)
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        raise InputError(f"{path} is not a tokenizers file ({err}); save tokenizers with save_pretrained.") from err


def _build(cfg: HookedTransformerConfig, weights: Path, tokenizer_dir: Path) -> HookedTransformer:
    """Build ``HookedTransformer(cfg)`` with the tokenizer beside the weights, load the weights strictly."""
    state = read_state_dict(weights)
    _check_size(cfg, state, weights)
    tokenizer = read_tokenizer(tokenizer_dir, cfg.tokenizer_name)
    if tokenizer is None:
        cfg.tokenizer_name = None  # otherwise HookedTransformer downloads it
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.load_state_dict(fit_state_dict(model, state, weights), strict=True)
    return model.eval()


def _check_size(cfg: HookedTransformerConfig, state: dict[str, torch.Tensor], weights: Path) -> None:
    """Refuse a config that needs far more weights than ``weights`` holds, before the model allocates them.

    Counts only matrices every such model has (attention, MLPs, embeddings), so a fitting config always passes;
    a typo such as ``"d_model": 1280000`` fails here rather than allocating gigabytes. Smaller misfits reach
    ``fit_state_dict``, which names the keys and shapes that differ.
    """
    kv_heads = cfg.n_key_value_heads or cfg.n_heads
    per_layer = cfg.d_model * cfg.d_head * 2 * (cfg.n_heads + kv_heads)
    if not cfg.attn_only:
        per_layer += 2 * cfg.d_model * (cfg.d_mlp or 0) * (cfg.num_experts or 1)
    learned_positions = cfg.positional_embedding_type in ("standard", "shortformer")
    needed = cfg.n_layers * per_layer + cfg.d_model * (max(cfg.d_vocab, 0) + (cfg.n_ctx if learned_positions else 0))
    held = sum(tensor.numel() for tensor in state.values())
    if needed > 2 * held + 2**24:
        raise InputError(f"The config describes a model of at least {needed:,} weights but {weights} holds {held:,}; "
                         "the config does not fit the weights: pass the config they were saved with.")
