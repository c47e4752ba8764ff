"""A circuit: the kept edges of a model's graph as a ``networkx.DiGraph``, with provenance.

Nodes are the graph's names: components (``embed``, ``L0H0``, ``MLP1``, ``logits``) and head inputs
(``L1H0.v``). A kept edge ``L0H0->L1H0.v`` becomes the graph edge ``L0H0 -> L1H0.v`` carrying its
``score`` (and ``normalized``, ``channel``, ``method``, and ``connector``: True for an edge kept only
to join a stronger edge to ``embed`` and ``logits``, see ``discovery.prune``), plus the structural edge
``L1H0.v -> L1H0`` that joins an input to its head; so a V-composition path reads ``embed -> L0H0.v ->
L0H0 -> L1H0.v -> L1H0 -> logits``. Node attributes: ``layer``, ``head``, ``kind``, ``stage`` (forward order), ``pos``
(-1: all positions), ``hook``. Graph attributes record how the circuit was found (model, task, method,
metric, corruption, threshold, seed, version) and its ``granularity``.

A position-aware circuit (``granularity = "position"``) has nodes at positions, ``L0H0@p0``,
``L1H0.v@p0`` (``pos`` the label, ``column`` its index in the graph attribute ``positions``, the task's
``Layout``): the kept edge ``L0H0->L1H0.v@p0`` joins ``L0H0@p0 -> L1H0.v@p0``, and heads move
information between positions inside themselves (``L1H0.v@p0 -> L1H0@END``), so a path reads
``embed@a0 -> L0H0.v@a0 -> L0H0@p0 -> L1H0.v@p0 -> L1H0@END -> logits@END``.
JSON export is networkx's node-link format, so ``from_json(to_json(c)) == c``.
"""

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import pandas as pd
from jaxtyping import Bool
from torch import Tensor

