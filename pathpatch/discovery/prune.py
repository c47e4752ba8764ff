"""Prune a table of edge scores to the edges of a circuit.

A circuit keeps the edges whose effect on the metric is large: ``threshold`` keeps every edge with
``|score| >= threshold`` (in metric units, or as a fraction of the clean - corrupt gap when
``relative``); ``top_k`` keeps the ``k`` largest ``|score|`` (ties broken by table order, so the result
is deterministic). Either way, edges that are not on a path from ``embed`` to ``logits`` are dropped
afterwards: a head whose output reaches nothing kept cannot matter to the metric.
"""

from dataclasses import dataclass
from typing import Literal

import networkx as nx
import pandas as pd

from pathpatch.names import component_name, node_name

PruneMethod = Literal["threshold", "top_k"]


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    """How to choose a circuit's edges from scores.

    Attributes:
        method: ``threshold`` or ``top_k``.
        threshold: Minimum ``|score|`` kept (``threshold`` method).
        relative: Read ``threshold`` as a fraction of ``|clean - corrupt|`` (needs ``normalized``).
        top_k: Number of edges kept (``top_k`` method).
    """

    method: PruneMethod = "threshold"
    threshold: float = 0.05
    relative: bool = True
    top_k: int = 10

    def __post_init__(self) -> None:
        if self.method not in ("threshold", "top_k"):
            raise ValueError(f"Unknown prune method {self.method!r}; choose 'threshold' or 'top_k'.")
        if self.threshold < 0:
            raise ValueError(f"threshold={self.threshold}; give a non-negative effect size.")
        if self.top_k < 1:
            raise ValueError(f"top_k={self.top_k}; keep at least one edge.")


def prune(scores: pd.DataFrame, config: PruneConfig = PruneConfig()) -> pd.DataFrame:
    """Return the rows of ``scores`` kept by ``config``, then restricted to embed -> logits paths."""
    missing = {"edge", "src", "dest", "score"} - set(scores.columns)
    if missing:
        raise ValueError(f"Score table lacks columns {sorted(missing)}; pass the table from patch_edges or attribute_edges.")
    if config.method == "top_k":
        kept = prune_top_k(scores, config.top_k)
    else:
        column = "normalized" if config.relative else "score"
        if column not in scores.columns:
            raise ValueError("Relative thresholds need a 'normalized' column; score with normalize=True or pass relative=False.")
        kept = scores[scores[column].abs() >= config.threshold]
    return on_paths(kept)


def prune_top_k(scores: pd.DataFrame, k: int) -> pd.DataFrame:
    """Return the ``k`` rows with the largest ``|score|``; ties keep table order."""
    order = scores["score"].abs().sort_values(ascending=False, kind="stable").index
    return scores.loc[order[:k]].sort_index()


def edge_graph(edges: pd.DataFrame) -> nx.DiGraph:
    """Return a DiGraph of components with one edge per row (src -> dest input -> dest component)."""
    graph = nx.DiGraph()
    for src, dest in zip(edges["src"], edges["dest"]):
        graph.add_edge(src, dest)
        if component_name(dest) != dest:
            graph.add_edge(dest, component_name(dest))
    return graph


def on_paths(edges: pd.DataFrame) -> pd.DataFrame:
    """Return the rows whose edge lies on some ``embed`` -> ``logits`` path through the kept edges."""
    graph = edge_graph(edges)
    embed, logits = node_name("embed"), node_name("logits")
    if embed not in graph or logits not in graph:
        return edges.iloc[0:0]
    reach = nx.descendants(graph, embed) | {embed}
    back = nx.ancestors(graph, logits) | {logits}
    keep = [src in reach and component_name(dest) in back for src, dest in zip(edges["src"], edges["dest"])]
    return edges[keep]
