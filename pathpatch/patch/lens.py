"""First look at a logit-difference task: direct logit attribution (DLA) and the logit lens (document 001).

The logits at a read position are ``norm(x) @ W_U + b_U``, where ``x`` is the final residual stream: the
sum of the embedding (``blocks.0.hook_resid_pre``), every layer's attention output and every MLP output.
For a task read with ``logit_diff`` the number that matters is ``logit[answer] - logit[wrong]``, the
projection of ``norm(x)`` on the *logit-difference direction* ``W_U[:, answer] - W_U[:, wrong]`` plus
``b_U[answer] - b_U[wrong]``. The final norm is linear once its scale is fixed: LayerNorm centres ``x``,
divides by ``scale = sqrt(var(x) + eps)`` and applies weight ``w`` and bias ``b``; RMSNorm only divides by
``sqrt(mean(x^2) + eps)`` and applies ``w``. Fixing the scale of the final residual at the read position
(TransformerLens' ``ActivationCache.apply_ln_to_stack``), each component ``c`` contributes
``centre(c) / scale . (w * direction)`` (no centring for RMSNorm), and the constant
``b . direction + b_U[answer] - b_U[wrong]`` is reported separately as ``bias``. So:

    embed + sum over layers of (ATTN{l} + MLP{l}) + bias = the logit difference, per prompt, exactly.

Each attention layer splits further into its heads, ``z[h] @ W_O[h]`` (``W_O`` is per query head, also
with grouped-query attention), plus its output bias ``b_O``: ``ATTN{l} = sum_h L{l}H{h} + b_O term``.
Positive values push the model toward the clean answer, negative ones toward the wrong answer (a
"negative head"). With several read positions, each prompt's values are averaged over them, as the
metric is.

The logit lens reads the logit difference from the accumulated residual stream after the embedding
and after each attention and MLP sublayer, two ways:

- ``final_scale`` (document 001's convention): every accumulated stream is divided by the *final*
  residual's scale, which is ``apply_ln_to_stack(accumulated_resid(...), layer=-1)`` in TransformerLens.
  It is linear, so consecutive differences are exactly the sublayers' DLA.
- ``own_scale``: every accumulated stream goes through the final norm with its *own* statistics, as if
  the model stopped there; TransformerLens 3.x's ``accumulated_resid(apply_ln=True)`` computes this.

Both include the ``bias`` constant and end at the model's logit difference.
"""

import difflib
from dataclasses import dataclass, replace

import pandas as pd
import torch
from einops import einsum
from jaxtyping import Float, Int
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.names import hook_name, node_name
from pathpatch.patch.architecture import Architecture
from pathpatch.task.groups import AnyTask, task_groups
from pathpatch.task.task import Task

BIAS = "bias"
PROMPT_COLUMNS = ("prompt", "component", "kind", "layer", "head", "dla")
SUMMARY_COLUMNS = ("component", "kind", "layer", "head", "mean", "std", "ci_low", "ci_high")
LENS_COLUMNS = ("prompt", "stage", "after", "layer", "resid", "final_scale", "own_scale")
LENS_SUMMARY_COLUMNS = ("stage", "after", "layer", "resid", "mean", "std", "ci_low", "ci_high",
                        "own_mean", "own_std", "own_ci_low", "own_ci_high")
LOGIT_DIFF_COLUMNS = ("prompt", "clean", "corrupt")
ADDS_UP_TOLERANCE = 1e-3  # relative: components that miss the final residual by more are not its sum


def attn_name(layer: int) -> str:
    """The DLA name of a whole attention layer (its heads plus ``b_O``), e.g. ``ATTN9``, spelled like ``MLP9``."""
    return f"ATTN{layer}"


@dataclass(frozen=True)
class Component:
    """One piece of the final residual stream's logit difference.

    Attributes:
        name: ``embed``, ``ATTN{l}``, ``L{l}H{h}``, ``MLP{l}`` or ``bias``.
        kind: ``embed``, ``attn``, ``head``, ``mlp`` or ``bias``.
        layer: Its layer (``-1`` for ``embed``, ``n_layers`` for ``bias``).
        head: Head index for heads, else None.
    """

    name: str
    kind: str
    layer: int
    head: int | None = None


def dla_components(model: torch.nn.Module) -> list[Component]:
    """Every component DLA reports for ``model``, in forward order: embed, per layer ATTN, its heads, MLP; bias last."""
    cfg = model.cfg
    out = [Component(node_name("embed"), "embed", -1)]
    for layer in range(cfg.n_layers):
        out.append(Component(attn_name(layer), "attn", layer))
        out += [Component(node_name("head", layer, h), "head", layer, h) for h in range(cfg.n_heads)]
        if not cfg.attn_only:
            out.append(Component(node_name("mlp", layer), "mlp", layer))
    return out + [Component(BIAS, "bias", cfg.n_layers)]