from pathpatch import __version__
from pathpatch.errors import InputError
from pathpatch.files import read_text_limited, write_text_atomic
from pathpatch.names import Node, all_node_names, component_name, edge_at, is_edge, node_name, parse_node, split_pos
from pathpatch.patch.graph import ComputeGraph
from pathpatch.task.positions import Layout, is_positional
from pathpatch.task.task import LABEL
from pathpatch.vocabulary import GRANULARITIES


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
        cls, edges: pd.DataFrame, compute_graph: ComputeGraph, model_name: str, task_name: str, info: dict | None = None,
        positions: Layout | None = None,
    ) -> "Circuit":
        """Build a circuit from kept rows of a score table (``edge, src, dest, score`` ..., and ``connector``
        from ``prune``: False where absent).

        Position-aware rows (``L0H0->L1H0.v@END``, from ``patch_edges(by_pos=True)``) need the task's
        ``positions`` (``pathpatch.task.positions.layout``): their nodes are ``L0H0@END``, ``L1H0.v@END``, and a
        head's key or value input at ``a`` joins the head's outputs at every kept position ``a`` can reach.

        Examples:
            >>> import pandas as pd
            >>> rows = pd.DataFrame({"edge": ["embed->L0H0.v", "L0H0->logits"], "src": ["embed", "L0H0"],
            ...                      "dest": ["L0H0.v", "logits"], "score": [2.0, 1.5], "method": "exact-noise"})
            >>> c = Circuit.from_edges(rows, ComputeGraph(1, 1, True), "toy", "task")
            >>> sorted(c.graph.edges())
            [('L0H0', 'logits'), ('L0H0.v', 'L0H0'), ('embed', 'L0H0.v')]
        """
        positional = is_positional(edges)
        if positional and positions is None:
            raise InputError("Position-aware rows (e.g. 'L0H0->L1H0.v@END') need the task's positions: "
                             "Circuit.from_edges(..., positions=pathpatch.task.positions.layout(task)).")
        graph = nx.DiGraph()
        method = str(edges["method"].iloc[0]) if len(edges) and "method" in edges else "unknown"
        for row in edges.itertuples(index=False):
            base, pos = split_pos(str(row.edge))
            if positional and pos is None:
                raise InputError(f"Edge {row.edge!r} has no position, but the table is position-aware; keep one kind of row.")
            src, dest = compute_graph.node(row.src), compute_graph.node(split_pos(row.dest)[0])
            names = [_add_node(graph, node, pos, positions) for node in (src, dest)]
            attrs = {"score": float(row.score), "channel": dest.channel or "", "method": method, "kind": "edge",
                     "connector": bool(getattr(row, "connector", False))}
            if hasattr(row, "normalized"):
                attrs["normalized"] = float(row.normalized)
            graph.add_edge(*names, **attrs)
        _join_inputs(graph, compute_graph, positions if positional else None)
        graph.graph.update(
            model=model_name, task=task_name, method=method, version=__version__,
            n_layers=compute_graph.n_layers, n_heads=compute_graph.n_heads, attn_only=compute_graph.attn_only,
            parallel=compute_graph.parallel, granularity="position" if positional else "component",
            **({"positions": positions.to_dict()} if positional else {}),
            **(info or {}),
        )
        return cls(graph, model_name, task_name, method, dict(info or {}))

    @property
    def compute_graph(self) -> ComputeGraph:
        """The full graph of the model this circuit came from."""
        g = self.graph.graph
        return ComputeGraph(int(g["n_layers"]), int(g["n_heads"]), bool(g["attn_only"]), bool(g.get("parallel", False)))

    @property
    def layout(self) -> Layout | None:
        """The position columns of a position-aware circuit; None for a position-free one."""
        data = self.graph.graph.get("positions")
        return None if data is None else Layout.from_dict(data)

    @property
    def scored_edges(self) -> list[str]:
        """Names of the kept (scored) edges, as score tables name them (``L0H0->L1H0.v``, ``L0H0->L1H0.v@END``), sorted."""
        return sorted(edge_at(f"{split_pos(u)[0]}->{split_pos(v)[0]}", split_pos(v)[1])
                      for u, v, kind in self.graph.edges(data="kind") if kind == "edge")

    @property
    def connectors(self) -> list[str]:
        """Names of the kept edges that are connectors (below the threshold, kept to join a stronger edge), sorted."""
        return sorted(edge_at(f"{split_pos(u)[0]}->{split_pos(v)[0]}", split_pos(v)[1])
                      for u, v, attrs in self.graph.edges(data=True) if attrs.get("kind") == "edge" and attrs.get("connector"))

    def mask(self) -> Bool[Tensor, "src dest *pos"]:
        """Return the circuit as a ``[src dest]`` mask over its model's ``ComputeGraph``, or ``[src dest pos]``
        over the layout's labels for a position-aware circuit."""
        return self.compute_graph.mask(self.scored_edges, self.layout)

    def to_dict(self) -> dict:
        """Return the circuit as networkx node-link data (JSON-ready)."""
        return nx.node_link_data(self.graph, edges="edges")

    def to_json(self, path: "str | Path") -> Path:
        """Write the circuit as JSON atomically; return the path."""
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path


def _add_node(graph: nx.DiGraph, node: Node, pos: str | None, positions: Layout | None) -> str:
    """Add a node (at a position) with its attributes; return its name."""
    name = edge_at(node.base, pos)
    where = {"pos": -1} if pos is None else {"pos": pos, "column": positions.index(pos)}
    graph.add_node(name, layer=node.layer, head=node.head, kind=node.kind, stage=node.stage, hook=node.hook_out or node.hook_in, **where)
    return name


def _join_inputs(graph: nx.DiGraph, compute_graph: ComputeGraph, positions: Layout | None) -> None:
    """Join every head input to its head: ``L1H0.v -> L1H0``; by position, a query at ``a`` to the head at ``a``
    and a key or value at ``a`` to the head's kept outputs at positions ``a`` reaches (else to the head at ``a``)."""
    inputs = [n for n, kind in graph.nodes(data="kind") if kind == "head_input"]
    outputs = {n for n, kind in graph.nodes(data="kind") if kind == "head"}
    for name in inputs:
        base, pos = split_pos(name)
        owner = compute_graph.node(component_name(base))
        if positions is None:
            targets = [(owner.name, None)]
        else:
            kept = [p for p in positions.moves_to(pos, base.rpartition(".")[2]) if edge_at(owner.name, p) in outputs]
            targets = [(edge_at(owner.name, p), p) for p in kept] or [(edge_at(owner.name, pos), pos)]
        for target, p in targets:
            if target not in graph:
                _add_node(graph, owner, p, positions)
            graph.add_edge(name, target, kind="internal")


MAX_HEADS = 2**16  # layers x heads a circuit file may record (GPT-3 has 96 x 96); larger shapes are refused


