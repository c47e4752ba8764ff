"""Prune a table of edge scores to the edges of a circuit.

A circuit keeps the edges whose effect on the metric is large: ``threshold`` keeps every edge with
``|score| >= threshold`` (in metric units, or as a fraction of the clean - corrupt gap when
``relative``); ``top_k`` keeps the ``k`` largest ``|score|`` (ties broken by table order, so the result
is deterministic). These are the *strong* edges, and none of them is dropped.

A strong edge acts on the metric only through a chain ``embed -> ... -> src`` and ``dest -> ... -> logits``,
but the links of that chain may each be weak on their own: two readers of a head that cancel, a signal
spread over parallel links, or an effect split over positions. So each strong edge is joined to
``embed`` and to ``logits`` through its *widest* chain of scored edges: the chain whose weakest link
has the largest ``|score|`` (``|normalized|`` for relative thresholds), found by a widest-path search
(Dijkstra's search, maximising the weakest link instead of minimising a sum) over the edge graph of every row of the table
given to ``prune``; ties go to the chain the search finds first (it follows table order), so the
result is deterministic. Where strong edges alone form a chain it is the widest, so nothing is added.
Weaker edges added only to join a chain are *connectors* (column ``connector``). Only rows of the
table can connect (edges with an exact score), and never one whose score is zero or missing. By
position, chains follow ``edge_graph``'s rules: a query stays at its position, keys and values reach
later positions. A strong edge no chain can join is still kept (``connector`` False, named in
``attrs["unlinked"]``) and a warning says so.

``acdc`` prunes greedily on exact circuit runs instead of single-edge scores, as ACDC does: an edge
stays only if removing it from the current circuit moves the metric by at least ``tau``.
"""

import heapq
import itertools
import logging
import math
from dataclasses import dataclass
from typing import Literal

import networkx as nx
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.names import component_name, edge_at, node_name, split_pos
from pathpatch.patch.circuits import run_circuits, run_circuits_with_baselines
from pathpatch.patch.config import NOISE, PatchConfig
from pathpatch.patch.graph import ComputeGraph, with_patching_hooks
from pathpatch.patch.scores import normalized, strongest
from pathpatch.task.groups import AnyTask
from pathpatch.task.positions import Layout, is_positional

PruneMethod = Literal["threshold", "top_k"]
log = logging.getLogger("pathpatch.progress")


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
            raise InputError(f"Unknown prune method {self.method!r}; choose 'threshold' or 'top_k'.")
        if self.threshold < 0:
            raise InputError(f"threshold={self.threshold}; give a non-negative effect size.")
        if self.top_k < 1:
            raise InputError(f"top_k={self.top_k}; keep at least one edge.")


def prune(scores: pd.DataFrame, config: PruneConfig = PruneConfig(), positions: Layout | None = None) -> pd.DataFrame:
    """Return the strong rows of ``scores`` (those ``config`` keeps) and the connectors that join them to
    ``embed`` and ``logits`` (see the module docstring).

    Args:
        scores: Rows with exact scores (``edge, src, dest, score`` ...); only these can connect.
        config: Threshold or top-k settings.
        positions: The task's positions (``pathpatch.task.positions.layout``), for position-aware rows.

    Returns:
        The kept rows in table order with a boolean column ``connector`` (False: kept for its own effect).

    Raises:
        InputError: Columns missing, or position-aware rows without ``positions``.
    """
    missing = {"edge", "src", "dest", "score"} - set(scores.columns)
    if missing:
        raise InputError(f"Score table lacks columns {sorted(missing)}; pass the table from patch_edges or attribute_edges.")
    if config.method == "top_k":
        column = "score"
        strong = scores.index.isin(prune_top_k(scores, config.top_k).index)
    else:
        column = "normalized" if config.relative else "score"
        if column not in scores.columns:
            raise InputError("Relative thresholds need a 'normalized' column; score with normalize=True or pass relative=False.")
        strong = (scores[column].abs() >= config.threshold).to_numpy()
    return with_connectors(scores, strong, column, positions)