def find_component(model: torch.nn.Module, name: str) -> Component:
    """Return the DLA component called ``name``.

    Raises:
        KeyError: ``name`` is none of the model's components (close spellings are suggested).
    """
    components = {c.name: c for c in dla_components(model)}
    if isinstance(name, str) and name in components:
        return components[name]
    cfg = model.cfg
    close = difflib.get_close_matches(str(name).upper(), [n.upper() for n in components], n=3, cutoff=0.6)
    spelled = {n.upper(): n for n in components}
    hint = f" Did you mean {', '.join(repr(spelled[c]) for c in close)}?" if close else ""
    mlps = "" if cfg.attn_only else f", MLPs 'MLP0'..'MLP{cfg.n_layers - 1}'"
    raise InputError(f"Unknown DLA component {name!r} for a {cfg.n_layers}-layer, {cfg.n_heads}-head model; components are 'embed', "
                   f"heads 'L0H0'..'L{cfg.n_layers - 1}H{cfg.n_heads - 1}', whole attention layers 'ATTN0'..'ATTN{cfg.n_layers - 1}'"
                   f"{mlps} and 'bias'.{hint}")


@dataclass(frozen=True)
class Direction:
    """The logit-difference direction of each prompt and read position, as the final norm's output sees it.

    Attributes:
        unembed: ``W_U[:, answer] - W_U[:, wrong]``.
        folded: ``w * unembed`` (the final norm's weight folded in), centred for LayerNorm: a component's
            DLA is ``component . folded / scale``.
        bias: ``b . unembed + unembed_bias`` (``b`` the final norm's bias, where it has one): every
            component's share is zero, so DLA reports it as its own term.
        unembed_bias: ``b_U[answer] - b_U[wrong]``.
    """

    unembed: Float[Tensor, "batch pos d_model"]
    folded: Float[Tensor, "batch pos d_model"]
    bias: Float[Tensor, "batch pos"]
    unembed_bias: Float[Tensor, "batch pos"]


def logit_diff_direction(model: torch.nn.Module, answers: Int[Tensor, "batch pos"], wrong_answers: Int[Tensor, "batch pos"]) -> Direction:
    """Return the logit-difference direction of each prompt and read position (float32, on the model's device)."""
    W_U, b_U = model.unembed.W_U.float(), model.unembed.b_U.float()
    answers, wrong_answers = answers.to(W_U.device), wrong_answers.to(W_U.device)
    unembed = W_U.T[answers] - W_U.T[wrong_answers]  # [batch pos d_model]
    unembed_bias = b_U[answers] - b_U[wrong_answers]  # [batch pos]
    norm = getattr(model, "ln_final", None)
    weight, shift = getattr(norm, "w", None), getattr(norm, "b", None)
    folded = unembed if weight is None else unembed * weight.float()
    if model.cfg.normalization_type in ("LN", "LNPre"):
        folded = folded - folded.mean(-1, keepdim=True)
    bias = unembed_bias if shift is None else unembed_bias + unembed @ shift.float()
    return Direction(unembed, folded, bias, unembed_bias)


@dataclass(frozen=True)
class FirstLook:
    """Per-prompt tables of one first look at a task; prompts are numbered over all groups, in task order.

    Attributes:
        logit_diff: ``LOGIT_DIFF_COLUMNS``: each prompt's clean and corrupt logit difference.
        dla: ``PROMPT_COLUMNS``: one row per prompt and component (``dla_components``).
        lens: ``LENS_COLUMNS``: one row per prompt and stage of the residual stream (``embed``, after
            ``ATTN{l}``, after ``MLP{l}``); ``resid`` is TransformerLens' label of that stream.
    """

    logit_diff: pd.DataFrame
    dla: pd.DataFrame
    lens: pd.DataFrame

    def dla_table(self, kinds: tuple[str, ...] = ("embed", "attn", "mlp", "bias"), resamples: int = 200, seed: int = 0) -> pd.DataFrame:
        """``SUMMARY_COLUMNS`` over prompts for the components of ``kinds`` (``("head",)`` for heads), with 95% bootstrap intervals."""
        rows = self.dla[self.dla["kind"].isin(kinds)]
        wide = rows.pivot(index="prompt", columns="component", values="dla")
        order = list(dict.fromkeys(rows["component"]))
        stats = summarize(torch.tensor(wide[order].to_numpy()), resamples, seed)
        keys = rows.drop_duplicates("component").set_index("component").loc[order, ["kind", "layer", "head"]].reset_index()
        return pd.concat([keys, stats], axis=1)[list(SUMMARY_COLUMNS)]

    def lens_table(self, resamples: int = 200, seed: int = 0) -> pd.DataFrame:
        """``LENS_SUMMARY_COLUMNS``: each stage's mean logit difference with both scale conventions and 95% intervals."""
        keys = self.lens.drop_duplicates("stage").sort_values("stage")[["stage", "after", "layer", "resid"]].reset_index(drop=True)
        parts = [keys]
        for column, prefix in (("final_scale", ""), ("own_scale", "own_")):
            wide = self.lens.pivot(index="prompt", columns="stage", values=column)
            parts.append(summarize(torch.tensor(wide[keys["stage"].tolist()].to_numpy()), resamples, seed).add_prefix(prefix))
        return pd.concat(parts, axis=1)[list(LENS_SUMMARY_COLUMNS)]