def from_dict(data: object, source: str = "circuit") -> Circuit:
    """Rebuild a circuit from node-link data after ``validate`` checks it.

    Raises:
        ValueError: Not node-link data, or a node, edge or setting that its recorded shape does not allow.
    """
    validate(data, source)
    graph = nx.node_link_graph(data, directed=True, edges="edges")
    attrs = graph.graph
    _fill_node_attributes(graph)
    for _, _, edge in graph.edges(data=True):  # files written before connectors existed: every edge passed on its own
        if edge.get("kind") == "edge":
            edge.setdefault("connector", False)
    return Circuit(graph, attrs["model"], attrs["task"], attrs["method"], {k: v for k, v in attrs.items() if k not in ("model", "task", "method")})


def _fill_node_attributes(graph: nx.DiGraph) -> None:
    """Give every node the attributes its name implies where a hand-written file left them out (validated equal where given)."""
    g = graph.graph
    known = shape_nodes(int(g["n_layers"]), int(g["n_heads"]), bool(g["attn_only"]))
    columns = Layout.from_dict(g["positions"]) if g.get("positions") is not None else None
    for name, attrs in graph.nodes(data=True):
        base, pos = split_pos(name) if columns is not None else (name, None)
        for key, value in {**known[base], **({"pos": -1} if pos is None else {"pos": pos, "column": columns.index(pos)})}.items():
            attrs.setdefault(key, value)


def validate(data: object, source: str = "circuit") -> None:
    """Check node-link data against the model shape it records, without importing TransformerLens.

    Every node must exist in a model of the recorded ``n_layers``, ``n_heads``, ``attn_only`` (with
    the layer, head, kind and stage its name implies), every edge must join two of the circuit's
    nodes, and every scored edge must be an edge of that model's graph (a writer to a later reader;
    in ``parallel`` models no head of layer l feeds ``MLP{l}``), with a finite score and, where given, a
    boolean ``connector`` (files without it read as false).

    Raises:
        ValueError: The first problem found, naming the node, edge or key, with ``source`` (the file).

    Examples:
        >>> data = {"graph": {"model": "m", "task": "t", "method": "exact", "n_layers": 2, "n_heads": 1, "attn_only": True},
        ...         "nodes": [{"id": "embed"}, {"id": "L9H9.v"}], "edges": []}
        >>> validate(data)
        Traceback (most recent call last):
        pathpatch.errors.InputError: circuit: unknown node 'L9H9.v' for a 2-layer, 1-head model without MLPs; its nodes are embed, L0H0..L1H0 (inputs .q/.k/.v) and logits. Did you mean 'L1H0.v', 'L0H0.v'?
    """
    where = f"{source}:"
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not isinstance(data.get("edges"), list) or not isinstance(data.get("graph"), dict):
        raise InputError(f"{where} not a pathpatch circuit (node-link JSON needs 'graph', 'nodes' and 'edges'); write circuits with Circuit.to_json().")
    shape = _check_settings(data["graph"], where)
    columns = _check_layout(data["graph"], where)
    nodes = _check_nodes(data["nodes"], shape, columns, where)
    for item in data["edges"]:
        _check_edge(item, nodes, shape, columns, where)


def _check_settings(attrs: dict, where: str) -> tuple[int, int, bool, bool]:
    """Return the recorded shape ``(n_layers, n_heads, attn_only, parallel)`` after checking its types."""
    for key in ("model", "task", "method"):
        if not isinstance(attrs.get(key), str):
            raise InputError(f"{where} not a pathpatch circuit: graph '{key}' is missing or not a string; write circuits with Circuit.to_json().")
    for key in ("n_layers", "n_heads"):
        value = attrs.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HEADS:
            raise InputError(f"{where} graph '{key}' is {value!r}; it must be the model's {key}, an integer from 1 to {MAX_HEADS}.")
    if attrs["n_layers"] * attrs["n_heads"] > MAX_HEADS:
        raise InputError(f"{where} records {attrs['n_layers']} layers x {attrs['n_heads']} heads; circuits of more than {MAX_HEADS} heads are not supported.")
    for key, default in (("attn_only", None), ("parallel", False)):
        if not isinstance(attrs.get(key, default), bool):
            raise InputError(f"{where} graph '{key}' is {attrs.get(key)!r}; it must be true or false (write circuits with Circuit.to_json()).")
    return attrs["n_layers"], attrs["n_heads"], attrs["attn_only"], attrs.get("parallel", False)


