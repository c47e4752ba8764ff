"""The discovery pipeline: model + task -> edge scores -> pruned circuit -> faithfulness -> files.

``discover(model, task)`` takes model and task objects or specs (anything ``load_model`` and
``load_task`` accept: a bundled name, a checkpoint folder, a JSONL of prompts, ``file.py:function``).
``exact`` scores every edge by exact patching (``patch_edges``); ``eap`` and ``eap-ig`` rank every edge
by attribution first and then re-score the strongest candidates exactly, so the circuit is always
pruned on exact effects; ``acdc`` prunes greedily on exact circuit runs (``threshold`` is its tau).
Edges are scored in both directions by default (``both_directions``; ``pathpatch.circuit.directions``):
``noise`` (clean run, one edge corrupt: what the edge is necessary for, ACDC's convention) and
``denoise`` (corrupt run, one edge clean: what it suffices for). Each alone misses mechanisms: noising
one of two inputs that each suffice (an OR) changes nothing, denoising one of two that are both needed
(an AND) restores nothing. ``direction`` names the primary one, whose effects fill ``score`` and
``normalized``; attribution takes its gradient at the clean run (noise) or the corrupt run (denoise);
mean and zero ablation have no corrupt run, so they noise only; ACDC runs the primary direction only.
Pruning keeps edges whose ``|normalized|`` reaches ``threshold`` in either direction (or the ``top_k``
strongest), joined to ``embed`` and ``logits``; ``kept_by`` says which direction kept each. Scores and
faithfulness are shares of the clean - corrupt gap of the run's own corruption.

Faithfulness is measured both ways (the circuit alone; only the circuit corrupted) and, with
``cross_check``, under ``resample`` and ``mean`` too, where a paired corruption that keeps some input
the same (and so hides its edges) shows. When any falls below 0.8 the result carries ``doubts``: plain
sentences, in the summary line and the report, on what to try; where it costs less than the run itself,
``second_look`` rediscovers the circuit exactly under each other corruption and reports what those
circuits keep and how faithful they are, without changing the returned circuit. Every setting is
recorded in the circuit's graph attributes and the report, so a run can be repeated.
"""

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from pathpatch.circuit.circuit import Circuit
from pathpatch.circuit.directions import DIRECTION_COLUMNS, join_directions, kept_by, stronger
from pathpatch.circuit.faithfulness import faithfulness, faithfulness_curve, mib_curves
from pathpatch.circuit.prune import acdc, prune
from pathpatch.errors import InputError
from pathpatch.models.loading import load_model
from pathpatch.models.task_files import load_task
from pathpatch.names import component_name
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph
from pathpatch.patch.runner import is_causal
from pathpatch.patch.scores import strongest
from pathpatch.pipeline.config import DiscoverConfig, prune_config, run_directions, with_settings
from pathpatch.pipeline.doubts import second_look
from pathpatch.pipeline.results import DiscoveryResult, EmptyCircuitError
from pathpatch.progress import duration
from pathpatch.task.groups import AnyTask, n_prompts, with_metric
from pathpatch.task.positions import Layout, layout
from pathpatch.vocabulary import DIRECTIONS

log = logging.getLogger("pathpatch.progress")


