"""The discovery pipeline: model + task -> edge scores -> pruned circuit -> faithfulness -> files.

``exact`` scores every edge by exact noising (``patch_edges``); ``eap`` and ``eap-ig`` rank every edge
by attribution first and then re-score the strongest candidates exactly, so the circuit is always
pruned on exact effects; ``acdc`` prunes greedily on exact circuit runs (``threshold`` is its tau). Pruning keeps edges with ``|normalized score| >= threshold`` (or the
``top_k`` strongest) that lie on an ``embed -> logits`` path. Every setting is recorded in the circuit's
graph attributes and the report, so a run can be repeated.
"""

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import pandas as pd

from pathpatch import __version__
from pathpatch.discovery.attribution import attribute_edges
from pathpatch.discovery.config import PatchConfig
from pathpatch.discovery.edges import patch_edges
from pathpatch.discovery.graph import ComputeGraph
from pathpatch.discovery.prune import PruneConfig, acdc, prune, strongest
from pathpatch.files import write_atomic, write_text_atomic
from pathpatch.graphs.checks import Context, check_claims
from pathpatch.graphs.circuit import Circuit
from pathpatch.graphs.export import write_diagram
from pathpatch.graphs.faithfulness import faithfulness, faithfulness_curve
from pathpatch.graphs.hypotheses import Hypothesis
from pathpatch.models import Task, build_task, load_model
from pathpatch.models.planted import PLANTED
from pathpatch.models.zoo import SEEDS

CANDIDATES = 50


@dataclass(frozen=True, kw_only=True)
class DiscoverConfig:
    """Everything a discovery run depends on."""

    model: str
    task: str | None = None
    method: Literal["exact", "eap", "eap-ig", "acdc"] = "exact"
    corruption: Literal["paired", "resample", "mean", "zero"] = "paired"
    threshold: float = 0.05
    relative: bool = True
    metric: str | None = None
    top_k: int | None = None
    n: int = 64
    seed: int = 0
    device: str = "cpu"
    steps: int = 10
    task_corruption: str | None = None

    def __post_init__(self) -> None:
        if self.method not in ("exact", "eap", "eap-ig", "acdc"):
            raise ValueError(f"Unknown method {self.method!r}; choose exact, eap, eap-ig or acdc.")
        if self.task is None and self.model not in SEEDS and self.model not in PLANTED:
            raise ValueError(f"Model {self.model!r} has no default task; pass --task (e.g. weekday for a GPT-2 directory).")

    @property
    def task_name(self) -> str:
        return self.task or self.model


@dataclass(frozen=True)
class DiscoveryResult:
    """Scores, circuit and faithfulness of one run."""

    config: DiscoverConfig
    scores: pd.DataFrame
    circuit: Circuit
    faithfulness: dict[str, float]
    seconds: float
    curve: pd.DataFrame | None = None

    def summary(self) -> str:
        f = self.faithfulness
        return (
            f"{self.config.model} / {self.config.task_name}: {f['n_edges']} edges kept of {len(self.scores)} scored "
            f"({self.config.method}); faithfulness {f['faithfulness']:.3f}, complement {f['complement_faithfulness']:.3f} "
            f"(clean {f['clean_metric']:.3f}, corrupt {f['corrupt_metric']:.3f}) in {self.seconds:.1f} s"
        )

    def report(self) -> str:
        """Return a short Markdown report: settings, faithfulness, kept edges."""
        lines = [f"# Circuit: {self.config.model} / {self.config.task_name}", "", "## Settings", ""]
        lines += [f"- {key}: {value}" for key, value in asdict(self.config).items()] + [f"- pathpatch: {__version__}", ""]
        lines += ["## Faithfulness", ""] + [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in self.faithfulness.items()]
        if self.curve is not None:
            lines += ["", f"Top-edge curve (MIB style): CPR {self.curve.attrs['cpr']:.3f}, CMD {self.curve.attrs['cmd']:.3f}", "",
                      "| share of edges | edges | faithfulness |", "|---|---|---|"]
            lines += [f"| {r.fraction:g} | {r.n_edges} | {r.faithfulness:.3f} |" for r in self.curve.itertuples()]
        kept = self.scores[self.scores["edge"].isin(self.circuit.scored_edges)].sort_values("score", ascending=False)
        lines += ["", "## Kept edges", "", "| edge | score | normalized |", "|---|---|---|"]
        lines += [f"| {r.edge} | {r.score:.4g} | {getattr(r, 'normalized', float('nan')):.3f} |" for r in kept.itertuples()]
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> tuple[dict[str, Path], str]:
        """Write scores.csv, circuit.json, circuit.dot/.svg and report.md into ``out`` (atomically).

        Returns:
            The written paths by role, and the diagram message (which says if Graphviz is missing).
        """
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "scores": write_atomic(out / "scores.csv", lambda tmp: self.scores.to_csv(tmp, index=False)),
            "circuit": self.circuit.to_json(out / "circuit.json"),
            "report": write_text_atomic(out / "report.md", self.report()),
        }
        paths["diagram"], message = write_diagram(self.circuit, out / "circuit.svg")
        return paths, message