def summarize(values: Float[Tensor, "batch src"], resamples: int = 200, seed: int = 0) -> pd.DataFrame:
    """Return ``mean, std, ci_low, ci_high`` per column over prompts (rows).

    The interval is the 2.5%-97.5% percentile range of the mean over ``resamples`` bootstrap resamples of
    the prompts, drawn as ``graphs.checks.bootstrap`` draws them (same seed, same intervals).
    """
    values = values.double()
    n = values.shape[0]
    generator = torch.Generator().manual_seed(seed)
    means = values[torch.randint(0, n, (resamples, n), generator=generator)].mean(1)  # [resample src]
    return pd.DataFrame({"mean": values.mean(0).numpy(), "std": values.std(0, correction=1 if n > 1 else 0).numpy(),
                         "ci_low": means.quantile(0.025, dim=0).numpy(), "ci_high": means.quantile(0.975, dim=0).numpy()})


def first_look(model: torch.nn.Module, task: AnyTask, *, corrupt: bool = True, batch_size: int = 32, progress: bool = False) -> FirstLook:
    """Return each prompt's logit difference, direct logit attribution and logit lens.

    Args:
        model: A TransformerLens model (``load_model``), pre-norm, without an output soft cap.
        task: A ``logit_diff`` task over tokens; ``TaskGroups`` run group by group.
        corrupt: Also run the corrupt prompts for the ``corrupt`` column (else NaN).
        batch_size: Prompts per forward pass.
        progress: Show a tqdm bar over the forward passes.

    Returns:
        A ``FirstLook`` whose ``dla`` sums (with ``bias``) to each prompt's clean logit difference.

    Raises:
        ValueError: Another metric, vector inputs, a soft-capped or post-norm model, or a bad ``batch_size``.
    """
    from tqdm.auto import tqdm

    check_lens_inputs(model, task, batch_size)
    components = dla_components(model)
    batches = [_slice(g, s, s + batch_size) for g in task_groups(task) for s in range(0, g.clean.shape[0], batch_size)]
    parts: list[dict[str, Tensor]] = []
    for part in tqdm(batches, desc="first look", disable=not progress, leave=False):
        read = read_group(model, part)
        if corrupt:
            with torch.no_grad():
                read["corrupt"] = part.score_per_prompt(model(part.corrupt.to(model.cfg.device))).float().cpu()
        parts.append(read)
    joined = {key: torch.cat([p[key] for p in parts], dim=-1) for key in parts[0]}
    n = joined["clean"].shape[0]
    logit_diff = pd.DataFrame({"prompt": range(n), "clean": joined["clean"].double().numpy(),
                               "corrupt": joined["corrupt"].double().numpy() if corrupt else float("nan")})
    return FirstLook(logit_diff, _dla_frame(components, joined["dla"]), _lens_frame(model, joined["final_scale"], joined["own_scale"]))


def dla_per_prompt(model: torch.nn.Module, task: AnyTask, component: str, batch_size: int = 32) -> Float[Tensor, "batch"]:
    """Return one component's DLA per prompt (CPU, float32), in task order.

    Raises:
        KeyError: ``component`` is not one of ``dla_components(model)``.
        ValueError: As ``first_look``.
    """
    index = [c.name for c in dla_components(model)].index(find_component(model, component).name)
    check_lens_inputs(model, task, batch_size)
    values = [read_group(model, _slice(g, s, s + batch_size))["dla"][index]
              for g in task_groups(task) for s in range(0, g.clean.shape[0], batch_size)]
    return torch.cat(values)


