"""A checkpoint's ``config.json``: written from a HookedTransformerConfig, and read back with every key checked.

Keys that ``HookedTransformerConfig`` does not take are dropped with one warning naming them; every other
key is checked (JSON type from the config's own annotations, sign, the values TransformerLens branches on,
float dtype) before the model is built, so a bad value is named with its file rather than failing deep
inside TransformerLens.
"""

import dataclasses
import json
import logging
import math
import numbers
import typing
import warnings
from pathlib import Path

import torch
from transformer_lens import HookedTransformerConfig
from transformer_lens.utilities import SUPPORTED_ACTIVATIONS

from pathpatch.errors import InputError

log = logging.getLogger(__name__)

HF_CONFIG_KEYS = ("model_type", "architectures")  # a Hugging Face config, not a TransformerLens one

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# Sizes: integers from 1; the derived ones may also be -1 (computed from d_model/d_head or the tokenizer).
DERIVED_FIELDS = frozenset({"n_heads", "d_vocab", "d_vocab_out"})
POSITIVE_FIELDS = DERIVED_FIELDS | {
    "d_model", "d_head", "n_layers", "n_ctx", "d_mlp", "n_key_value_heads", "num_experts", "experts_per_token",
    "window_size", "n_devices", "rotary_dim", "train_seq_length", "NTK_original_ctx_len",
    "yarn_original_max_position_embeddings", "relative_attention_max_distance", "relative_attention_num_buckets",
}
CHOICES = {  # the values HookedTransformer builds a model for (its __init__ and forward branch on these)
    "act_fn": (None, *SUPPORTED_ACTIVATIONS),
    "normalization_type": (None, "LN", "LNPre", "RMS", "RMSPre"),
    "positional_embedding_type": ("standard", "rotary", "shortformer", "alibi"),
    "attention_dir": ("causal", "bidirectional"),
    "init_mode": ("gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "muP"),
}
ConfigSource = str | Path | dict | HookedTransformerConfig


def config_to_json(cfg: HookedTransformerConfig) -> dict:
    """Return the config's fields as JSON values: dtypes as ``"float32"``, devices as strings.

    Values JSON cannot hold are left out with one logged warning naming them.
    """
    fields, dropped = {}, []
    for key, value in cfg.to_dict().items():
        try:
            fields[key] = _jsonable(value)
        except TypeError:
            dropped.append(key)
    if dropped:
        log.warning("config.json leaves out %s: their values are not JSON-serializable.", ", ".join(dropped))
    return fields


def _jsonable(value):
    """Return ``value`` as JSON data, or raise TypeError."""
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value).removeprefix("torch.")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    raise TypeError(type(value).__name__)


def _is_tl_config(fields: dict) -> bool:
    """A TransformerLens config has every required field and none of Hugging Face's marker keys."""
    return not any(key in fields for key in HF_CONFIG_KEYS) and _required_fields() <= fields.keys()


def _required_fields() -> set[str]:
    """The HookedTransformerConfig fields without a default (``d_model``, ``d_head``, ``n_layers``, ``n_ctx``)."""
    missing = dataclasses.MISSING
    return {
        field.name
        for field in dataclasses.fields(HookedTransformerConfig)
        if field.init and field.default is missing and field.default_factory is missing
    }


def make_config(config: ConfigSource, device: str | torch.device = "cpu") -> HookedTransformerConfig:
    """Build a HookedTransformerConfig on ``device`` from a JSON file, a dict of fields or a config.

    Keys that are not HookedTransformerConfig fields are dropped with one warning naming them; dtype
    strings (``"float32"``, ``"torch.float32"``) become torch dtypes. ``trust_remote_code`` is
    always off.

    Raises:
        FileNotFoundError: A config path that does not exist.
        TypeError: ``config`` is none of the accepted kinds.
        ValueError: The fields do not make a valid HookedTransformerConfig.
    """
    if isinstance(config, HookedTransformerConfig):
        fields, source = dict(config.to_dict()), "the HookedTransformerConfig"
    elif isinstance(config, dict):
        fields, source = dict(config), "the config dict"
    elif isinstance(config, (str, Path)):
        fields, source = read_config_file(Path(config)), str(config)
    else:
        raise InputError(
            f"config is a {type(config).__name__}; pass a config.json path, a dict of HookedTransformerConfig "
            "fields or a HookedTransformerConfig."
        )
    return _config_from_fields(fields, source, device)


def read_config_file(path: Path) -> dict:
    """Return the fields of a TransformerLens ``config.json``; refuse missing, malformed or Hugging Face ones."""
    if not path.is_file():
        raise FileNotFoundError(
            f"Config {path} does not exist; give the config.json the weights were saved with "
            "(HookedTransformerConfig fields, as model.cfg.to_dict() holds them)."
        )
    try:
        fields = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM, as Windows editors write one, is no error
    except ValueError as err:
        raise InputError(f"Config {path} is not valid JSON ({err}); fix or re-write it with save_model().") from err
    if not isinstance(fields, dict):
        raise InputError(f"Config {path} holds a JSON {type(fields).__name__}, not an object of config fields.")
    if any(key in fields for key in HF_CONFIG_KEYS):
        raise InputError(
            f"Config {path} is a Hugging Face config (it has model_type/architectures); give the folder that holds "
            "it and the Hugging Face weights instead of a weights file with config=."
        )
    return fields