def score_edges(model, task, config: DiscoverConfig, progress: bool = False) -> pd.DataFrame:
    """Return exact noising scores: of every edge, or of the attribution method's top candidates."""
    patch = PatchConfig(direction="noise", corruption=config.corruption, seed=config.seed, progress=progress)
    if config.method == "exact":
        return patch_edges(model, task, config=patch)
    if config.method == "acdc":
        return acdc(model, task, tau=config.threshold, config=patch)
    approx = attribute_edges(model, task, config.method, steps=config.steps, config=patch)
    top = strongest(approx, max(CANDIDATES, 3 * (config.top_k or 0)))
    exact = patch_edges(model, task, list(top["edge"]), config=patch)
    exact["approx_score"] = top["score"].values
    exact["method"] = f"{config.method}+exact"
    return exact


def discover(config: DiscoverConfig, progress: bool = False, model=None, task=None) -> DiscoveryResult:
    """Run the pipeline; raise ValueError for an empty circuit (with the fix: lower the threshold)."""
    started = time.perf_counter()
    model = model if model is not None else load_model(config.model, device=config.device)
    if task is None:
        task = task_of(config, model)
    scores = score_edges(model, task, config, progress)
    if config.top_k:
        prune_config = PruneConfig(method="top_k", top_k=config.top_k)
    else:
        prune_config = PruneConfig(threshold=config.threshold, relative=config.relative)
    kept = scores if config.method == "acdc" else prune(scores, prune_config)
    if kept.empty:
        column = "normalized" if config.relative else "score"
        best = scores[column].abs().max() if len(scores) else 0.0
        raise ValueError(
            f"No edge passes threshold {config.threshold} (largest |{column}| is {best:.3g}), so the circuit "
            "is empty; lower --threshold or use --top-k."
        )
    info = {"corruption": config.corruption, "threshold": config.threshold, "relative": config.relative, "seed": config.seed, "n": config.n,
            "metric": task.metric_name, "top_k": config.top_k or 0, "task_corruption": task.corruption}
    model_name = Path(config.model).name
    circuit = Circuit.from_edges(kept, ComputeGraph.from_model(model), model_name, config.task_name, info)
    patch = PatchConfig(direction="noise", corruption=config.corruption, seed=config.seed)
    faith = faithfulness(circuit, model, task, patch)
    curve = faithfulness_curve(scores, model, task, config=patch) if config.method == "exact" else None
    return DiscoveryResult(config, scores, circuit, faith, time.perf_counter() - started, curve)


