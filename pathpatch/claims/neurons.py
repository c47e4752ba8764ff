"""MLP neuron measurements for hypothesis claims: direct effect on logits, and correlation with a feature.

A neuron's *direct effect* is what its output adds to the logits through the residual stream alone:
``act * W_out[neuron]`` read by the unembedding after the final norm, whose per-token scale is taken
from the clean run (``ln_final.hook_scale``) and whose centring is applied to the neuron's output
direction, so the number is exact for the linear readout (a soft cap after it is not included). For a
logit-difference task the readout direction is ``W_U[:, answer] - W_U[:, wrong answer]`` of each
prompt; a claim may name tokens instead (the sum of their logits). Values are averaged over the
task's read positions, one per prompt.

The *correlation* is Pearson's r over prompts between the neuron's activation (mean over read
positions) and a per-prompt feature the task carries (``Task.features``).

A neuron is also a node of effect, ablation, compare and rank claims, named ``MLP0.n5``: its *patched*
metric runs the clean prompts with the neuron's activation at every position replaced by its corrupt
value (noising; the corrupt value follows the corruption: the paired or resampled prompts' activation,
its mean over prompts, or zero), or the corrupt prompts with its clean activation (denoising); its
*ablation* replaces the activation by its mean over prompts, as a head's ablation does.
"""

import re

import torch
from torch import Tensor

from pathpatch.errors import InputError, listed
from pathpatch.names import hook_name
from pathpatch.patch.config import PatchConfig, ablate, corrupt_inputs
from pathpatch.task.task import Task

NEURON = re.compile(r"MLP(\d+)\.n(\d+)")


def parse_neuron(name: str) -> "tuple[int, int] | None":
    """``(layer, neuron)`` of a neuron node name such as ``MLP0.n5``, else None."""
    match = NEURON.fullmatch(name)
    return (int(match[1]), int(match[2])) if match else None


def _activations(model: torch.nn.Module, inputs: Tensor, layer: int, neuron: int) -> Tensor:
    """The neuron's activation ``[batch pos]`` on ``inputs``."""
    name = hook_name("mlp_post", layer)
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs.to(next(model.parameters()).device), names_filter=name)
    return cache[name][:, :, neuron]


def _run_with_neuron(model: torch.nn.Module, task: Task, inputs: Tensor, layer: int, neuron: int, value: Tensor) -> Tensor:
    """Per-prompt metric ``[batch]`` of ``inputs`` with the neuron's activation set to ``value`` ``[batch pos]``."""
    def put(act: Tensor, hook) -> Tensor:
        act = act.clone()
        act[:, :, neuron] = value
        return act

    with torch.no_grad():
        logits = model.run_with_hooks(inputs.to(next(model.parameters()).device), fwd_hooks=[(hook_name("mlp_post", layer), put)])
    return task.score_per_prompt(logits).cpu()


def neuron_patched(model: torch.nn.Module, task: Task, layer: int, neuron: int, direction: str, config: PatchConfig) -> Tensor:
    """Per-prompt metric ``[batch]`` with the neuron patched in ``direction`` (see the module docstring)."""
    require_neuron(model, layer, neuron)
    corrupt = corrupt_inputs(task, config)
    clean_act = _activations(model, task.clean, layer, neuron)
    if direction == "denoise":
        if corrupt is None:
            raise InputError(f"MLP{layer}.n{neuron}: denoising a neuron runs the corrupt prompts with its clean activation, and "
                             f"corruption {config.corruption!r} has no corrupt prompts; use direction = \"noise\" or corruption "
                             "\"paired\" or \"resample\".")
        return _run_with_neuron(model, task, corrupt, layer, neuron, clean_act)
    value = _activations(model, corrupt, layer, neuron) if corrupt is not None else ablate(clean_act, None, config.corruption)
    return _run_with_neuron(model, task, task.clean, layer, neuron, value)