def check_lens_inputs(model: torch.nn.Module, task: AnyTask, batch_size: int = 32) -> None:
    """Raise ValueError (naming the fix) unless DLA and the logit lens are exact for this model and task."""
    if task.metric_name != "logit_diff":
        raise InputError(f"Task '{task.name}' is scored with {task.metric_name!r}; direct logit attribution and the logit lens "
                         "decompose a logit difference, so give a task scored with 'logit_diff' (an answer and a wrong-answer "
                         "token per read position).")
    if task_groups(task)[0].clean.is_floating_point():
        raise InputError(f"Task '{task.name}' feeds vectors, not tokens; DLA needs token answers read through the unembedding.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r}; give a positive number of prompts per forward pass, e.g. 32.")
    arch = Architecture.of(model)
    if arch.soft_cap is not None:
        raise InputError(f"This model ({arch.name}) soft-caps its logits (cap {arch.soft_cap}), so they are not a sum of "
                         "components; DLA and the logit lens need uncapped logits. Use activation patching instead.")
    if arch.norm_after:
        raise InputError(f"This model ({arch.name}) normalises after attention and MLP, so its components' outputs do not add up "
                         "to the final residual stream; DLA needs a pre-norm model. Use activation patching instead.")
    task.check_model(model)


def read_group(model: torch.nn.Module, task: Task) -> dict[str, Tensor]:
    """One clean forward pass of a same-shape task: ``clean`` ``[batch]``, ``dla`` ``[src batch]`` (in
    ``dla_components`` order), ``final_scale``/``own_scale`` lens values ``[stage batch]``; float32, CPU."""
    cfg = model.cfg
    device = cfg.device
    positions = task.positions.to(device) % task.clean.shape[1]
    names = _hook_names(model)
    with torch.no_grad():
        logits, cache = model.run_with_cache(task.clean.to(device), names_filter=lambda name: name in names)
        missing = sorted(names - set(cache.keys()))
        if missing:
            raise InputError(f"Hook {missing[0]!r} never ran; load the model via models.load_model(), a HookedTransformer "
                             "with the standard TransformerLens hooks.")
        read = {name: cache[name][:, positions].float() for name in names}  # each [batch pos ...]
        direction = logit_diff_direction(model, task.answers, task.wrong_answers)
        final = hook_name("scale", None)  # the final norm's ln_final.hook_scale
        scale = read[final][..., 0] if final in read else torch.ones(direction.bias.shape, device=device)  # [batch pos]
        pieces = _pieces(model, read, direction, scale)  # [src batch pos]
        stream = _stream(model, read)  # [stage batch pos d_model]
        _check_adds_up(model, stream[-1], read[hook_name("resid_post", cfg.n_layers - 1)])
        own = _own_norm(model, stream)  # [stage batch pos d_model]
        own_scale = einsum(own, direction.unembed, "stage batch pos d_model, batch pos d_model -> stage batch pos")
        steps = pieces[[i for i, c in enumerate(dla_components(model)) if c.kind in ("embed", "attn", "mlp")]]  # [stage batch pos]
        final_scale = steps.cumsum(0) + pieces[-1]
        return {"clean": task.score_per_prompt(logits).float().cpu(), "dla": pieces.mean(-1).cpu(),
                "final_scale": final_scale.mean(-1).cpu(), "own_scale": (own_scale + direction.unembed_bias[None]).mean(-1).cpu()}


def _hook_names(model: torch.nn.Module) -> set[str]:
    """The hooks one first look reads."""
    cfg = model.cfg
    names = {hook_name("resid_pre", 0), hook_name("resid_post", cfg.n_layers - 1)}
    for layer in range(cfg.n_layers):
        names |= {hook_name("z", layer), hook_name("attn_out", layer)}
        if not cfg.attn_only:
            names.add(hook_name("mlp_out", layer))
    if cfg.normalization_type is not None:
        names.add(hook_name("scale", None))
    return names


def _pieces(model: torch.nn.Module, read: dict[str, Tensor], direction: Direction, scale: Tensor) -> Tensor:
    """Every component's DLA at each read position ``[src batch pos]``, in ``dla_components`` order."""
    cfg = model.cfg
    project = lambda x: (x * direction.folded).sum(-1) / scale  # noqa: E731  [batch pos d_model] -> [batch pos]
    out = [project(read[hook_name("resid_pre", 0)])]
    for layer in range(cfg.n_layers):
        out.append(project(read[hook_name("attn_out", layer)]))
        W_O = model.blocks[layer].attn.W_O.float()  # [head d_head d_model], one per query head
        along = einsum(W_O, direction.folded, "head d_head d_model, batch pos d_model -> batch pos head d_head")
        heads = (read[hook_name("z", layer)] * along).sum(-1) / scale[..., None]  # [batch pos head]
        out += list(heads.unbind(-1))
        if not cfg.attn_only:
            out.append(project(read[hook_name("mlp_out", layer)]))
    out.append(direction.bias)
    return torch.stack(out)


