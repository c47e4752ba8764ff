"""A circuit: the kept edges of a model's graph as a ``networkx.DiGraph``, with provenance.

Nodes are the graph's names: components (``embed``, ``L0H0``, ``MLP1``, ``logits``) and head inputs
(``L1H0.v``). A kept edge ``L0H0->L1H0.v`` becomes the graph edge ``L0H0 -> L1H0.v`` carrying its
``score`` (and ``normalized``, ``channel``, ``method``), plus the structural edge ``L1H0.v -> L1H0``
that joins an input to its head; so a V-composition path reads ``embed -> L0H0.v -> L0H0 -> L1H0.v
-> L1H0 -> logits``. Node attributes: ``layer``, ``head``, ``kind``, ``stage`` (forward order), ``pos``
(-1: all positions; position-aware circuits are not built yet), ``hook``. Graph attributes record
how the circuit was found (model, task, method, metric, corruption, threshold, seed, version).
JSON export is networkx's node-link format, so ``from_json(to_json(c)) == c``.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import pandas as pd
from jaxtyping import Bool
from torch import Tensor

from pathpatch import __version__
from pathpatch.discovery.graph import ComputeGraph
from pathpatch.files import write_text_atomic
from pathpatch.names import component_name


@dataclass(eq=False)
class Circuit:
    """A pruned circuit.

    Attributes:
        graph: The kept edges and their nodes, with attributes (see module docstring).
        model_name: Model the circuit was found in.
        task_name: Task it explains.
        method: Scoring method (``exact-noise``, ``eap-ig`` ...).
    """

    graph: nx.DiGraph
    model_name: str
    task_name: str
    method: str
    info: dict = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Circuit) and self.to_dict() == other.to_dict()

    @classmethod
    def from_edges(
        cls, edges: pd.DataFrame, compute_graph: ComputeGraph, model_name: str, task_name: str, info: dict | None = None
    ) -> "Circuit":
        """Build a circuit from kept rows of a score table (``edge, src, dest, score`` ...).

        Examples:
            >>> import pandas as pd
            >>> rows = pd.DataFrame({"edge": ["embed->L0H0.v", "L0H0->logits"], "src": ["embed", "L0H0"],
            ...                      "dest": ["L0H0.v", "logits"], "score": [2.0, 1.5], "method": "exact-noise"})
            >>> c = Circuit.from_edges(rows, ComputeGraph(1, 1, True), "toy", "task")
            >>> sorted(c.graph.edges())
            [('L0H0', 'logits'), ('L0H0.v', 'L0H0'), ('embed', 'L0H0.v')]
        """
        if "pos" in edges and (edges["pos"] >= 0).any():
            raise ValueError(
                "Position-aware circuits (edges scored with by_pos=True, e.g. 'L0H0->L1H0.v@5') are not supported yet; "
                "score edges over all positions to build a circuit."
            )
        graph = nx.DiGraph()
        method = str(edges["method"].iloc[0]) if len(edges) and "method" in edges else "unknown"
        for row in edges.itertuples(index=False):
            src, dest = compute_graph.node(row.src), compute_graph.node(row.dest)
            for node in (src, dest):
                graph.add_node(node.name, layer=node.layer, head=node.head, kind=node.kind, stage=node.stage, pos=-1, hook=node.hook_out or node.hook_in)
            attrs = {"score": float(row.score), "channel": dest.channel or "", "method": method, "kind": "edge"}
            if hasattr(row, "normalized"):
                attrs["normalized"] = float(row.normalized)
            graph.add_edge(src.name, dest.name, **attrs)
            owner = component_name(dest.name)
            if owner != dest.name:
                head = compute_graph.node(owner)
                graph.add_node(owner, layer=head.layer, head=head.head, kind=head.kind, stage=head.stage, pos=-1, hook=head.hook_out)
                graph.add_edge(dest.name, owner, kind="internal")
        graph.graph.update(
            model=model_name, task=task_name, method=method, version=__version__,
            n_layers=compute_graph.n_layers, n_heads=compute_graph.n_heads, attn_only=compute_graph.attn_only,
            parallel=compute_graph.parallel,
            **(info or {}),
        )
        return cls(graph, model_name, task_name, method, dict(info or {}))

    @property
    def compute_graph(self) -> ComputeGraph:
        """The full graph of the model this circuit came from."""
        g = self.graph.graph
        return ComputeGraph(int(g["n_layers"]), int(g["n_heads"]), bool(g["attn_only"]), bool(g.get("parallel", False)))

    @property
    def scored_edges(self) -> list[str]:
        """Names ``src->dest`` of the kept (scored) edges, sorted."""
        return sorted(f"{u}->{v}" for u, v, kind in self.graph.edges(data="kind") if kind == "edge")

    def mask(self) -> Bool[Tensor, "src dest"]:
        """Return the circuit as a ``[src dest]`` mask over its model's ``ComputeGraph``."""
        return self.compute_graph.mask(self.scored_edges)

    def to_dict(self) -> dict:
        """Return the circuit as networkx node-link data (JSON-ready)."""
        return nx.node_link_data(self.graph, edges="edges")

    def to_json(self, path: "str | Path") -> Path:
        """Write the circuit as JSON atomically; return the path."""
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path


def from_dict(data: dict) -> Circuit:
    """Rebuild a circuit from node-link data; raise ValueError naming what is missing."""
    try:
        graph = nx.node_link_graph(data, directed=True, edges="edges")
        attrs = graph.graph
        return Circuit(graph, attrs["model"], attrs["task"], attrs["method"], {k: v for k, v in attrs.items() if k not in ("model", "task", "method")})
    except (KeyError, TypeError, nx.NetworkXError) as err:
        raise ValueError(f"Not a pathpatch circuit (missing {err}); write circuits with Circuit.to_json().") from err


def from_json(path: "str | Path") -> Circuit:
    """Read a circuit written by ``Circuit.to_json``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No circuit file at {path}; run `pathpatch discover ... --out DIR` to make one.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); write circuits with Circuit.to_json().") from err
    return from_dict(data)
