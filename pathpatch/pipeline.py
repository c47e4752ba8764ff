"""The discovery pipeline: model + task -> edge scores -> pruned circuit -> faithfulness -> files.

``discover(model, task)`` takes model and task objects or specs (anything ``load_model`` and
``load_task`` accept: a bundled name, a checkpoint folder, a JSONL of prompts, ``file.py:function``).
``exact`` scores every edge by exact patching (``patch_edges``); ``eap`` and ``eap-ig`` rank every edge
by attribution first and then re-score the strongest candidates exactly, so the circuit is always
pruned on exact effects; ``acdc`` prunes greedily on exact circuit runs (``threshold`` is its tau).
Edges are scored in both directions by default (``both_directions``; ``pathpatch.directions``):
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

``check(hypothesis, model=..., task=...)`` measures a hypothesis file's claims on a circuit (given,
or discovered with the file's pinned settings). This module sits above ``graphs/``, ``discovery/``
and ``models/`` because it strings all of them together.
"""

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pandas as pd
import torch

from pathpatch import __version__
from pathpatch.discovery.attribution import attribute_edges
from pathpatch.discovery.config import PatchConfig
from pathpatch.discovery.edges import patch_edges
from pathpatch.discovery.graph import ComputeGraph
from pathpatch.discovery.prune import PruneConfig, acdc, prune, strongest
from pathpatch.errors import InputError
from pathpatch.files import output_folder, write_atomic, write_text_atomic
from pathpatch.graphs.checks import NEEDS_CIRCUIT, ClaimResult, Context, check_claims
from pathpatch.graphs.verdicts import EXIT_CODES, VERDICTS, overall
from pathpatch.graphs.circuit import Circuit
from pathpatch.graphs.export import write_diagram
from pathpatch.graphs.faithfulness import faithfulness, faithfulness_curve, mib_curves
from pathpatch.graphs.hypotheses import GRANULARITY, Hypothesis, flat_kinds, load_hypothesis
from pathpatch.models.loading import load_model
from pathpatch.reports import check_html, discovery_html
from pathpatch.models.task_files import load_task
from pathpatch.models.tasks import METRICS, AnyTask, n_prompts, with_metric
from pathpatch.names import component_name
from pathpatch.positions import layout
from pathpatch.discovery.runner import is_causal
from pathpatch.directions import DIRECTION_COLUMNS, directions_of, directions_text, join_directions, kept_by, stronger
from pathpatch.doubts import cross_markdown, normaliser_text, second_look
from pathpatch.progress import duration

log = logging.getLogger("pathpatch.progress")

CANDIDATES = 50
METHODS = ("exact", "eap", "eap-ig", "acdc")
GRANULARITIES = ("component", "position")