def score_edges(model: torch.nn.Module, task: AnyTask, config: DiscoverConfig, progress: bool = False) -> pd.DataFrame:
    """Return every edge's score in each of the run's directions (``pathpatch.circuit.directions``): exact, or attributed
    (``approx_score``, ``approx_noise``, ``approx_denoise``) with the ``recheck`` edges of largest attribution in
    either direction re-scored exactly in both (``score``; empty for the others). Exact scores are shares of the
    run's own corruption's clean - corrupt gap (``patch_edges``). ACDC prunes as it scores."""
    patch = config.patch_config(progress)
    if config.method == "acdc":
        return acdc(model, task, tau=config.threshold, config=patch)
    by_pos, directions = config.granularity == "position", run_directions(config)
    approx, edges = {}, None
    if config.method != "exact":
        approx = {d: attribute_edges(model, task, config.method, steps=config.steps, config=replace(patch, direction=d), by_pos=by_pos)
                  for d in directions}
        largest = pd.concat([t["score"].abs() for t in approx.values()], axis=1).max(axis=1)
        edges = list(strongest(approx[config.direction].assign(score=largest), max(config.recheck, config.top_k or 0))["edge"])
        log.info("%s attributed %d edges (%s); re-checking the %d strongest exactly", config.method, len(largest), "+".join(directions), len(edges))
    exact = {d: patch_edges(model, task, edges, by_pos=by_pos and edges is None, config=replace(patch, direction=d)) for d in directions}
    joined = join_directions(exact, config.direction)
    joined["method"] = f"{config.method + '+' if approx else ''}exact-{'+'.join(directions)}"
    if not approx:
        return joined
    table = approx[config.direction].rename(columns={"score": "approx_score"}).drop(columns="method")
    for d in DIRECTIONS:
        table[f"approx_{d}"] = approx[d]["score"].to_numpy() if d in approx else float("nan")
    exact_rows = joined.set_index("edge")
    for column in [c for c in exact_rows.columns if c not in table.columns]:
        table[column] = table["edge"].map(exact_rows[column])
    table["kept_by"], table["method"] = "", joined["method"].iloc[0]
    table.attrs.update(joined.attrs)
    order = ("edge", "src", "dest", "channel", "pos", "metric", "score", "normalized", *DIRECTION_COLUMNS[:4], "approx_score",
             "approx_noise", "approx_denoise", "method", "kept_by")
    return table[[c for c in order if c in table.columns]]


GENERIC_STEMS = ("weights", "model", "pytorch_model", "state_dict", "checkpoint")


def model_label(spec: object, model: torch.nn.Module) -> str:
    """A model's name for reports: a folder's or file's name (the folder's for ``weights.pt``), a factory's
    function, else the config's ``model_name``."""
    if isinstance(spec, (str, Path)):
        text = str(spec).rstrip("/")
        if ":" in text and not Path(text).exists():
            return text.rsplit(":", 1)[-1]
        path = Path(text)
        if path.is_file():
            return path.parent.name if path.stem in GENERIC_STEMS and path.parent.name else path.stem
        return path.name
    return str(getattr(model.cfg, "model_name", None) or type(model).__name__)


def resolve(
    model: "str | Path | torch.nn.Module",
    task: "str | Path | AnyTask | None",
    config: DiscoverConfig,
    model_config: "str | Path | dict | None" = None,
) -> tuple[torch.nn.Module, AnyTask]:
    """Load the model and the task a run names (objects pass through), with the config's metric applied.

    Raises:
        ValueError: No task given for a model that has no task of its own.
    """
    loaded = load_model(model, device=config.device, config=model_config)
    if task is None:
        from pathpatch.models.zoo import TASK_CORRUPTIONS

        own = str(model) if isinstance(model, (str, Path)) else None
        if own not in TASK_CORRUPTIONS:
            raise InputError(
                f"Model {model_label(model, loaded)!r} has no task of its own; pass a task: a bundled task name, a JSONL, "
                "EAP-IG CSV or auto-circuit JSON file of prompt pairs, or file.py:function (task= in Python, --task on the command line)."
            )
        task = own
    return loaded, load_run_task(task, loaded, config)


def load_run_task(spec: "str | Path | AnyTask", model: torch.nn.Module, config: DiscoverConfig) -> AnyTask:
    """A task loaded with the run's settings, checked against the model before any run (a factory's or a caller's
    task may not fit it), with the run's metric."""
    task = load_task(spec, model, n=config.n, seed=config.seed, corruption=config.task_corruption)
    task.check_model(model)
    return with_metric(task, config.metric) if config.metric else task


