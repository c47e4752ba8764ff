"""The bundled seed-task models: their specs, construction, evaluation and shipped weights.

Each seed task of the source documents gets a ``SeedSpec``: the exact model config of its document,
a seeded sampler, the positions read, the training recipe and the accuracy target. Trained weights
ship inside the package as ``weights/<name>.safetensors`` next to ``weights/<name>.json``, which
records the config, seed, steps and the accuracy measured on fresh data when they were trained.
``pathpatch train NAME`` rebuilds both; tests re-measure the accuracy, which is how we know the
weights are real.
"""

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.errors import InputError
from pathpatch.files import write_atomic, write_text_atomic
from pathpatch.models.continuous import ContinuousInputTransformer
from pathpatch.models.planted_zoo import PLANTED
from pathpatch.models.seeds import greater_than, induction, ioi, permute, recurrence, sorted_list, trigrams, weekday
from pathpatch.models.seeds.common import Batch
from pathpatch.task.groups import AnyTask
from pathpatch.task.task import Task

EVAL_SEED = 12_345


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How a seed model is trained: AdamW with linear warm-up and linear decay."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup: int = 100
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class SeedSpec:
    """One seed task: model config, data, training recipe and the target its model must meet.

    Attributes:
        name: Model and task name (``permute``, ``sorted-list``, ``trigrams``, ``recurrence``).
        document: The source document it follows (``000`` .. ``004``).
        summary: One line on the task and its circuit.
        config: ``HookedTransformerConfig`` keyword arguments, as in the document.
        positions: Sequence positions whose outputs are trained and read.
        loss: ``cross_entropy`` on next tokens, or ``mse`` on next vectors.
        train: The training recipe.
        sample: ``(n, generator) -> Batch`` for training and evaluation.
        make_task: ``(n, seed, corruption) -> Task`` of clean/corrupt pairs.
        corruptions: Corruptions ``make_task`` knows; the first is the default.
        target: Accuracy to reach (``cross_entropy``), or MSE to stay under (``mse``).
        frozen_biases: Keep every bias at zero, as the documents' bias-free models do.
    """

    name: str
    document: str
    summary: str
    config: dict
    positions: tuple[int, ...]
    loss: Literal["cross_entropy", "mse"]
    train: TrainConfig
    sample: Callable[[int, torch.Generator], Batch]
    make_task: Callable[..., Task]
    corruptions: tuple[str, ...]
    target: float
    frozen_biases: bool = False

    @property
    def continuous(self) -> bool:
        """Whether the model reads vectors rather than token ids."""
        return self.loss == "mse"


SEEDS: dict[str, SeedSpec] = {
    spec.name: spec
    for spec in (
        SeedSpec(
            name="permute",
            document="000",
            summary="permute a 3-list by pointers; V-composition L0H0 -> L1H0.v",
            config=permute.CONFIG,
            positions=permute.POSITIONS,
            loss="cross_entropy",
            train=TrainConfig(steps=3000, batch_size=256, lr=1e-3, weight_decay=0.01),
            sample=permute.sample,
            make_task=permute.make_task,
            corruptions=permute.CORRUPTIONS,
            target=0.99,
            frozen_biases=True,
        ),
        SeedSpec(
            name="sorted-list",
            document="002",
            summary="sort 10 distinct values; heads attend to the next larger value and copy it",
            config=sorted_list.CONFIG,
            positions=sorted_list.POSITIONS,
            loss="cross_entropy",
            train=TrainConfig(steps=4000, batch_size=256, lr=1e-3, weight_decay=0.01),
            sample=sorted_list.sample,
            make_task=sorted_list.make_task,
            corruptions=sorted_list.CORRUPTIONS,
            target=0.95,
        ),
        SeedSpec(
            name="trigrams",
            document="003",
            summary="complete planted trigrams; previous-token head feeding an MLP",
            config=trigrams.CONFIG,
            positions=trigrams.POSITIONS,
            loss="cross_entropy",
            train=TrainConfig(steps=6000, batch_size=128, lr=3e-3, weight_decay=0.01),
            sample=trigrams.sample,
            make_task=trigrams.make_task,
            corruptions=trigrams.CORRUPTIONS,
            target=0.93,
        ),
        SeedSpec(
            name="recurrence",
            document="004",
            summary="predict the next vector of a linear recurrence; negative copy heads in layer 2",
            config=recurrence.CONFIG,
            positions=recurrence.POSITIONS,
            loss="mse",
            train=TrainConfig(steps=2000, batch_size=64, lr=1e-3, weight_decay=0.01),
            sample=recurrence.sample,
            make_task=recurrence.make_task,
            corruptions=recurrence.CORRUPTIONS,
            target=0.005,
        ),
    )
}
# Tasks for pretrained language models: generators ``(n, seed, corruption, model=...)`` that build their prompts
# with the given model's tokenizer; no model is bundled for them.
TASK_ONLY: dict[str, Callable[..., AnyTask]] = {
    "weekday": weekday.make_task,
    "ioi": ioi.make_task,
    "induction": induction.make_task,
    "greater-than": greater_than.make_task,
}
TASK_SUMMARIES: dict[str, tuple[str, str]] = {  # name -> (source, one line on the task), for `pathpatch models`
    "weekday": ("001", "next weekday; any model whose tokenizer keeps the days one token"),
    "ioi": ("Wang+22", "indirect object identification; logit diff IO - S at END; name movers, S-inhibition"),
    "induction": ("Olsson+22", "repeated random word tokens; previous-token and induction heads"),
    "greater-than": ("Hanna+23", "tens digit of a later year; logits of greater minus smaller digits; digit-split tokenizers"),
}
TASK_CORRUPTIONS: dict[str, tuple[str, ...]] = {
    **{name: spec.corruptions for name, spec in SEEDS.items()},
    "weekday": weekday.CORRUPTIONS,
    "ioi": ioi.CORRUPTIONS,
    "induction": induction.CORRUPTIONS,
    "greater-than": greater_than.CORRUPTIONS,
    **{name: ("paired",) for name in PLANTED},
}