@dataclass(frozen=True, kw_only=True)
class DiscoverConfig:
    """Every setting a discovery run depends on (model and task are passed beside it).

    Attributes:
        method: ``exact``, ``eap``, ``eap-ig`` (then confirmed exactly) or ``acdc``.
        corruption: What cut edges carry: ``paired``, ``resample``, ``mean``, ``zero``.
        direction: The primary direction, whose effects fill ``score``/``normalized``: ``noise`` (patch corrupt
            into clean: what an edge is necessary for) or ``denoise`` (clean into corrupt: what it suffices for).
        both_directions: Also score the other direction and keep an edge that passes in either (``kept_by``);
            mean and zero ablation have no corrupt run, so they noise only; ACDC runs the primary direction only.
        cross_check: Measure the circuit under the other corruptions (``doubts``), and when it is suspect,
            rediscover it exactly with each of them where that costs less than the run itself; the circuit
            returned is the same either way.
        threshold: Keep edges with ``|normalized| >= threshold`` (metric units when not ``relative``).
        relative: Read ``threshold`` as a share of clean - corrupt.
        metric: Override the task's metric (``logit_diff``, ``loss``, ``accuracy``, ``kl``, ``mse``).
        top_k: Keep the ``top_k`` strongest edges instead of a threshold.
        steps: EAP-IG interpolation steps.
        n: Prompts to generate or read (None: 64 for generated tasks, every prompt of a file).
        seed: Data, resampling and bootstrap seed.
        task_corruption: Which corruption the task generator makes (e.g. ``values`` for ``permute``).
        device: Torch device for models loaded from a spec.
        granularity: ``component`` (an edge over every position) or ``position`` (an edge at each position
            label, ``L0H0->L1H0.v@END``: position-aware circuits; ``exact``, ``eap`` and ``eap-ig`` only).
        recheck: How many of the strongest attributed edges ``eap``/``eap-ig`` re-score exactly (at least
            ``top_k``); the circuit is pruned among them, on their exact scores.
        max_memory: Activation memory budget in bytes (None: ``runner.memory_budget``'s default); runs chunk
            prompts, steps and variants to stay within it.
    """

    method: Literal["exact", "eap", "eap-ig", "acdc"] = "exact"
    corruption: Literal["paired", "resample", "mean", "zero"] = "paired"
    direction: Literal["noise", "denoise"] = "noise"
    both_directions: bool = True
    cross_check: bool = True
    threshold: float = 0.05
    relative: bool = True
    metric: str | None = None
    top_k: int | None = None
    steps: int = 10
    n: int | None = None
    seed: int = 0
    task_corruption: str | None = None
    device: str = "cpu"
    granularity: Literal["component", "position"] = "component"
    recheck: int = CANDIDATES
    max_memory: float | None = None

    def __post_init__(self) -> None:
        _check_discover_config(self)

    def patch_config(self, progress: bool = False) -> PatchConfig:
        """The engine settings of this run."""
        return PatchConfig(direction=self.direction, corruption=self.corruption, seed=self.seed, progress=progress,
                           max_memory=self.max_memory)