def _config_from_fields(fields: dict, source: str, device: str | torch.device) -> HookedTransformerConfig:
    """Build the config from ``fields``, dropping (and naming) the keys HookedTransformerConfig does not take."""
    known = {f.name: f.init for f in dataclasses.fields(HookedTransformerConfig)}
    unknown = sorted(key for key in fields if key not in known)
    if unknown:
        warnings.warn(f"{source}: ignoring keys HookedTransformerConfig does not take: {', '.join(unknown)}")
    missing = sorted(_required_fields() - fields.keys())
    if missing:
        raise InputError(f"{source} lacks the HookedTransformerConfig fields {', '.join(missing)}; add them.")
    kwargs = {key: value for key, value in fields.items() if known.get(key)}
    kwargs.update(dtype=_dtype(kwargs.get("dtype", torch.float32), source), device=str(device), trust_remote_code=False)
    _check_fields(kwargs, source)
    seed = kwargs.pop("seed", None)  # a seeded config reseeds every global generator; the weights are loaded anyway
    try:
        cfg = HookedTransformerConfig(**kwargs)
    except (AssertionError, TypeError, ValueError, KeyError) as err:
        raise InputError(f"{source} is not a valid HookedTransformerConfig ({err}); fix the named field.") from err
    cfg.seed = seed
    return cfg


def _dtype(value: str | torch.dtype, source: str) -> torch.dtype:
    """Return the floating dtype named by ``value`` (``"float32"``, ``"torch.bfloat16"``); TransformerLens runs no others."""
    dtype = value if isinstance(value, torch.dtype) else getattr(torch, value.removeprefix("torch."), None) if isinstance(value, str) else None
    if dtype not in DTYPES:
        raise InputError(f"{source}: \"dtype\": {_shown(value)} is not a dtype TransformerLens models run in; "
                         f"use one of {', '.join(str(d).removeprefix('torch.') for d in DTYPES)}.")
    return dtype


def _check_fields(kwargs: dict, source: str) -> None:
    """Refuse a field of the wrong JSON type, sign or choice, naming key, value and the accepted values.

    Types come from HookedTransformerConfig's annotations; sizes must be positive (``n_heads``,
    ``d_vocab`` and ``d_vocab_out`` may be -1, "derive it") and below 2**31, so a bad value never
    reaches the model's constructor (where ``"2"`` or ``2.5`` fail obscurely and ``-128`` or 10**12 allocate).
    """
    hints = typing.get_type_hints(HookedTransformerConfig)
    for key, value in kwargs.items():
        if key in ("dtype", "device", "trust_remote_code"):
            continue  # dtype is checked by _dtype, the other two are set by the loader
        kind, nullable = _kind(hints[key])
        if value is None or key in CHOICES:  # attention-only configs hold act_fn null: CHOICES allows it
            ok = value in CHOICES[key] if key in CHOICES else nullable
        elif kind in (bool, str, list):
            ok = isinstance(value, kind) and (key != "attn_types" or all(v in ("global", "local") for v in value))
        elif kind is int:
            size = key in POSITIVE_FIELDS
            ok = _is_integer(value) and (value >= size or value == -1 and key in DERIVED_FIELDS) and value < 2 ** (31 if size else 63)
        elif kind is float:
            ok = _is_number(value) and math.isfinite(value) and (value > 0 or key not in ("eps", "rotary_base"))
        else:
            ok = True  # a kind this check does not know; HookedTransformerConfig checks it
        if not ok:
            raise InputError(f"{source}: \"{key}\": {_shown(value)} is not {_expected(key, kind, nullable)}; fix it in the "
                             "config (save_model writes a valid one).")


def _kind(hint: object) -> tuple[type, bool]:
    """The JSON kind of a config annotation (``int``, ``float``, ``bool``, ``str``, ``list``) and whether null is allowed."""
    args = typing.get_args(hint)
    core = [arg for arg in args if arg is not type(None)] or [hint]
    kind = float if float in core else typing.get_origin(core[0]) or core[0]
    return kind, type(None) in args  # type: ignore[return-value]


def _expected(key: str, kind: type, nullable: bool) -> str:
    """What ``key`` accepts, in words."""
    if key in CHOICES:
        return "one of " + ", ".join(json.dumps(choice) for choice in CHOICES[key])
    words = {bool: "true or false", str: "a string", list: 'a list of "global"/"local"'}.get(kind)
    if kind is int:
        words = ("a positive integer below 2**31" + (" or -1 (derive it)" if key in DERIVED_FIELDS else "")
                 if key in POSITIVE_FIELDS else "a non-negative integer")
    words = words or ("a positive number" if key in ("eps", "rotary_base") else "a finite number")
    return words + (" or null" if nullable else "")


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _shown(value: object) -> str:
    """The value as JSON writes it, cut to 60 characters."""
    try:
        text = json.dumps(value, default=str)
    except ValueError:  # an integer of thousands of digits
        text = f"an integer of {len(hex(value))} hex digits" if isinstance(value, int) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."