def discover(
    model: "str | Path | torch.nn.Module",
    task: "str | Path | AnyTask | None" = None,
    config: DiscoverConfig | None = None,
    *,
    progress: bool = False,
    model_config: "str | Path | dict | None" = None,
    model_name: str | None = None,
    **settings,
) -> DiscoveryResult:
    """Find a circuit: score edges, prune, measure faithfulness.

    Args:
        model: A TransformerLens model or any ``load_model`` spec.
        task: A ``Task``/``TaskGroups`` or any ``load_task`` spec; None for a bundled model's own task.
        config: Settings; keywords (``method="eap-ig"``, ``top_k=10`` ...) override single fields.
        progress: Show progress bars.
        model_config: The config beside a bare weights file (``--config``).
        model_name: Name recorded for the model (default: from the spec or ``cfg.model_name``).

    Raises:
        ValueError: Bad settings, or an empty circuit (with the fix: lower the threshold).
    """
    config = with_settings(config or DiscoverConfig(), settings)
    started = time.perf_counter()
    loaded, loaded_task = resolve(model, task, config, model_config)
    found = find_circuit(loaded, loaded_task, config, name=model_name or model_label(model, loaded), progress=progress)
    circuit, exact, columns = found.circuit, found.exact, found.columns
    patch = config.patch_config()
    faith = faithfulness(circuit, loaded, loaded_task, patch)
    curve = faithfulness_curve(exact, loaded, loaded_task, config=patch, positions=columns) if config.method == "exact" else None
    if curve is not None:  # MIB's own CPR (signed ranking) and CMD (|score| ranking), reported beside ours
        signed, absolute = mib_curves(exact, loaded, loaded_task, config=patch, positions=columns)
        curve.attrs.update(mib_cpr=signed.attrs["cpr"], mib_cmd=absolute.attrs["cmd"])
    pictures = circuit_attention_png(loaded, loaded_task, circuit)
    cross, notes = None, ()
    if config.cross_check:
        rediscover = lambda other: kept_edges(loaded, loaded_task, other, columns)  # noqa: E731
        cross, notes = second_look(loaded, loaded_task, config, circuit, faith, time.perf_counter() - started, rediscover, columns)
    return DiscoveryResult(config, found.scores, circuit, faith, time.perf_counter() - started, circuit.model_name, loaded_task.name,
                           n_prompts(loaded_task), curve, pictures, cross, tuple(notes))


@dataclass(frozen=True)
class Found:
    """What scoring and pruning give, before any measurement of the circuit.

    Attributes:
        scores: Every scored edge (``kept_by`` says which direction kept each).
        exact: The exactly scored rows, with the larger effect of the two directions (``directions.stronger``).
        circuit: The pruned circuit with the run's settings recorded.
        columns: The task's position columns for position-aware runs, else None.
    """

    scores: pd.DataFrame
    exact: pd.DataFrame
    circuit: Circuit
    columns: Layout | None