def _check_discover_config(c: DiscoverConfig) -> None:
    """Validate types and ranges once, naming the bad value and the fix."""
    choices = {"method": METHODS, "corruption": ("paired", "resample", "mean", "zero"), "direction": ("noise", "denoise"),
               "granularity": GRANULARITIES}
    for key, allowed in choices.items():
        if getattr(c, key) not in allowed:
            raise InputError(f"Unknown {key} {getattr(c, key)!r}; choose one of {', '.join(allowed)}.")
    if c.metric is not None and c.metric not in METRICS:
        raise InputError(f"Unknown metric {c.metric!r}; choose one of {', '.join(METRICS)}.")
    if isinstance(c.threshold, bool) or not isinstance(c.threshold, (int, float)) or not math.isfinite(c.threshold) or c.threshold < 0:
        raise InputError(f"threshold={c.threshold!r}; give a finite number >= 0 (a share of clean - corrupt, e.g. 0.05).")
    for key in ("relative", "both_directions", "cross_check"):
        if not isinstance(getattr(c, key), bool):
            raise InputError(f"{key}={getattr(c, key)!r}; give True or False.")
    for key, low in (("top_k", 1), ("n", 1), ("steps", 1), ("seed", 0), ("recheck", 1)):
        value = getattr(c, key)
        if value is None and key in ("top_k", "n"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{key}={value!r}; give an integer >= {low}" + (" (or leave it unset for a threshold)." if key == "top_k" else "."))
    if c.granularity == "position" and c.method == "acdc":
        raise InputError("granularity 'position' works with methods exact, eap and eap-ig; ACDC's greedy search runs over "
                         "position-free edges (use --method exact for position-aware circuits).")
    if c.direction == "denoise" and c.corruption in ("mean", "zero"):
        raise InputError(f"direction 'denoise' patches clean activations into a corrupt run, but corruption {c.corruption!r} "
                         "has no corrupt run; use direction 'noise' for ablations.")
    c.patch_config()  # the engine settings check themselves (max_memory)


@dataclass(frozen=True)
class DiscoveryResult:
    """Scores, circuit and faithfulness of one run, with what it ran on.

    ``cross`` holds the circuit's faithfulness under the other corruptions (and rediscoveries with them, when the
    circuit was suspect: ``doubts.COLUMNS``); ``doubts`` the sentences saying why the circuit is suspect and what to try.
    """

    config: DiscoverConfig
    scores: pd.DataFrame
    circuit: Circuit
    faithfulness: dict[str, float]
    seconds: float
    model_name: str
    task_name: str
    n_prompts: int
    curve: pd.DataFrame | None = None
    attention_png: bytes | None = None
    cross: pd.DataFrame | None = None
    doubts: tuple[str, ...] = ()

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions edges were scored in, the primary first."""
        return run_directions(self.config)

    def scored(self) -> str:
        """How many edges were scored: every edge exactly, or attributed with some re-checked exactly."""
        return scored_text(self.scores)

    def summary(self) -> str:
        """One line: edges kept, settings, faithfulness both ways, and each doubt with what to try."""
        f = self.faithfulness
        line = (
            f"{self.model_name} / {self.task_name}: {f['n_edges']} edges kept of {self.scored()} ({self.config.method}, "
            f"{'+'.join(self.directions)}, {self.config.corruption}, {self.n_prompts} prompts); faithfulness {f['faithfulness']:.3f} "
            f"(circuit alone), noise faithfulness {f['noise_faithfulness']:.3f} (circuit corrupted); clean {f['clean_metric']:.3f}, "
            f"corrupt {f['corrupt_metric']:.3f}; in {self.seconds:.1f} s"
        )
        return line + "".join(f". WARNING: {doubt}" for doubt in self.doubts)

    def report(self) -> str:
        """Return a short Markdown report: doubts, settings, directions, faithfulness, other corruptions, kept edges."""
        lines = [f"# Circuit: {self.model_name} / {self.task_name}", ""]
        if self.doubts:
            lines += ["## Doubts: this circuit is suspect", ""] + [f"- {doubt}." for doubt in self.doubts] + [""]
        lines += ["## Settings", ""]
        settings = {"model": self.model_name, "task": self.task_name, "prompts": self.n_prompts, **asdict(self.config)}
        settings["metric"] = self.circuit.info.get("metric")  # the metric used: the task's own unless overridden
        settings.pop("n")
        lines += [f"- {key}: {value}" for key, value in settings.items()] + [f"- pathpatch: {__version__}", ""]
        c = self.config
        lines += ["## Directions", "", directions_text(c.method, c.direction, self.directions, c.corruption), ""]
        lines += ["## Faithfulness", "", normaliser_text(self.faithfulness, c.corruption, self.circuit.info.get("task_corruption")), ""]
        lines += [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in self.faithfulness.items()]
        if self.curve is not None:
            a = self.curve.attrs
            mib = f"; as MIB computes them (int sizes, signed ranking for CPR, paths only): CPR {a['mib_cpr']:.3f}, CMD {a['mib_cmd']:.3f}" if "mib_cpr" in a else ""
            lines += ["", f"Top-edge curve (edges ranked by their larger |effect| of the directions scored): CPR {a['cpr']:.3f}, "
                      f"CMD {a['cmd']:.3f}{mib}", "",
                      "| share of edges | edges | faithfulness |", "|---|---|---|"]
            lines += [f"| {r.fraction:g} | {r.n_edges} | {r.faithfulness:.3f} |" for r in self.curve.itertuples()]
        if self.cross is not None and len(self.cross):
            lines += ["", "## Under other corruptions", "", "The same circuit measured under each (each a share of its own "
                      "clean - corrupt), and, when it was suspect, the circuits rediscovered with exact scoring (rediscovered: ...):", ""]
            lines += cross_markdown(self.cross)
        lines += ["", f"Edges: {self.scored()}."]
        kept = self.scores[self.scores["edge"].isin(self.circuit.scored_edges)].sort_values("score", ascending=False)
        connectors = set(self.circuit.connectors)  # below the threshold, kept to join stronger edges to embed and logits
        nan = float("nan")
        lines += ["", "## Kept edges", "", "| edge | score | normalized | noise | denoise | kept as |", "|---|---|---|---|---|---|"]
        lines += [f"| {r.edge} | {r.score:.4g} | {getattr(r, 'normalized', nan):.3f} | {getattr(r, 'normalized_noise', nan):.3f} | "
                  f"{getattr(r, 'normalized_denoise', nan):.3f} | {'connector (joins a stronger edge)' if r.edge in connectors else 'own effect'}"
                  f"{f', kept by {r.kept_by}' if getattr(r, 'kept_by', '') else ''} |" for r in kept.itertuples()]
        return "\n".join(lines) + "\n"

    def write(self, out: Path, *, force: bool = False, command: str = "DiscoveryResult.write") -> tuple[dict[str, Path], str]:
        """Write scores.csv, circuit.json, circuit.dot/.svg and report.md as one folder ``out``.

        The files go into a hidden sibling folder that replaces ``out`` only once all are written
        (``pathpatch.files.output_folder``), so ``out`` holds this run or the earlier one, never a mix.

        Args:
            out: Output folder; an earlier pathpatch run in it is replaced whole.
            force: Write into a folder that holds files pathpatch did not write (they are kept).
            command: The command line recorded in the folder's marker file.

        Returns:
            The written paths by role, and the diagram message (which says if Graphviz is missing).

        Raises:
            ValueError: ``out`` is a file, or holds other files and ``force`` is off.
            OSError: A write failed (disk full, permissions); ``out`` is left as it was.
        """
        with output_folder(out, command, __version__, force) as tmp:
            write_atomic(tmp / "scores.csv", lambda path: self.scores.to_csv(path, index=False))
            self.circuit.to_json(tmp / "circuit.json")
            write_text_atomic(tmp / "report.md", self.report())
            write_text_atomic(tmp / "report.html", discovery_html(self))
            diagram, message = write_diagram(self.circuit, tmp / "circuit.svg")
        out = Path(out)
        paths = {"scores": out / "scores.csv", "circuit": out / "circuit.json", "report": out / "report.md", "html": out / "report.html",
                 "diagram": out / diagram.name}
        return paths, _moved(message, tmp, out)


def scored_text(scores: pd.DataFrame) -> str:
    """How many edges a score table scored: every edge exactly, or attributed with some re-checked exactly."""
    if "approx_score" not in scores:
        return f"{len(scores):,} scored exactly"
    return f"{int(scores['score'].notna().sum()):,} re-checked exactly (of {len(scores):,} attributed)"


class EmptyCircuitError(InputError):
    """No edge survived pruning. Holds the run's scores, so they can still be written (``write``)."""

    def __init__(self, message: str, scores: pd.DataFrame) -> None:
        super().__init__(message)
        self.scores = scores

    def write(self, out: Path, *, force: bool = False, command: str = "EmptyCircuitError.write") -> Path:
        """Write scores.csv and a report.md saying why the circuit is empty, as one folder ``out``."""
        with output_folder(out, command, __version__, force) as tmp:
            write_atomic(tmp / "scores.csv", lambda path: self.scores.to_csv(path, index=False))
            write_text_atomic(tmp / "report.md", f"# No circuit\n\n{self}\n\nEdges: {scored_text(self.scores)} (scores.csv).\n")
        return Path(out) / "scores.csv"


def _moved(message: str, tmp: Path, out: Path) -> str:
    """A message about files written into the temporary folder ``tmp``, naming them where they now are."""
    return message.replace(str(tmp), str(out))


def failed_hops(detail: str) -> list[str]:
    """Return the edges a failed path claim names as missing from the circuit."""
    prefix = "not in circuit: "
    return detail[len(prefix):].split(";")[0].split(", ") if detail.startswith(prefix) else []


def run_directions(config: DiscoverConfig) -> tuple[str, ...]:
    """The directions a run scores edges in, the primary first (ACDC: the primary alone)."""
    return (config.direction,) if config.method == "acdc" else directions_of(config.direction, config.both_directions, config.corruption)


def score_edges(model: torch.nn.Module, task: AnyTask, config: DiscoverConfig, progress: bool = False) -> pd.DataFrame:
    """Return every edge's score in each of the run's directions (``pathpatch.directions``): exact, or attributed
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
    for d in ("noise", "denoise"):
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
    return loaded, _load_task(task, loaded, config)


def _load_task(spec: "str | Path | AnyTask", model: torch.nn.Module, config: DiscoverConfig) -> AnyTask:
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
    config = _with_settings(config or DiscoverConfig(), settings)
    started = time.perf_counter()
    loaded, loaded_task = resolve(model, task, config, model_config)
    _say_cost(loaded, loaded_task, config)
    scores = score_edges(loaded, loaded_task, config, progress)
    columns = layout(loaded_task, _decoder(loaded), is_causal(loaded)) if config.granularity == "position" else None
    exact = stronger(scores)  # exactly scored rows (attribution: the re-checked), with the larger effect of the two directions
    kept = scores if config.method == "acdc" else prune(exact, _prune_config(config), columns)
    if kept.empty:
        column = "normalized" if config.relative else "score"
        best = exact[column].abs().max() if len(exact) else 0.0  # an edge that passes is always kept, joined by connectors
        why = f"No edge passes threshold {config.threshold} (largest |{column}| is {best:.3g})" if len(exact) else "No edge has an exact score"
        spread = " (by position an effect is split over the positions that carry it)" if columns is not None else ""
        raise EmptyCircuitError(f"{why}, so the circuit is empty{spread}; lower --threshold or use --top-k.", scores)
    name = model_name or model_label(model, loaded)
    info = {"corruption": config.corruption, "direction": config.direction, "directions": "+".join(run_directions(config)),
            "threshold": config.threshold, "relative": config.relative, "seed": config.seed, "n": n_prompts(loaded_task),
            "metric": loaded_task.metric_name, "top_k": config.top_k or 0, "task_corruption": loaded_task.corruption}
    circuit = Circuit.from_edges(kept, ComputeGraph.from_model(loaded), name, loaded_task.name, info, columns)
    if config.method != "acdc":
        column = "normalized" if config.relative and config.top_k is None else "score"
        cutoff = config.threshold if config.top_k is None else float(sorted(exact["score"].abs().to_numpy())[-min(config.top_k, len(exact))])
        scores["kept_by"] = kept_by(scores, kept, column, cutoff)
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
    return DiscoveryResult(config, scores, circuit, faith, time.perf_counter() - started, name, loaded_task.name,
                           n_prompts(loaded_task), curve, pictures, cross, tuple(notes))


def kept_edges(model: torch.nn.Module, task: AnyTask, config: DiscoverConfig, positions=None) -> pd.DataFrame:
    """Return the rows a run with ``config`` keeps: scored in its directions, then pruned (no faithfulness, no report)."""
    return prune(stronger(score_edges(model, task, config)), _prune_config(config), positions)


def _say_cost(model: torch.nn.Module, task: AnyTask, config: DiscoverConfig) -> None:
    """Log the run's estimated time and memory when it will take more than a minute (each direction scores
    edges once); for exact patching of more than half an hour, say what attribution with an exact re-check
    would take instead."""
    from pathpatch.discovery.cost import announce, estimate
    from pathpatch.discovery.runner import memory_budget

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
    from pathpatch.graphs.plots import attention_patterns, figure_png
    from pathpatch.models.tasks import task_groups

    heads = sorted({component_name(n) for n, kind in circuit.graph.nodes(data="kind") if kind == "head"})[:most]
    group = max(task_groups(task), key=lambda g: g.clean.shape[0])  # the first of the largest groups
    if not heads or group.clean.is_floating_point():
        return None
    return figure_png(attention_patterns(model, group, heads))


def _decoder(model: torch.nn.Module):
    """A token id -> text function from the model's tokenizer, or None (ids are shown)."""
    tokenizer = getattr(model, "tokenizer", None)
    return None if tokenizer is None else (lambda token: tokenizer.decode([token]))


