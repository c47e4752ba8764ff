"""Train a seed model from scratch on CPU, deterministically.

The recipe follows the documents: AdamW with weight decay, linear warm-up then linear decay of the
learning rate, cross-entropy on the next token at the read positions (or MSE on the next vector for
the recurrence task). Data come from the seed's sampler with a fixed generator, so the same seed
gives the same weights on the same machine.
"""

import logging
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F
import transformer_lens
from tqdm.auto import trange
from transformer_lens import HookedTransformer

from pathpatch.errors import InputError
from pathpatch.models.zoo import SeedSpec, build_model, evaluate

log = logging.getLogger(__name__)


def training_loss(model: HookedTransformer, spec: SeedSpec, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Return the scalar training loss of ``model`` on one batch."""
    out = model(inputs)[:, list(spec.positions)]  # [batch pos d_vocab]
    if spec.continuous:
        return F.mse_loss(out, targets)
    return F.cross_entropy(out.flatten(0, 1), targets.flatten())


def lr_factor(step: int, warmup: int, steps: int) -> float:
    """Return the learning-rate multiplier: linear warm-up, then linear decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.1, 1.0 - (step - warmup) / max(1, steps - warmup))


def train_seed(
    spec: SeedSpec, steps: int | None = None, device: str = "cpu", progress: bool = False
) -> tuple[HookedTransformer, dict]:
    """Train the model of ``spec``; return it with a card of config, seed, steps and metrics.

    Runs with ``torch.use_deterministic_algorithms`` (restored afterwards): on CPU the embedding's
    backward otherwise sums in a thread-dependent order, and the same seed would not give the same weights.

    Raises:
        ValueError: ``steps`` is not a positive integer (None: the seed's recipe).
    """
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InputError(f"steps={steps!r}; give a positive number of training steps (e.g. {spec.train.steps}, the recipe), or None for the recipe.")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(spec, steps, device, progress)
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(spec: SeedSpec, steps: int | None, device: str, progress: bool) -> tuple[HookedTransformer, dict]:
    cfg = spec.train
    steps = cfg.steps if steps is None else steps
    torch.manual_seed(cfg.seed)
    model = build_model(spec, device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.warmup, steps))
    generator = torch.Generator().manual_seed(cfg.seed)
    started = time.perf_counter()
    bar = trange(steps, desc=f"train {spec.name}", disable=not progress)
    for step in bar:
        batch = spec.sample(cfg.batch_size, generator)
        loss = training_loss(model, spec, batch.inputs.to(device), batch.targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    metrics = evaluate(model, spec)
    card = {
        "name": spec.name,
        "document": spec.document,
        "summary": spec.summary,
        "config": spec.config,
        "train": {**asdict(cfg), "steps": steps},
        "metrics": metrics,
        "target": spec.target,
        "train_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "transformer_lens": transformer_lens.__version__ if hasattr(transformer_lens, "__version__") else "unknown",
    }
    log.info("trained %s in %.0f s: %s", spec.name, card["train_seconds"], metrics)
    return model, card