def _check_layout(attrs: dict, where: str) -> Layout | None:
    """Return the recorded position columns of a position-aware circuit (None for a position-free one)."""
    granularity = attrs.get("granularity", "component")
    if granularity not in GRANULARITIES:
        raise InputError(f"{where} graph 'granularity' is {granularity!r}; it must be 'component' or 'position'.")
    data = attrs.get("positions")
    if granularity == "component":
        if data is not None:
            raise InputError(f"{where} graph 'positions' is set but granularity is 'component'; set granularity 'position' or drop 'positions'.")
        return None
    fix = "write circuits with Circuit.to_json()"
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("labels", "tokens", "reaches")):
        raise InputError(f"{where} a position-aware circuit needs graph 'positions' with lists 'labels', 'tokens', 'reaches'; {fix}.")
    labels = data["labels"]
    if not labels or len(labels) > MAX_HEADS or len(set(map(str, labels))) != len(labels) or not all(isinstance(x, str) and LABEL.match(x) for x in labels):
        raise InputError(f"{where} graph 'positions' labels {labels[:8]!r} must be 1 to {MAX_HEADS} distinct names (letters, digits, '_'); {fix}.")
    if len(data["tokens"]) != len(labels) or not all(isinstance(t, str) for t in data["tokens"]):
        raise InputError(f"{where} graph 'positions' needs one token text per label; {fix}.")
    for pair in data["reaches"]:
        if not isinstance(pair, list) or len(pair) != 2 or not all(p in labels for p in pair):
            raise InputError(f"{where} graph 'positions' reaches entry {pair!r:.60} must be a pair of its labels; {fix}.")
    return Layout.from_dict(data)


def shape_nodes(n_layers: int, n_heads: int, attn_only: bool) -> dict[str, dict]:
    """Return every node of a model shape with its ``layer``, ``head``, ``kind`` and ``stage``, in forward order.

    The nodes of ``names.all_node_names`` with the attributes ``names.parse_node`` gives them, as a circuit file records them.

    Examples:
        >>> list(shape_nodes(1, 1, True))
        ['embed', 'L0H0.q', 'L0H0.k', 'L0H0.v', 'L0H0', 'logits']
    """
    return _attributes(_parsed_nodes(n_layers, n_heads, attn_only))


def _parsed_nodes(n_layers: int, n_heads: int, attn_only: bool) -> dict[str, Node]:
    """Every node of a model shape by name, parsed once (without hook names: no TransformerLens import)."""
    return {name: parse_node(name, n_layers, n_heads, attn_only, hooks=False) for name in all_node_names(n_layers, n_heads, attn_only)}


def _attributes(nodes: dict[str, Node]) -> dict[str, dict]:
    """The attributes a circuit file records for each node."""
    return {name: {"layer": n.layer, "head": n.head, "kind": n.kind, "stage": n.stage} for name, n in nodes.items()}


def _check_nodes(items: list, shape: tuple[int, int, bool, bool], columns: Layout | None, where: str) -> dict[str, dict]:
    """Return the circuit's nodes by name (attributes plus ``at``, the position, and ``node``, the parsed name), each
    checked against ``shape`` with the attributes its name implies, at a recorded position exactly when the circuit is
    position-aware."""
    n_layers, n_heads, attn_only, _ = shape
    parsed = _parsed_nodes(n_layers, n_heads, attn_only)
    known = _attributes(parsed)
    seen: dict[str, dict] = {}
    for item in items:
        name = item.get("id") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise InputError(f"{where} every node needs a string 'id' (a node name such as 'L0H0'), got {item!r:.80}.")
        base, pos = split_pos(name) if columns is not None else (name, None)
        if base not in known:
            raise InputError(_unknown_node(name, shape, where, known))
        if name in seen:
            raise InputError(f"{where} node {name!r} is listed twice.")
        expected = dict(known[base])
        if columns is None:
            if item.get("pos", -1) != -1:
                raise InputError(f"{where} node {name!r} has pos {item['pos']!r}, but the circuit is not position-aware (pos must be -1).")
        elif pos is None or pos not in columns.labels:
            raise InputError(f"{where} node {name!r} of a position-aware circuit must be at one of its positions "
                             f"({', '.join(columns.labels[:8])}{' ...' if len(columns.labels) > 8 else ''}), e.g. '{base}@{columns.labels[0]}'.")
        else:
            expected.update(pos=pos, column=columns.index(pos))
        for key, value in expected.items():
            if key in item and item[key] != value:
                raise InputError(f"{where} node {name!r} records {key} {item[key]!r}, but {name} has {key} {value!r}; "
                                 "the file was edited by hand. Write circuits with Circuit.to_json().")
        seen[name] = {**known[base], "at": pos, "node": parsed[base]}
    return seen