def _with_settings(config: DiscoverConfig, settings: dict) -> DiscoverConfig:
    """Return ``config`` with keyword overrides, refusing names that are not settings."""
    known = {f.name for f in fields(DiscoverConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"discover() got unknown settings {unknown}; settings are {', '.join(sorted(known))}.")
    return replace(config, **settings) if settings else config


def _prune_config(config: DiscoverConfig) -> PruneConfig:
    if config.top_k is not None:
        return PruneConfig(method="top_k", top_k=config.top_k)
    return PruneConfig(threshold=config.threshold, relative=config.relative)


@dataclass(frozen=True)
class CheckReport:
    """Verdicts on a hypothesis file's claims, with the settings they were measured under.

    ``circuit`` is None when no claim needed one (no circuit was discovered); ``complete`` is False for the
    verdicts measured before a run was interrupted, which then pass or fail nothing as a whole.
    """

    hypothesis: Hypothesis
    table: pd.DataFrame
    circuit: Circuit | None
    complete: bool = True
    notes: tuple[str, ...] = ()  # what the verdicts rest on beyond the pinned method (a given circuit's own settings)

    @property
    def outcome(self) -> str:
        """``pass``, ``fail`` (any claim fails) or ``inconclusive`` (none fails, some cannot tell); ``fail`` when incomplete."""
        return overall(list(self.table["verdict"])) if self.complete else "fail"

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    @property
    def exit_code(self) -> int:
        """0 every claim passes, 1 some claim fails, 4 none fails but some are inconclusive."""
        return EXIT_CODES[self.outcome]

    @property
    def verdict(self) -> str:
        if not self.complete:
            return f"INTERRUPTED after {len(self.table)} of {len(self.hypothesis.claims)} claims"
        counts = self.table["verdict"].value_counts()
        tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
        return f"{self.outcome.upper()} ({tally})"

    def to_dict(self) -> dict:
        """The report as strict JSON data: undefined numbers (NaN, infinities) become null."""
        h = self.hypothesis
        claims = [{k: _json_number(v) for k, v in row.items()} for row in self.table.to_dict(orient="records")]
        return {"hypothesis": h.name, "model": h.model, "task": h.task, "method": h.method, "version": __version__,
                "complete": self.complete, "verdict": self.outcome if self.complete else "interrupted", "notes": list(self.notes),
                "claims": claims}

    def write(self, out: Path, *, force: bool = False, command: str = "CheckReport.write") -> tuple[dict[str, Path], str]:
        """Write check.json, check.md, circuit.json and the diagram (failed hops highlighted) as one folder ``out``.

        Like ``DiscoveryResult.write``: the folder appears whole, replacing an earlier pathpatch run.

        Returns:
            The written paths by role, and the diagram message.

        Raises:
            ValueError: ``out`` is a file, or holds other files and ``force`` is off.
            OSError: A write failed; ``out`` is left as it was.
        """
        failed = {hop for detail in self.table.loc[self.table["verdict"] == "fail", "detail"] for hop in failed_hops(detail)}
        with output_folder(out, command, __version__, force) as tmp:
            write_text_atomic(tmp / "check.md", self.markdown())
            write_text_atomic(tmp / "report.html", check_html(self, failed))
            write_text_atomic(tmp / "check.json", json.dumps(self.to_dict(), indent=2, allow_nan=False, default=_json_number) + "\n")
            if self.circuit is not None:
                self.circuit.to_json(tmp / "circuit.json")
                diagram, message = write_diagram(self.circuit, tmp / "circuit.svg", highlight=failed)
        out = Path(out)
        paths = {"report": out / "check.json", "markdown": out / "check.md", "html": out / "report.html"}
        if self.circuit is None:
            return paths, "no circuit: no claim needed one"
        return {**paths, "circuit": out / "circuit.json", "diagram": out / diagram.name}, _moved(message, tmp, out)

    def markdown(self) -> str:
        """Return the checks as a Markdown report: verdict, methodology, one row per claim."""
        h = self.hypothesis
        lines = [f"# Checks: {h.name} ({h.model} / {h.task}): {self.verdict}", "", "## Method", ""]
        lines += [f"- {k}: {v}" for k, v in h.method.items()] + [f"- note: {note}" for note in self.notes] + ["", "## Claims", "",
                  "A claim passes when its whole 95% interval lies on the right side of its bound, fails when it lies on the "
                  "wrong side, and is inconclusive when the interval straddles the bound.", "",
                  "| claim | kind | value | 95% CI | bound | verdict |", "|---|---|---|---|---|---|"]
        for r in self.table.itertuples():
            bound = "reported only" if r.op == "report" else f"{r.op} {r.threshold:g}"
            mark = {"pass": "pass", "fail": "**FAIL**", "inconclusive": "*inconclusive*", "report": "reported"}[r.verdict]
            interval = "exact" if r.ci_low == r.ci_high == r.value else f"[{r.ci_low:.4g}, {r.ci_high:.4g}]"
            lines.append(f"| {r.name} | {r.kind} | {r.value:.4g} | {interval} | {bound} | {f'{mark} {r.detail}'.strip()} |")
        return "\n".join(lines) + "\n"

    def compare(self, baseline: Path) -> pd.DataFrame:
        """Return this run's claims beside a saved report's: previous value, change, verdict change."""
        try:
            old = pd.DataFrame(json.loads(Path(baseline).read_text())["claims"])
            if "verdict" not in old:  # reports written before verdicts had three values
                old["verdict"] = old["passed"].map({True: "pass", False: "fail"})
            old = old[["name", "value", "verdict"]]
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"Cannot read baseline {baseline} ({err}); pass a report written by `pathpatch check --out`.") from err
        merged = self.table[["name", "value", "verdict"]].merge(old, on="name", how="left", suffixes=("", "_before"))
        merged["change"] = merged["value"] - merged["value_before"]
        return merged

    def text(self) -> str:
        cols = ["name", "kind", "value", "op", "threshold", "ci_low", "ci_high", "verdict", "detail"]
        table = self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
        notes = "".join(f"\nnote: {note}" for note in self.notes)
        return f"{self.hypothesis.name} ({self.hypothesis.model} / {self.hypothesis.task}): {self.verdict}{notes}\n{table}"


