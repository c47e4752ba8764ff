"""Prune a table of edge scores to the edges of a circuit.

A circuit keeps the edges whose effect on the metric is large: ``threshold`` keeps every edge with
``|score| >= threshold`` (in metric units, or as a fraction of the clean - corrupt gap when
``relative``); ``top_k`` keeps the ``k`` largest ``|score|`` (ties broken by table order, so the result
is deterministic). Either way, edges that are not on a path from ``embed`` to ``logits`` are dropped
afterwards: a head whose output reaches nothing kept cannot matter to the metric.

``acdc`` prunes greedily on exact circuit runs instead of single-edge scores, as ACDC does: an edge
stays only if removing it from the current circuit moves the metric by at least ``tau``.
"""

from dataclasses import dataclass
from typing import Literal

import networkx as nx
import pandas as pd
import torch
from torch import Tensor

from pathpatch.discovery.config import PatchConfig, normalized
from pathpatch.discovery.edges import NOISE, run_circuits, run_circuits_with_baselines
from pathpatch.discovery.graph import ComputeGraph, with_patching_hooks
from pathpatch.models.tasks import AnyTask
from pathpatch.names import component_name, edge_at, node_name, split_pos
from pathpatch.positions import Layout, is_positional

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


def prune(scores: pd.DataFrame, config: PruneConfig = PruneConfig(), positions: Layout | None = None) -> pd.DataFrame:
    """Return the rows of ``scores`` kept by ``config``, then restricted to embed -> logits paths
    (through positions, for position-aware rows: pass the task's ``positions``)."""
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
    return on_paths(kept, positions)


def strongest(scores: pd.DataFrame, k: int) -> pd.DataFrame:
    """Return the ``k`` rows with the largest ``|score|``, strongest first; ties keep table order."""
    order = scores["score"].abs().sort_values(ascending=False, kind="stable").index
    return scores.loc[order[:k]]


def prune_top_k(scores: pd.DataFrame, k: int) -> pd.DataFrame:
    """Return the ``k`` rows with the largest ``|score|``, in table order."""
    return strongest(scores, k).sort_index()


def edge_graph(edges: pd.DataFrame, positions: Layout | None = None) -> nx.DiGraph:
    """Return a DiGraph of components with one edge per row (src -> dest input -> dest component).

    Position-aware rows join ``src@p -> dest@p``; a head's query at ``p`` feeds the head at ``p``, its key
    or value at ``p`` the head at every position ``p`` reaches; ``embed`` feeds every ``embed@p`` and
    every ``logits@p`` feeds ``logits``, so one path search covers all positions.
    """
    graph = nx.DiGraph()
    for name, src, dest in zip(edges["edge"], edges["src"], edges["dest"]):
        pos = split_pos(str(name))[1] if positions is not None else None
        dest, owner = split_pos(dest)[0], component_name(dest)
        graph.add_edge(edge_at(src, pos), edge_at(dest, pos))
        if pos is None:
            if owner != dest:
                graph.add_edge(dest, owner)
            continue
        for special in ("embed", "logits"):
            graph.add_edge(*((special, edge_at(special, pos)) if special == "embed" else (edge_at(special, pos), special)))
        if owner == dest:
            continue
        targets = [pos] if dest.endswith(".q") else [b for b in positions.labels if (pos, b) in positions.reaches]
        for b in targets:
            graph.add_edge(edge_at(dest, pos), edge_at(owner, b))
    return graph