def find_circuit(model: torch.nn.Module, task: AnyTask, config: DiscoverConfig, *, name: str, progress: bool = False) -> Found:
    """Score every edge and prune to a circuit, and nothing more: no faithfulness, curves, pictures or second look.
    ``discover`` measures and reports what this finds; ``check`` needs only the circuit.

    Raises:
        EmptyCircuitError: No edge passes the threshold (the scores travel with the error).
    """
    _say_cost(model, task, config)
    scores = score_edges(model, task, config, progress)
    columns = layout(task, _decoder(model), is_causal(model)) if config.granularity == "position" else None
    exact = stronger(scores)  # exactly scored rows (attribution: the re-checked), with the larger effect of the two directions
    kept = scores if config.method == "acdc" else prune(exact, prune_config(config), columns)
    if kept.empty:
        column = "normalized" if config.relative else "score"
        best = exact[column].abs().max() if len(exact) else 0.0  # an edge that passes is always kept, joined by connectors
        why = f"No edge passes threshold {config.threshold} (largest |{column}| is {best:.3g})" if len(exact) else "No edge has an exact score"
        spread = " (by position an effect is split over the positions that carry it)" if columns is not None else ""
        raise EmptyCircuitError(f"{why}, so the circuit is empty{spread}; lower --threshold or use --top-k.", scores)
    info = {"corruption": config.corruption, "direction": config.direction, "directions": "+".join(run_directions(config)),
            "threshold": config.threshold, "relative": config.relative, "seed": config.seed, "n": n_prompts(task),
            "metric": task.metric_name, "top_k": config.top_k or 0, "task_corruption": task.corruption}
    circuit = Circuit.from_edges(kept, ComputeGraph.from_model(model), name, task.name, info, columns)
    if config.method != "acdc":
        column = "normalized" if config.relative and config.top_k is None else "score"
        cutoff = config.threshold if config.top_k is None else float(sorted(exact["score"].abs().to_numpy())[-min(config.top_k, len(exact))])
        scores["kept_by"] = kept_by(scores, kept, column, cutoff)
    return Found(scores, exact, circuit, columns)


def kept_edges(model: torch.nn.Module, task: AnyTask, config: DiscoverConfig, positions=None) -> pd.DataFrame:
    """Return the rows a run with ``config`` keeps: scored in its directions, then pruned (no faithfulness, no report)."""
    return prune(stronger(score_edges(model, task, config)), prune_config(config), positions)


def _say_cost(model: torch.nn.Module, task: AnyTask, config: DiscoverConfig) -> None:
    """Log the run's estimated time and memory when it will take more than a minute (each direction scores
    edges once); for exact patching of more than half an hour, say what attribution with an exact re-check
    would take instead."""
    from pathpatch.patch.cost import announce, estimate
    from pathpatch.patch.schedule import memory_budget

    graph = ComputeGraph.from_model(model)
    rows = graph.n_edges * (len(layout(task, None, is_causal(model)).labels) if config.granularity == "position" else 1)
    budget, times = memory_budget(config.max_memory, next(model.parameters()).device), len(run_directions(config))
    planned = estimate(model, task, config.method, rows, config.steps, config.recheck, budget)
    planned = replace(planned, forwards=planned.forwards * times)
    announce(planned, f"{n_prompts(task)} prompts, {rows:,} edges, {'+'.join(run_directions(config))}")
    if config.method == "exact" and planned.seconds > 1800:
        faster = estimate(model, task, "eap-ig", rows, 5, config.recheck, budget)
        faster = replace(faster, forwards=faster.forwards * times)
        log.warning("exact patching of all %s edges would take about %s; --method eap-ig --steps 5 (attribution, then an exact "
                    "re-check of the %d strongest edges, --recheck) would take about %s", f"{rows:,}", duration(planned.seconds),
                    config.recheck, duration(faster.seconds))


def circuit_attention_png(model: torch.nn.Module, task: AnyTask, circuit: Circuit, most: int = 4) -> bytes | None:
    """Attention patterns of up to ``most`` heads of the circuit (mean and example prompts) as PNG, over the
    largest group of same-length prompts; None when the circuit has no head or the prompts are vectors."""
    from pathpatch.report.plots import attention_patterns, figure_png
    from pathpatch.task.groups import task_groups

    heads = sorted({component_name(n) for n, kind in circuit.graph.nodes(data="kind") if kind == "head"})[:most]
    group = max(task_groups(task), key=lambda g: g.clean.shape[0])  # the first of the largest groups
    if not heads or group.clean.is_floating_point():
        return None
    return figure_png(attention_patterns(model, group, heads))


def _decoder(model: torch.nn.Module):
    """A token id -> text function from the model's tokenizer, or None (ids are shown)."""
    tokenizer = getattr(model, "tokenizer", None)
    return None if tokenizer is None else (lambda token: tokenizer.decode([token]))