def _check_edge(item: object, nodes: dict[str, dict], shape: tuple[int, int, bool, bool], columns: Layout | None, where: str) -> None:
    """Check one edge: both ends are circuit nodes, scored edges are edges of the shape's graph with finite scores."""
    if not isinstance(item, dict) or not isinstance(item.get("source"), str) or not isinstance(item.get("target"), str):
        raise InputError(f"{where} every edge needs string 'source' and 'target' node names, got {item!r:.80}.")
    src, dest, kind = item["source"], item["target"], item.get("kind")
    name = f"{src}->{dest}"
    for end in (src, dest):
        if end not in nodes:
            raise InputError(f"{where} edge {name!r} joins {end!r}, which is not a node of the circuit; list it under 'nodes' or drop the edge.")
    a, b = nodes[src], nodes[dest]
    if kind == "internal":
        if a["kind"] != "head_input" or component_name(src) != split_pos(dest)[0]:
            raise InputError(f"{where} internal edge {name!r} must join a head's input to its head (e.g. 'L1H0.v->L1H0').")
        if columns is not None and b["at"] not in columns.moves_to(a["at"], split_pos(src)[0].rpartition(".")[2]):
            raise InputError(f"{where} internal edge {name!r} moves information to a position its input cannot reach "
                             "(queries stay at their position; keys and values reach later positions).")
        return
    if kind != "edge":
        raise InputError(f"{where} edge {name!r} has kind {kind!r}; edges are 'edge' (scored) or 'internal' (input to its head).")
    if a["at"] != b["at"]:
        raise InputError(f"{where} edge {name!r} joins two positions; a residual-stream edge joins a writer and a reader at one position.")
    parallel = shape[3]
    if not is_edge(a["node"], b["node"], parallel=parallel):
        raise InputError(f"{where} {name!r} is not an edge of this model's graph: an edge runs from an output (embed, a head, an MLP) "
                         f"to a later input (a head's .q/.k/.v, a later MLP, logits){' (parallel blocks: no head feeds its own layer MLP)' if parallel else ''}.")
    for key in ("score", "normalized"):
        value = item.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{where} edge {name!r} has {key} {value!r}; scores must be finite numbers.")
    if not isinstance(item.get("connector", False), bool):
        raise InputError(f"{where} edge {name!r} has connector {item['connector']!r}; it must be true or false "
                         "(true: kept only to join a stronger edge to embed and logits), or left out (false).")


def _unknown_node(name: str, shape: tuple[int, int, bool, bool], where: str, known: dict) -> str:
    """The message for a node the recorded shape lacks, with close matches."""
    n_layers, n_heads, attn_only, _ = shape
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    mlps = " without MLPs" if attn_only else ""
    last = node_name("head", n_layers - 1, n_heads - 1)
    mlp_range = "" if attn_only else f", {node_name('mlp', 0)}..{node_name('mlp', n_layers - 1)}"
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (f"{where} unknown node {name!r} for a {n_layers}-layer, {n_heads}-head model{mlps}; its nodes are embed, "
            f"L0H0..{last} (inputs .q/.k/.v){mlp_range} and logits.{hint}")


def from_json(path: "str | Path") -> Circuit:
    """Read and validate a circuit written by ``Circuit.to_json`` (at most ``files.MAX_INPUT_BYTES``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Too large, not JSON, nested too deeply, or not a valid circuit (``validate``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No circuit file at {path}; run `pathpatch discover ... --out DIR` to make one.")
    text = read_text_limited(path, "circuit")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err}); write circuits with Circuit.to_json().") from err
    except RecursionError:
        raise InputError(f"{path} nests JSON deeper than it can be read; a circuit file is flat node-link JSON, so this is not one.") from None
    return from_dict(data, str(path))