def with_connectors(scores: pd.DataFrame, strong: np.ndarray, column: str = "score", positions: Layout | None = None) -> pd.DataFrame:
    """Return the ``strong`` rows of ``scores`` and, as connectors, the rows on each one's widest chains
    from ``embed`` and to ``logits`` (widest: the largest weakest ``|column|`` along the chain).

    Args:
        scores: Scored rows; every row with a nonzero finite ``column`` may connect.
        strong: One flag per row, True for an edge kept on its own effect.
        column: The score column whose ``|value|`` measures a link (``normalized`` or ``score``).
        positions: The task's positions, for position-aware rows.

    Returns:
        The strong rows and connectors in table order, with a boolean column ``connector``; strong edges that
        no chain joins to both ``embed`` and ``logits`` are kept too, named in ``attrs["unlinked"]`` and logged.

    Examples:
        >>> rows = pd.DataFrame({"edge": ["embed->L0H0.v", "L0H0->logits", "embed->logits"], "src": ["embed", "L0H0", "embed"],
        ...                      "dest": ["L0H0.v", "logits", "logits"], "score": [0.01, 1.0, 0.002]})
        >>> kept = with_connectors(rows, np.array([False, True, False]))
        >>> list(zip(kept["edge"], kept["connector"]))
        [('embed->L0H0.v', True), ('L0H0->logits', False)]
    """
    if positions is None and is_positional(scores):
        raise InputError("Position-aware rows (e.g. 'L0H0->L1H0.v@END') need the task's positions to find paths; pass positions=layout(task).")
    flags = np.asarray(strong, dtype=bool)
    table = scores.reset_index(drop=True)
    width = table[column].abs().fillna(0.0).to_numpy()
    graph = edge_graph(table[flags | (width > 0)], positions)
    embed, logits = node_name("embed"), node_name("logits")
    up, down = _widest_tree(graph, embed, width), _widest_tree(graph, logits, width, backward=True)
    arcs = {row: (u, v) for u, v, row in graph.edges(data="row") if row is not None}
    joined, unlinked = set(), []
    for row in np.flatnonzero(flags):
        before, after = _chain(graph, up, arcs[row][0], embed), _chain(graph, down, arcs[row][1], logits, backward=True)
        if before is None or after is None:
            unlinked.append(str(table.at[row, "edge"]))
        else:
            joined.update(before + after)
    connector = ~flags & np.isin(np.arange(len(table)), sorted(joined))
    keep = flags | connector
    if unlinked:
        named = ", ".join(unlinked[:5]) + (" ..." if len(unlinked) > 5 else "")
        log.warning("%d edge(s) pass the threshold but no chain of scored edges joins them to both embed and logits; kept "
                    "unjoined: %s (with eap/eap-ig, a larger --recheck scores more edges exactly)", len(unlinked), named)
    kept = scores[keep].assign(connector=connector[keep])
    kept.attrs = {**scores.attrs, "unlinked": unlinked}
    return kept


def _widest_tree(graph: nx.DiGraph, root: str, width: np.ndarray, backward: bool = False) -> dict[str, str]:
    """Return, for each node a chain joins to ``root`` (forwards, or backwards to it), the next node towards
    ``root`` on its widest chain: Dijkstra's search with the bottleneck ``min`` in place of the sum.
    Arcs carrying a table row are as wide as ``width[row]``; structural arcs are unbounded."""
    if root not in graph:
        return {}
    best, parent, done = {root: math.inf}, {}, set()
    tick = itertools.count()
    heap = [(-math.inf, next(tick), root)]
    while heap:
        negative, _, node = heapq.heappop(heap)
        if node in done:
            continue
        done.add(node)
        arcs = graph.in_edges(node, data="row") if backward else graph.out_edges(node, data="row")
        for u, v, row in arcs:
            other = u if backward else v
            bottleneck = min(-negative, math.inf if row is None else float(width[row]))
            if other not in done and bottleneck > best.get(other, -1.0):
                best[other], parent[other] = bottleneck, node
                heapq.heappush(heap, (-bottleneck, next(tick), other))
    return parent


def _chain(graph: nx.DiGraph, parent: dict[str, str], node: str, root: str, backward: bool = False) -> list[int] | None:
    """Return the table rows on the tree path between ``node`` and ``root``, or None if none joins them."""
    rows = []
    while node != root:
        if node not in parent:
            return None
        arc = (node, parent[node]) if backward else (parent[node], node)
        row = graph.edges[arc].get("row")
        if row is not None:
            rows.append(row)
        node = parent[node]
    return rows


def prune_top_k(scores: pd.DataFrame, k: int) -> pd.DataFrame:
    """Return the ``k`` rows with the largest ``|score|``, in table order."""
    return strongest(scores, k).sort_index()


def edge_graph(edges: pd.DataFrame, positions: Layout | None = None) -> nx.DiGraph:
    """Return a DiGraph of components with one edge per row (src -> dest input -> dest component).

    Position-aware rows join ``src@p -> dest@p``; a head's query at ``p`` feeds the head at ``p``, its key
    or value at ``p`` the head at every position ``p`` reaches; ``embed`` feeds every ``embed@p`` and
    every ``logits@p`` feeds ``logits``, so one path search covers all positions. The arc of a row carries
    its index label as ``row``; the structural arcs carry none.
    """
    graph = nx.DiGraph()
    for row, name, src, dest in zip(edges.index, edges["edge"], edges["src"], edges["dest"]):
        pos = split_pos(str(name))[1] if positions is not None else None
        dest, owner = split_pos(dest)[0], component_name(dest)
        graph.add_edge(edge_at(src, pos), edge_at(dest, pos), row=row)
        if pos is None:
            if owner != dest:
                graph.add_edge(dest, owner)
            continue
        for special in ("embed", "logits"):
            graph.add_edge(*((special, edge_at(special, pos)) if special == "embed" else (edge_at(special, pos), special)))
        if owner == dest:
            continue
        for b in positions.moves_to(pos, dest.rpartition(".")[2]):
            graph.add_edge(edge_at(dest, pos), edge_at(owner, b))
    return graph


def on_paths(edges: pd.DataFrame, positions: Layout | None = None) -> pd.DataFrame:
    """Return the rows whose edge lies on some ``embed`` -> ``logits`` path through the kept edges
    (through positions, for position-aware rows with the task's ``positions``)."""
    if positions is None and is_positional(edges):
        raise InputError("Position-aware rows (e.g. 'L0H0->L1H0.v@END') need the task's positions to find paths; pass positions=layout(task).")
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
        raise InputError(f"tau={tau}; give a non-negative normalized effect.")
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