def neuron_ablation(model: torch.nn.Module, task: Task, layer: int, neuron: int) -> Tensor:
    """Increase of the task loss ``[batch]`` when the neuron's activation is replaced by its mean over prompts."""
    require_neuron(model, layer, neuron)
    clean_act = _activations(model, task.clean, layer, neuron)
    with torch.no_grad():
        clean = task.score_per_prompt(model(task.clean.to(clean_act.device))).cpu()
    ablated = _run_with_neuron(model, task, task.clean, layer, neuron, clean_act.mean(0, keepdim=True).expand_as(clean_act))
    return (clean - ablated) if task.higher_is_better else (ablated - clean)


def require_neuron(model: torch.nn.Module, layer: int, neuron: int) -> None:
    """Raise ValueError for a layer or neuron the model does not have."""
    cfg = model.cfg
    if cfg.attn_only or not 0 <= layer < cfg.n_layers:
        raise InputError(f"Neuron claim: layer {layer} has no MLP in this {cfg.n_layers}-layer{' attention-only' if cfg.attn_only else ''} model.")
    if not 0 <= neuron < (cfg.d_mlp or 0):
        raise InputError(f"Neuron claim: neuron {neuron} is outside MLP{layer}'s 0..{cfg.d_mlp - 1}; give an index below d_mlp={cfg.d_mlp}.")


def neuron_reads(model: torch.nn.Module, task: Task, layer: int, neuron: int) -> tuple[Tensor, Tensor]:
    """The neuron's activation ``[batch pos]`` and the final norm's scale ``[batch pos]`` at the read positions."""
    post, names = hook_name("mlp_post", layer), [hook_name("mlp_post", layer)]
    if model.cfg.normalization_type is not None:
        names.append("ln_final.hook_scale")
    with torch.no_grad():
        _, cache = model.run_with_cache(task.clean.to(next(model.parameters()).device), names_filter=lambda n: n in names)
    read = task.positions.to(cache[post].device)
    act = cache[post][:, read, neuron].float()
    scale = cache["ln_final.hook_scale"][:, read, 0].float() if len(names) > 1 else torch.ones_like(act)
    return act.cpu(), scale.cpu()


def direct_effect(model: torch.nn.Module, task: Task, layer: int, neuron: int, tokens: "list[int] | None" = None) -> Tensor:
    """Per-prompt direct effect of the neuron on the logit difference (or on the named tokens' logits) ``[batch]``."""
    require_neuron(model, layer, neuron)
    act, scale = neuron_reads(model, task, layer, neuron)  # [batch pos]
    with torch.no_grad():
        out = model.blocks[layer].mlp.W_out[neuron].float()  # [d_model]
        if model.cfg.normalization_type in ("LN", "LNPre"):
            out = out - out.mean()
        w = getattr(getattr(model, "ln_final", None), "w", None)
        out = out * w.float() if w is not None else out
        W_U = model.W_U.float()  # [d_model d_vocab]
        if tokens is not None:
            bad = [t for t in tokens if not 0 <= t < W_U.shape[1]]
            if bad:
                raise InputError(f"Neuron claim: tokens {listed(bad)} lie outside the output vocabulary 0..{W_U.shape[1] - 1}.")
            per_token = (out @ W_U[:, tokens]).sum().cpu().expand_as(act)  # [batch pos]
        else:
            if task.wrong_answers is None:
                raise InputError(f"Task '{task.name}' has no wrong answers; name the tokens a neuron claim reads, e.g. tokens = [3].")
            direction = W_U[:, task.answers.to(W_U.device)] - W_U[:, task.wrong_answers.to(W_U.device)]  # [d_model batch pos]
            per_token = torch.einsum("d,dbp->bp", out, direction).cpu()
    return (act * per_token / scale).mean(-1)


def activation(model: torch.nn.Module, task: Task, layer: int, neuron: int) -> Tensor:
    """Per-prompt activation of the neuron, averaged over read positions ``[batch]``."""
    require_neuron(model, layer, neuron)
    return neuron_reads(model, task, layer, neuron)[0].mean(-1)


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson's correlation of two ``[batch]`` tensors (NaN, undefined, when either is constant)."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denominator = (x.pow(2).sum() * y.pow(2).sum()).sqrt()
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")
