"""The discovery pipeline: model + task -> edge scores -> pruned circuit -> faithfulness -> files.

``exact`` scores every edge by exact noising (``patch_edges``); ``eap`` and ``eap-ig`` rank every edge
by attribution first and then re-score the strongest candidates exactly, so the circuit is always
pruned on exact effects. Pruning keeps edges with ``|normalized score| >= threshold`` (or the
``top_k`` strongest) that lie on an ``embed -> logits`` path. Every setting is recorded in the circuit's
graph attributes and the report, so a run can be repeated.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from pathpatch import __version__
from pathpatch.discovery.attribution import attribute_edges
from pathpatch.discovery.config import PatchConfig
from pathpatch.discovery.edges import patch_edges
from pathpatch.discovery.graph import ComputeGraph
from pathpatch.discovery.prune import PruneConfig, prune
from pathpatch.files import write_atomic, write_text_atomic
from pathpatch.graphs.circuit import Circuit
from pathpatch.graphs.export import write_diagram
from pathpatch.graphs.faithfulness import faithfulness
from pathpatch.models import build_task, load_model
from pathpatch.models.zoo import SEEDS

CANDIDATES = 50


@dataclass(frozen=True, kw_only=True)
class DiscoverConfig:
    """Everything a discovery run depends on."""

    model: str
    task: str | None = None
    method: Literal["exact", "eap", "eap-ig"] = "exact"
    corruption: Literal["paired", "resample", "mean", "zero"] = "paired"
    threshold: float = 0.05
    top_k: int | None = None
    n: int = 64
    seed: int = 0
    device: str = "cpu"
    steps: int = 10

    def __post_init__(self) -> None:
        if self.method not in ("exact", "eap", "eap-ig"):
            raise ValueError(f"Unknown method {self.method!r}; choose exact, eap or eap-ig.")
        if self.task is None and self.model not in SEEDS:
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
    approx = attribute_edges(model, task, config.method, steps=config.steps, config=patch)
    top = approx.reindex(approx["score"].abs().sort_values(ascending=False, kind="stable").index).head(max(CANDIDATES, 3 * (config.top_k or 0)))
    exact = patch_edges(model, task, list(top["edge"]), config=patch)
    exact["approx_score"] = top["score"].values
    exact["method"] = f"{config.method}+exact"
    return exact


def discover(config: DiscoverConfig, progress: bool = False) -> DiscoveryResult:
    """Run the pipeline; raise ValueError for an empty circuit (with the fix: lower the threshold)."""
    started = time.perf_counter()
    model = load_model(config.model, device=config.device)
    task = build_task(config.task_name, n=config.n, seed=config.seed, model=model)
    scores = score_edges(model, task, config, progress)
    prune_config = PruneConfig(method="top_k", top_k=config.top_k) if config.top_k else PruneConfig(threshold=config.threshold)
    kept = prune(scores, prune_config)
    if kept.empty:
        best = scores["normalized"].abs().max()
        raise ValueError(
            f"No edge passes threshold {config.threshold} (largest |normalized score| is {best:.3g}), so the circuit "
            "is empty; lower --threshold or use --top-k."
        )
    info = {"corruption": config.corruption, "threshold": config.threshold, "seed": config.seed, "n": config.n,
            "metric": task.metric_name, "top_k": config.top_k or 0}
    model_name = Path(config.model).name
    circuit = Circuit.from_edges(kept, ComputeGraph.from_model(model), model_name, config.task_name, info)
    faith = faithfulness(circuit, model, task, PatchConfig(direction="noise", corruption=config.corruption, seed=config.seed))
    return DiscoveryResult(config, scores, circuit, faith, time.perf_counter() - started)