def _json_number(value: object) -> object:
    """A value as strict JSON allows it: NaN and infinities become None (null); numpy scalars plain numbers."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def discover_config_of(hypothesis: Hypothesis, device: str = "cpu") -> DiscoverConfig:
    """Return the discovery settings a hypothesis file pins."""
    m = hypothesis.method
    return DiscoverConfig(method=m["scoring"], corruption=m["corruption"], direction=m["direction"], threshold=float(m["threshold"]),
                          relative=m["relative"], metric=m["metric"], n=m["n"], seed=m["seed"], device=device,
                          task_corruption=m["task_corruption"], granularity=GRANULARITY[m["granularity"]], steps=m["steps"],
                          recheck=m["recheck"], both_directions=m["both_directions"], cross_check=False)  # check shows no doubts


def check(
    hypothesis: "Hypothesis | str | Path",
    model: "str | Path | torch.nn.Module | None" = None,
    task: "str | Path | AnyTask | None" = None,
    circuit: Circuit | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
    model_config: "str | Path | dict | None" = None,
    on_result: "Callable[[ClaimResult], None] | None" = None,
    force: bool = False,
) -> CheckReport:
    """Check every claim of a hypothesis; discover the circuit with the file's settings unless one is given
    or no claim needs one (only ``path`` and ``faithfulness`` claims read a circuit).

    Args:
        hypothesis: A ``Hypothesis`` or the path of a hypothesis TOML file.
        model: Overrides the file's ``model``: an object or any ``load_model`` spec.
        task: Overrides the file's ``task``: an object or any ``load_task`` spec.
        circuit: A circuit to check instead of discovering one.
        device: Torch device for models loaded from a spec.
        progress: Show progress bars.
        model_config: Config of a bare weights file (overrides the file's ``model_config``).
        on_result: Called with each claim's verdict as soon as it is measured.
        force: Check a given circuit found with other settings than the file pins (the report says which).

    Raises:
        InputError: A given circuit was found with other settings than the file's [method] (unless ``force``).
    """
    hypothesis = hypothesis if isinstance(hypothesis, Hypothesis) else load_hypothesis(hypothesis)
    config = discover_config_of(hypothesis, device)
    notes = _unpinned(circuit, config, force) if circuit is not None else ()
    model_spec = model if model is not None else hypothesis.model
    if model_config is None and model is None:  # the file's model_config goes with the file's model only
        model_config = hypothesis.model_config
    loaded, loaded_task = resolve(model_spec, task if task is not None else hypothesis.task, config, model_config)
    if model is not None or task is not None:
        hypothesis = replace(hypothesis, model=model_label(model_spec, loaded), task=loaded_task.name)
    if circuit is None and flat_kinds(hypothesis.claims) & NEEDS_CIRCUIT:
        circuit = discover(loaded, loaded_task, config, progress=progress, model_name=hypothesis.model).circuit
    graph = ComputeGraph.from_model(loaded)
    theirs = graph if circuit is None else circuit.compute_graph
    if theirs != graph:  # layers, heads, MLPs and parallel blocks: the same graph, or the masks index other edges
        shape = lambda g: f"{g.n_layers}-layer, {g.n_heads}-head{', attention-only' if g.attn_only else ''}{', parallel' if g.parallel else ''}"  # noqa: E731
        raise InputError(f"The circuit is from a {shape(theirs)} model, but {hypothesis.model} is {shape(graph)}; "
                         "check a circuit discovered on the same model.")
    device_of = next(loaded.parameters()).device
    named = {name: _named_task(spec, name, loaded, config).to(device_of) for name, spec in hypothesis.tasks.items()}
    ctx = Context(loaded, loaded_task.to(device_of), circuit, graph, config.patch_config(), hypothesis.method["bootstrap"], config.seed, named)
    return CheckReport(hypothesis, check_claims(hypothesis, ctx, on_result), circuit, notes=notes)


def _named_task(spec: str, name: str, model: torch.nn.Module, config: DiscoverConfig) -> AnyTask:
    """One task of a hypothesis file's [tasks], loaded as its main task is and checked against the model."""
    try:
        return _load_task(spec, model, config)
    except InputError as err:
        raise InputError(f"[tasks] {name} = {spec!r}: {err}") from None


def _unpinned(circuit: Circuit, config: DiscoverConfig, force: bool) -> tuple[str, ...]:
    """Settings a given circuit was found with that differ from the file's [method]; refused unless ``force``."""
    pinned = {"corruption": config.corruption, "direction": config.direction, "threshold": config.threshold,
              "relative": config.relative, "metric": config.metric, "task_corruption": config.task_corruption}
    differ = [f"{key} {circuit.info[key]!r} (the file pins {value!r})" for key, value in pinned.items()
              if value is not None and key in circuit.info and circuit.info[key] != value]
    if differ and not force:
        raise InputError(f"The circuit given was found with {', '.join(differ)}, so its verdicts would not be the file's; "
                         "discover it with the file's [method], or pass --force (force=True) to check it anyway (the report says so).")
    return tuple(f"the circuit was found with {d}" for d in differ)