def _own_norm(model: torch.nn.Module, stream: Tensor) -> Tensor:
    """Each accumulated stream through the final norm with its own statistics ``[stage batch pos d_model]``, float32."""
    if model.cfg.normalization_type is None:
        return stream
    dtype = getattr(model.cfg, "dtype", torch.float32)
    return model.ln_final(stream.flatten(0, 1).to(dtype)).unflatten(0, stream.shape[:2]).float()


def _stream(model: torch.nn.Module, read: dict[str, Tensor]) -> Tensor:
    """The accumulated residual stream after embed and each sublayer ``[stage batch pos d_model]``."""
    cfg = model.cfg
    steps = [read[hook_name("resid_pre", 0)]]
    for layer in range(cfg.n_layers):
        steps.append(read[hook_name("attn_out", layer)])
        if not cfg.attn_only:
            steps.append(read[hook_name("mlp_out", layer)])
    return torch.stack(steps).cumsum(0)


def _check_adds_up(model: torch.nn.Module, total: Tensor, final: Tensor) -> None:
    """Raise ValueError when embed + attention + MLP outputs miss the final residual stream."""
    error = float((total - final).abs().max())
    if error > ADDS_UP_TOLERANCE * (1.0 + float(final.abs().max())):
        raise InputError(f"The embedding plus every attention and MLP output misses the final residual stream by {error:.3g} in this "
                         f"model ({Architecture.of(model).name}), so DLA would not add up; it needs a pre-norm model whose blocks add "
                         "their outputs to the stream as they are. Use activation patching instead.")


def _slice(task: Task, start: int, stop: int) -> Task:
    """Prompts ``start:stop`` of a same-shape task."""
    if start == 0 and stop >= task.clean.shape[0]:
        return task
    cut = lambda x: None if x is None else x[start:stop]  # noqa: E731
    features = None if task.features is None else {k: v[start:stop] for k, v in task.features.items()}
    return replace(task, clean=cut(task.clean), corrupt=cut(task.corrupt), answers=cut(task.answers),
                   wrong_answers=cut(task.wrong_answers), reference=cut(task.reference), features=features)


def _dla_frame(components: list[Component], values: Tensor) -> pd.DataFrame:
    """``PROMPT_COLUMNS`` from ``[src batch]`` values."""
    n = values.shape[1]
    frame = pd.DataFrame({
        "prompt": [p for _ in components for p in range(n)],
        "component": [c.name for c in components for _ in range(n)],
        "kind": [c.kind for c in components for _ in range(n)],
        "layer": [c.layer for c in components for _ in range(n)],
        "head": pd.array([c.head for c in components for _ in range(n)], dtype="Int64"),
        "dla": values.flatten().double().numpy(),
    })
    return frame[list(PROMPT_COLUMNS)]


def _lens_frame(model: torch.nn.Module, final_scale: Tensor, own_scale: Tensor) -> pd.DataFrame:
    """``LENS_COLUMNS`` from ``[stage batch]`` values."""
    stages = lens_stages(model)
    n = final_scale.shape[1]
    frame = pd.DataFrame({
        "prompt": [p for _ in stages for p in range(n)],
        "stage": [i for i in range(len(stages)) for _ in range(n)],
        "after": [s[0] for s in stages for _ in range(n)],
        "layer": [s[1] for s in stages for _ in range(n)],
        "resid": [s[2] for s in stages for _ in range(n)],
        "final_scale": final_scale.flatten().double().numpy(),
        "own_scale": own_scale.flatten().double().numpy(),
    })
    return frame[list(LENS_COLUMNS)]


def lens_stages(model: torch.nn.Module) -> list[tuple[str, int, str]]:
    """``(after, layer, resid)`` of each logit-lens stage: the sublayer just added and TransformerLens'
    ``accumulated_resid`` label of the stream there (empty where it has none: parallel attention and MLP)."""
    cfg = model.cfg
    parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
    pre = lambda layer: "final_post" if layer == cfg.n_layers else f"{layer}_pre"  # noqa: E731
    stages = [("embed", -1, pre(0))]
    for layer in range(cfg.n_layers):
        mid = pre(layer + 1) if cfg.attn_only else ("" if parallel else f"{layer}_mid")
        stages.append((attn_name(layer), layer, mid))
        if not cfg.attn_only:
            stages.append((node_name("mlp", layer), layer, pre(layer + 1)))
    return stages