def on_paths(edges: pd.DataFrame, positions: Layout | None = None) -> pd.DataFrame:
    """Return the rows whose edge lies on some ``embed`` -> ``logits`` path through the kept edges
    (through positions, for position-aware rows with the task's ``positions``)."""
    if positions is None and is_positional(edges):
        raise ValueError("Position-aware rows (e.g. 'L0H0->L1H0.v@END') need the task's positions to find paths; pass positions=layout(task).")
    graph = edge_graph(edges, positions)
    embed, logits = node_name("embed"), node_name("logits")
    if embed not in graph or logits not in graph:
        return edges.iloc[0:0]
    reach = nx.descendants(graph, embed) | {embed}
    back = nx.ancestors(graph, logits) | {logits}
    keep = []
    for name, src, dest in zip(edges["edge"], edges["src"], edges["dest"]):
        pos = split_pos(str(name))[1] if positions is not None else None
        keep.append(edge_at(src, pos) in reach and edge_at(split_pos(dest)[0], pos) in back)
    return edges[keep]


@with_patching_hooks
def acdc(
    model: torch.nn.Module, task: AnyTask, tau: float = 0.01, config: PatchConfig = NOISE
) -> pd.DataFrame:
    """Prune ACDC-style (Conmy et al., 2023) on exact circuit runs; return the kept edges.

    Destinations are visited from ``logits`` backwards; for each, every incoming edge still in the
    circuit is tried removed (all candidates of one destination in one batched pass). The candidate
    that moves the normalized metric least is removed if that move is below ``tau``, and the remaining
    candidates are re-measured against the smaller circuit, until no removal stays below ``tau``.
    A component whose outputs were all removed loses its inputs without measurement: nothing reads it.

    Returns:
        Kept edges: ``edge, src, dest, channel, pos, metric, score, normalized, method``, where
        ``score`` is the metric lost when the edge was last tried removed (positive helps).
    """
    if tau < 0:
        raise ValueError(f"tau={tau}; give a non-negative normalized effect.")
    graph = ComputeGraph.from_model(model)
    _, clean, corrupt = run_circuits_with_baselines(model, task, graph.valid[None], config)  # the full and the empty circuit
    clean_metric, corrupt_metric = clean.mean().item(), corrupt.mean().item()
    gap = clean_metric - corrupt_metric
    normalized(torch.zeros(1), clean_metric, corrupt_metric, task.name)  # raises if gap is 0
    mask, current = graph.valid.clone(), clean_metric
    tried: dict[tuple[int, int], float] = {}
    for j in reversed(range(len(graph.dests))):
        dest = graph.dests[j]
        owner = graph.src_index(graph.node(component_name(dest.name))) if dest.kind != "logits" else None
        if owner is not None and not mask[owner].any():
            mask[:, j] = False
            continue
        while True:
            srcs = [i for i in reversed(range(len(graph.sources))) if mask[i, j]]
            if not srcs:
                break
            candidates = mask.unsqueeze(0).repeat(len(srcs), 1, 1)
            candidates[torch.arange(len(srcs)), torch.tensor(srcs), j] = False
            values = run_circuits(model, task, candidates, config)
            moves = ((current - values) / gap).abs()
            for i, value in zip(srcs, values.tolist()):
                tried[(i, j)] = current - value
            best = int(moves.argmin())
            if moves[best] >= tau:
                break
            mask[srcs[best], j] = False
            current = float(values[best])
    return _acdc_table(graph, mask, tried, gap, task.higher_is_better)


def _acdc_table(graph: ComputeGraph, mask: Tensor, tried: dict, gap: float, higher_is_better: bool) -> pd.DataFrame:
    """Rows for the kept edges of an ACDC run (``gap``: clean minus empty-circuit metric)."""
    sign = 1.0 if higher_is_better else -1.0
    rows = []
    for edge in graph.edges_of(mask):
        key = (graph.src_index(edge.src), graph.dest_index(edge.dest))
        lost = tried.get(key, float("nan"))
        rows.append({"edge": edge.name, "src": edge.src.name, "dest": edge.dest.name, "channel": edge.dest.channel or "",
                     "pos": -1, "metric": float("nan"), "score": sign * lost, "normalized": lost / gap, "method": "acdc"})
    columns = ["edge", "src", "dest", "channel", "pos", "metric", "score", "normalized", "method"]
    return on_paths(pd.DataFrame(rows, columns=columns))