@dataclass(frozen=True)
class CheckReport:
    """Verdicts on a hypothesis file's claims, with the settings they were measured under."""

    hypothesis: Hypothesis
    table: pd.DataFrame
    circuit: Circuit

    @property
    def passed(self) -> bool:
        return bool(self.table["passed"].all())

    def to_dict(self) -> dict:
        h = self.hypothesis
        return {"hypothesis": h.name, "model": h.model, "task": h.task, "method": h.method, "version": __version__,
                "claims": self.table.to_dict(orient="records")}

    def write(self, path: Path) -> Path:
        """Write the report as JSON, and beside it as Markdown (both atomically)."""
        write_text_atomic(path.with_suffix(".md"), self.markdown())
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2, default=float) + "\n")

    def markdown(self) -> str:
        """Return the checks as a Markdown report: verdict, methodology, one row per claim."""
        h = self.hypothesis
        lines = [f"# Checks: {h.name} ({h.model} / {h.task}): {'PASS' if self.passed else 'FAIL'}", "", "## Method", ""]
        lines += [f"- {k}: {v}" for k, v in h.method.items()] + ["", "## Claims", "",
                  "| claim | kind | value | 95% CI | threshold | verdict |", "|---|---|---|---|---|---|"]
        for r in self.table.itertuples():
            verdict = "pass" if r.passed else f"**FAIL** {r.detail}".strip()
            lines.append(f"| {r.name} | {r.kind} | {r.value:.4g} | [{r.ci_low:.4g}, {r.ci_high:.4g}] | {r.op} {r.threshold:g} | {verdict} |")
        return "\n".join(lines) + "\n"

    def compare(self, baseline: Path) -> pd.DataFrame:
        """Return this run's claims beside a saved report's: previous value, change, verdict change."""
        try:
            old = pd.DataFrame(json.loads(Path(baseline).read_text())["claims"])[["name", "value", "passed"]]
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"Cannot read baseline {baseline} ({err}); pass a report written by `pathpatch check --out`.") from err
        merged = self.table[["name", "value", "passed"]].merge(old, on="name", how="left", suffixes=("", "_before"))
        merged["change"] = merged["value"] - merged["value_before"]
        return merged

    def text(self) -> str:
        cols = ["name", "kind", "value", "op", "threshold", "ci_low", "ci_high", "passed", "detail"]
        verdict = "PASS" if self.passed else "FAIL"
        table = self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        return f"{self.hypothesis.name} ({self.hypothesis.model} / {self.hypothesis.task}): {verdict}\n{table}"


def discover_config_of(hypothesis: Hypothesis, device: str = "cpu") -> DiscoverConfig:
    """Return the discovery settings a hypothesis file pins."""
    m = hypothesis.method
    return DiscoverConfig(model=hypothesis.model, task=hypothesis.task, method=m["scoring"], corruption=m["corruption"],
                          threshold=float(m["threshold"]), relative=bool(m["relative"]), metric=m["metric"], n=m["n"],
                          seed=m["seed"], device=device, task_corruption=m["task_corruption"])


def task_of(config: DiscoverConfig, model) -> Task:
    """Build the task a discovery config names, with its metric overridden when the config pins one."""
    task = build_task(config.task_name, n=config.n, seed=config.seed, corruption=config.task_corruption, model=model)
    return replace(task, metric=config.metric) if config.metric else task


def check(hypothesis: Hypothesis, circuit: Circuit | None = None, device: str = "cpu", progress: bool = False) -> CheckReport:
    """Check every claim; discover the circuit with the file's settings unless one is given."""
    config = discover_config_of(hypothesis, device)
    model = load_model(config.model, device=device)
    task = task_of(config, model)
    if circuit is None:
        circuit = discover(config, progress, model=model, task=task).circuit
    graph = ComputeGraph.from_model(model)
    if (circuit.compute_graph.n_layers, circuit.compute_graph.n_heads) != (graph.n_layers, graph.n_heads):
        raise ValueError(f"The circuit is from a {circuit.compute_graph.n_layers}-layer model, but {config.model} has "
                         f"{graph.n_layers}; check a circuit discovered on the same model.")
    patch = PatchConfig(direction="noise", corruption=config.corruption, seed=config.seed)
    ctx = Context(model, task.to(next(model.parameters()).device), circuit, graph, patch, hypothesis.method["bootstrap"], config.seed)
    return CheckReport(hypothesis, check_claims(hypothesis, ctx), circuit)