def get_seed(name: str) -> SeedSpec:
    """Return the spec of a bundled seed model; raise KeyError listing the known names."""
    if name not in SEEDS:
        raise InputError(
            f"Unknown seed model {name!r}; bundled models are {', '.join(SEEDS)} "
            f"(task without a model: {', '.join(TASK_ONLY)})."
        )
    return SEEDS[name]


def build_model(spec: SeedSpec, device: str | torch.device = "cpu") -> HookedTransformer:
    """Return a freshly initialised model of ``spec``'s config (seeded by ``config['seed']``)."""
    cfg = HookedTransformerConfig(**spec.config, device=str(device))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        model = ContinuousInputTransformer(cfg) if spec.continuous else HookedTransformer(cfg)
    if spec.frozen_biases:
        for name, param in model.named_parameters():
            if name.split(".")[-1].startswith("b_"):
                param.requires_grad_(False)
                param.data.zero_()
    return model


def weights_dir() -> Path:
    """Return the package folder holding the bundled weights."""
    return Path(str(resources.files("pathpatch.models") / "weights"))


def read_card(name: str, directory: Path | None = None) -> dict:
    """Return the JSON record shipped with a bundled model (config, seed, steps, accuracy)."""
    path = (directory or weights_dir()) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"No trained weights for {name!r} at {path}; run `pathpatch train {name}` to create them."
        )
    return json.loads(path.read_text())


def load_bundled(name: str, device: str | torch.device = "cpu", directory: Path | None = None) -> HookedTransformer:
    """Return the bundled, trained model ``name`` on ``device``."""
    spec = get_seed(name)
    directory = directory or weights_dir()
    read_card(name, directory)
    model = build_model(spec, device)
    state = load_file(str(directory / f"{name}.safetensors"), device=str(device))
    model.load_state_dict(state, strict=True)
    return model.eval()


BELOW_TARGET = ".below-target"


def save_bundled(name: str, model: HookedTransformer, card: dict, directory: Path | None = None, below_target: bool = False) -> Path:
    """Write ``model``'s weights and ``card`` atomically; return the weights path.

    With ``below_target`` (a model that missed its target) they go to ``<name>.below-target.safetensors``
    and ``.json`` instead, so weights that meet the target are never replaced by worse ones.
    """
    directory = directory or weights_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{name}{BELOW_TARGET}" if below_target else name
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    target = directory / f"{stem}.safetensors"
    write_atomic(target, lambda tmp: save_file(state, tmp))
    write_text_atomic(directory / f"{stem}.json", json.dumps({**card, "below_target": True} if below_target else card, indent=2) + "\n")
    return target


@torch.no_grad()
def evaluate(model: HookedTransformer, spec: SeedSpec, n: int = 1024, seed: int = EVAL_SEED) -> dict[str, float]:
    """Return accuracy (token tasks) or MSE (vector tasks) of ``model`` on fresh data from ``seed``."""
    batch = spec.sample(n, torch.Generator().manual_seed(seed))
    device = model.cfg.device
    out = model(batch.inputs.to(device))[:, list(spec.positions)].cpu()  # [batch pos d_vocab]
    if spec.continuous:
        mse = (out - batch.targets).pow(2).mean().item()
        last_input = batch.inputs[:, list(spec.positions)]
        baseline = (last_input - batch.targets).pow(2).mean().item()
        return {"mse": mse, "mse_copy_last_input": baseline}
    correct = (out.argmax(-1) == batch.targets)[batch.mask]
    return {"accuracy": correct.float().mean().item(), "n_scored": int(batch.mask.sum())}


def meets_target(spec: SeedSpec, metrics: dict[str, float]) -> bool:
    """Whether measured metrics reach the spec's target."""
    if spec.continuous:
        return metrics["mse"] <= spec.target
    return metrics["accuracy"] >= spec.target


def build_task(
    name: str,
    n: int = 64,
    seed: int = 0,
    corruption: str | None = None,
    model: HookedTransformer | None = None,
) -> AnyTask:
    """Return ``n`` clean/corrupt pairs of the named task, generated from ``seed``.

    Seed and planted tasks ignore ``model``; the language-model tasks (``TASK_ONLY``) build their prompts
    with its tokenizer and may return ``TaskGroups`` of same-length prompts.

    Raises:
        KeyError: Unknown task name (the message lists the known ones).
        ValueError: Unknown corruption, or ``n`` < 1; for ``TASK_ONLY`` tasks also no tokenizer or a word
            the tokenizer splits (the message names it and its pieces).
    """
    if name not in TASK_CORRUPTIONS:
        raise InputError(f"Unknown task {name!r}; known tasks are {', '.join(TASK_CORRUPTIONS)}.")
    if n < 1:
        raise InputError(f"Task '{name}': n={n} prompts; ask for at least 1.")
    known = TASK_CORRUPTIONS[name]
    if corruption is not None and corruption not in known:
        raise InputError(f"Task '{name}': unknown corruption {corruption!r}; choose one of {', '.join(known)}.")
    if name in TASK_ONLY:
        return TASK_ONLY[name](n, seed, corruption, model=model)
    if name in PLANTED:
        return PLANTED[name].make_task(n, seed)
    return SEEDS[name].make_task(n, seed, corruption)
