"""EAP-IG's circuit files (``Graph.to_json``/``to_pt``, the files MIB's circuit track reads), read and written exactly.

EAP-IG (hannamw/EAP-IG ``src/eap/graph.py``) cuts the same residual-stream graph as we do. Its nodes are
``input``, ``a{l}.h{h}``, ``m{l}`` and ``logits``; an edge into a head names the head's input as a suffix:
``a0.h1->a1.h0<q>`` is our ``L0H1->L1H0.q``, ``input->m0`` our ``embed->MLP0``, ``m1->logits`` our
``MLP1->logits``. GPT-2 small has 158 nodes and 32,491 edges in both. EAP-IG graphs always have MLPs (an
attention-only model's file gets unscored MLP edges and ``cfg['attn_only']``, a key EAP-IG ignores).

The input differs. Our ``embed`` is ``blocks.0.hook_resid_pre``, token plus position embedding.
EAP-IG's ``input`` writes ``hook_embed``, the token embedding alone (``InputNode``); the position
embedding is in no edge. Clean and corrupt prompts of one length share it, so patching ``input->X``
equals patching ``embed->X``; under mean or zero ablation EAP-IG leaves the position embedding alone
and we do not. ``logits`` is ``blocks.{L-1}.hook_resid_post`` in both.

What survives. The files hold every edge's ``score`` and ``in_graph`` flag: reading one gives the
circuit (its ``in_graph`` edges) and the full score table, and writing those back gives the same file
(keys, order and ``json.dump`` layout; ``.pt`` scores are float32 tensors, as EAP-IG keeps them). Node
``in_graph`` flags are derived from the edges, as EAP-IG's ``prune`` leaves them; node scores and neuron
masks are not read (a circuit whose nodes keep only some neurons is refused). Our provenance (task,
metric, ``normalized`` ...) has no place there; name the model and task when reading. A circuit written
without its score table gives edges outside it score 0.0. Scores are copied unchanged: ours, and MIB's
(attributed with ``loss=True`` metrics), are positive when an edge helps the clean answer.
"""

import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch

from pathpatch.discovery.graph import ComputeGraph
from pathpatch.files import MAX_INPUT_BYTES, read_text_limited, write_atomic, write_text_atomic
from pathpatch.graphs.circuit import Circuit
from pathpatch.names import CHANNELS, Edge, Node
from pathpatch.positions import is_positional

# EAP-IG JSON spends ~75 bytes an edge, so Llama-3.1-8B files (1.6M edges) pass MAX_INPUT_BYTES; allow them.
EAP_JSON_MAX_BYTES = 2**30
EAP_PT_KEYS = ("cfg", "src_nodes", "dst_nodes", "edges_scores", "edges_in_graph", "nodes_in_graph")


class Imported(NamedTuple):
    """A circuit read from another tool, and its score table when the file scores every edge."""

    circuit: Circuit
    scores: pd.DataFrame | None


def eap_name(node: Node) -> str:
    """Return EAP-IG's name for a node; a head input is the head's name with the suffix edges carry.

    Examples:
        >>> g = ComputeGraph(1, 1, True)
        >>> [eap_name(g.node(n)) for n in ("embed", "L0H0.v", "logits")]
        ['input', 'a0.h0<v>', 'logits']
    """
    if node.kind in ("embed", "logits"):
        return "input" if node.kind == "embed" else "logits"
    if node.kind == "mlp":
        return f"m{node.layer}"
    return f"a{node.layer}.h{node.head}" + (f"<{node.channel}>" if node.channel else "")


def eap_edge_name(edge: Edge) -> str:
    """Return EAP-IG's name for an edge, e.g. ``a0.h1->a1.h0<q>``."""
    return f"{eap_name(edge.src)}->{eap_name(edge.dest)}"


def _with_mlps(graph: ComputeGraph) -> ComputeGraph:
    """EAP-IG's graph of this shape: it always has MLPs."""
    return ComputeGraph(graph.n_layers, graph.n_heads, False, graph.parallel)


def eap_edges(graph: ComputeGraph) -> list[Edge]:
    """Return every edge of EAP-IG's ``Graph.from_model`` for this shape, in its insertion order.

    Examples:
        >>> [eap_edge_name(e) for e in eap_edges(ComputeGraph(1, 1, True))]
        ['input->a0.h0<q>', 'input->a0.h0<k>', 'input->a0.h0<v>', 'input->m0', 'a0.h0->m0', 'input->logits', 'a0.h0->logits', 'm0->logits']
    """
    full = _with_mlps(graph)
    stream, edges = [full.sources[0]], []
    for layer in range(full.n_layers):
        heads = [n for n in full.sources if n.kind == "head" and n.layer == layer]
        inputs = [d for d in full.dests if d.kind == "head_input" and d.layer == layer]
        mlp = next(n for n in full.sources if n.kind == "mlp" and n.layer == layer)
        for src in stream:
            edges += [Edge(src, d) for d in inputs] + ([Edge(src, mlp)] if full.parallel else [])
        stream += heads
        edges += [] if full.parallel else [Edge(src, mlp) for src in stream]
        stream.append(mlp)
    return edges + [Edge(src, full.dests[-1]) for src in stream]


def _eap_dests(graph: ComputeGraph) -> list[str]:
    """EAP-IG's ``get_dst_nodes``: per layer all heads' q inputs, then k, then v, then the MLP; logits last."""
    order = lambda d: (d.layer, d.kind == "mlp", CHANNELS.index(d.channel) if d.channel else 0, d.head or 0)
    dests = _with_mlps(graph).dests
    return [eap_name(d) for d in sorted(dests[:-1], key=order)] + ["logits"]


def kept_scores(circuit: Circuit | None) -> dict[tuple[str, str], float]:
    """The circuit's scored edges as ``{(src, dest): score}``."""
    if circuit is None:
        return {}
    if circuit.layout is not None:
        raise ValueError("This circuit is position-aware (edges such as 'L0H0->L1H0.v@END'); EAP-IG, Edge Pruning and auto-circuit "
                         "files hold one edge over all positions. Discover with --granularity component to convert.")
    return {(u, v): float(d.get("score", 0.0)) for u, v, d in circuit.graph.edges(data=True) if d.get("kind") == "edge"}


def _score_map(scores: pd.DataFrame | None, graph: ComputeGraph) -> dict[tuple[str, str], float]:
    """A score table as ``{(src, dest): score}``; raise ValueError for per-position rows or unknown edges."""
    if scores is None:
        return {}
    if is_positional(scores):
        raise ValueError("The score table has per-position rows (by_pos=True); other tools' files hold one score per edge.")
    by_name = {e.name: e for e in graph.edges}
    edges = [by_name.get(name) or graph.edge(name) for name in scores["edge"]]  # graph.edge raises for names it lacks
    return {(e.src.name, e.dest.name): float(s) for e, s in zip(edges, scores["score"], strict=True)}


def _eap_graph(source: "Circuit | pd.DataFrame", scores: pd.DataFrame | None, graph: ComputeGraph | None,
               d_model: int | None) -> tuple[dict, dict[Node, bool], list[tuple[Edge, float, bool]]]:
    """Return EAP-IG's ``cfg``, node flags and ``(edge, score, in_graph)`` rows for a circuit and/or scores."""
    circuit = source if isinstance(source, Circuit) else None
    scores = source if isinstance(source, pd.DataFrame) else scores
    graph = circuit.compute_graph if circuit is not None else graph
    if graph is None:
        raise ValueError("A score table does not record its model's shape; pass compute_graph=ComputeGraph(n_layers, n_heads, attn_only).")
    d_model = d_model if d_model is not None else (circuit.graph.graph.get("d_model") if circuit is not None else None)
    if d_model is None:
        raise ValueError("EAP-IG's Graph.from_json needs cfg['d_model'], which this circuit does not record; pass d_model (768 for gpt2).")
    kept, values = kept_scores(circuit), {**kept_scores(circuit), **_score_map(scores, graph)}
    rows = [(e, values.get((e.src.name, e.dest.name), 0.0), (e.src.name, e.dest.name) in kept) for e in eap_edges(graph)]
    has_out, has_in = {e.src.name for e, _, k in rows if k}, {e.dest.owner for e, _, k in rows if k} | {"embed"}
    nodes = {n: n.name in has_out and n.name in has_in for n in _with_mlps(graph).sources}
    cfg = {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "parallel_attn_mlp": graph.parallel, "d_model": int(d_model)}
    return {**cfg, **({"attn_only": True} if graph.attn_only else {})}, {**nodes, graph.dests[-1]: True}, rows


def to_eap_json(source: "Circuit | pd.DataFrame", path: "str | Path", *, scores: pd.DataFrame | None = None,
                compute_graph: ComputeGraph | None = None, d_model: int | None = None) -> Path:
    """Write a circuit and/or a score table as EAP-IG's ``Graph.to_json`` does (MIB's ``importances.json``).

    Args:
        source: A circuit (its edges are ``in_graph``) or a score table (nothing ``in_graph``, as EAP-IG's
            ``attribute`` leaves a graph; MIB ranks the scores itself).
        path: File to write.
        scores: Every edge's score, for a circuit; without it, edges outside the circuit score 0.0.
        compute_graph: The model's shape, needed when ``source`` is a score table.
        d_model: Written as ``cfg['d_model']`` (EAP-IG needs it); defaults to the circuit's ``d_model`` attribute.

    Returns:
        The path written.

    Raises:
        ValueError: Shape or ``d_model`` unknown, per-position scores, or an edge the model lacks.
    """
    cfg, nodes, rows = _eap_graph(source, scores, compute_graph, d_model)
    data = {"cfg": cfg, "nodes": {eap_name(n): {"in_graph": flag} for n, flag in nodes.items()},
            "edges": {eap_edge_name(e): {"score": s, "in_graph": k} for e, s, k in rows}}
    return write_text_atomic(Path(path), json.dumps(data))


def to_eap_pt(source: "Circuit | pd.DataFrame", path: "str | Path", *, scores: pd.DataFrame | None = None,
              compute_graph: ComputeGraph | None = None, d_model: int | None = None) -> Path:
    """Write a circuit and/or score table as EAP-IG's ``Graph.to_pt`` does; arguments as for ``to_eap_json``.

    The file is a dict: ``cfg``; ``src_nodes`` (forward order, no ``logits``); ``dst_nodes``
    (``get_dst_nodes`` order); ``edges_scores`` and ``edges_in_graph``, float32 and bool
    ``[src_nodes dst_nodes]`` tensors (0 and False where no edge exists); ``nodes_in_graph``, ``[src_nodes]``.
    """
    cfg, nodes, rows = _eap_graph(source, scores, compute_graph, d_model)
    srcs, dests = [eap_name(n) for n in nodes][:-1], _eap_dests(ComputeGraph(cfg["n_layers"], cfg["n_heads"], False, cfg["parallel_attn_mlp"]))
    values = torch.zeros(len(srcs), len(dests))  # [src dest]
    in_graph = torch.zeros(len(srcs), len(dests), dtype=torch.bool)  # [src dest]
    row, col = {n: i for i, n in enumerate(srcs)}, {n: j for j, n in enumerate(dests)}
    for edge, score, kept in rows:
        i, j = row[eap_name(edge.src)], col[eap_name(edge.dest)]
        values[i, j], in_graph[i, j] = score, kept
    flags = torch.tensor(list(nodes.values())[:-1], dtype=torch.bool)  # [src]
    data = {"cfg": cfg, "src_nodes": srcs, "dst_nodes": dests, "edges_scores": values, "edges_in_graph": in_graph, "nodes_in_graph": flags}
    return write_atomic(Path(path), lambda tmp: torch.save(data, tmp))


def _eap_shape(path: Path, cfg: object, attn_only: bool | None) -> ComputeGraph:
    """The model shape an EAP-IG ``cfg`` describes; raise ValueError naming the file if it cannot tell."""
    try:
        attn_only = bool(cfg.get("attn_only", False)) if attn_only is None else attn_only  # type: ignore[union-attr]
        return ComputeGraph(int(cfg["n_layers"]), int(cfg["n_heads"]), attn_only, bool(cfg.get("parallel_attn_mlp", False)))  # type: ignore[index, union-attr]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: cfg {cfg!r} lacks n_layers or n_heads ({err}); EAP-IG files carry them, as Graph.to_json writes.") from err


def _imported(path: Path, graph: ComputeGraph, d_model: object, entries: dict[str, tuple[float, bool]],
              names: tuple[str, str, str]) -> Imported:
    """Build the circuit and score table from EAP-IG ``{edge name: (score, in_graph)}``."""
    known = {eap_edge_name(e) for e in eap_edges(graph)}
    unknown = [name for name in entries if name not in known]
    if unknown:
        raise ValueError(f"{path}: edge {unknown[0]!r} is not in EAP-IG's graph of a {graph.n_layers}-layer, {graph.n_heads}-head "
                         "model (its cfg); edges look like 'input->a0.h0<q>', 'a0.h1->m1', 'm1->logits'.")
    edges = graph.edges
    ours = {eap_edge_name(e) for e in edges}
    lost = [name for name, (score, kept) in entries.items() if name not in ours and (kept or score != 0.0)]
    if lost:
        raise ValueError(f"{path}: edge {lost[0]!r} is scored or kept, but an attention-only model has no MLPs; read with attn_only=False.")
    model_name, task_name, method = names
    values = [entries.get(eap_edge_name(e), (0.0, False)) for e in edges]
    table = pd.DataFrame({"edge": [e.name for e in edges], "src": [e.src.name for e in edges],
                          "dest": [e.dest.name for e in edges], "channel": [e.dest.channel or "" for e in edges],
                          "pos": -1, "score": [float(s) for s, _ in values], "method": method})
    kept = table[[bool(k) for _, k in values]]
    info = {} if d_model is None else {"d_model": int(d_model)}  # type: ignore[call-overload]
    return Imported(Circuit.from_edges(kept, graph, model_name, task_name, info), table)


def from_eap_json(path: "str | Path", *, attn_only: bool | None = None, model_name: str = "unknown",
                  task_name: str = "unknown", method: str = "unknown") -> Imported:
    """Read a circuit and its score table from EAP-IG's ``Graph.to_json`` file (MIB's circuit files).

    Args:
        path: The file.
        attn_only: Drop EAP-IG's (unscored) MLP nodes; defaults to the file's ``cfg['attn_only']`` or False.
        model_name, task_name, method: Provenance the file does not hold.

    Returns:
        The circuit (the ``in_graph`` edges) and every edge's score.

    Raises:
        ValueError: The file is not EAP-IG JSON, names an edge its shape lacks, or keeps only some neurons.
    """
    path = Path(path)
    data = read_json(path, EAP_JSON_MAX_BYTES)
    if not isinstance(data, dict) or not {"cfg", "nodes", "edges"} <= set(data):
        raise ValueError(f"{path} is not an EAP-IG graph: it needs keys 'cfg', 'nodes', 'edges', as Graph.to_json writes.")
    partial = [name for name, node in data["nodes"].items() if node.get("in_graph") and not all(node.get("neurons", [True]))]
    if partial:
        raise ValueError(f"{path}: node {partial[0]!r} keeps only some neurons; neuron-level circuits have no pathpatch form.")
    try:
        entries = {name: (float(e["score"]), bool(e["in_graph"])) for name, e in data["edges"].items()}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: every edge needs 'score' and 'in_graph' ({err!r}), as Graph.to_json writes.") from err
    graph = _eap_shape(path, data["cfg"], attn_only)
    return _imported(path, graph, data["cfg"].get("d_model"), entries, (model_name, task_name, method))


def from_eap_pt(path: "str | Path", *, attn_only: bool | None = None, model_name: str = "unknown",
                task_name: str = "unknown", method: str = "unknown") -> Imported:
    """Read EAP-IG's ``Graph.to_pt`` file (loaded with ``weights_only=True``); arguments as for ``from_eap_json``."""
    path = Path(path)
    data = torch.load(path, weights_only=True, map_location="cpu")
    missing = [k for k in EAP_PT_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"{path} is not an EAP-IG graph: it lacks {missing}, which Graph.to_pt writes.")
    scores, in_graph = data["edges_scores"], data["edges_in_graph"]  # [src dest] each
    if scores.shape != (len(data["src_nodes"]), len(data["dst_nodes"])) or in_graph.shape != scores.shape:
        raise ValueError(f"{path}: edges_scores is {tuple(scores.shape)}, edges_in_graph {tuple(in_graph.shape)}; both must be "
                         f"[src_nodes dst_nodes] = ({len(data['src_nodes'])}, {len(data['dst_nodes'])}).")
    neurons = data.get("neurons_in_graph")
    if neurons is not None and not neurons[data["nodes_in_graph"].bool()].bool().all():
        raise ValueError(f"{path}: some nodes keep only some neurons; neuron-level circuits have no pathpatch form.")
    graph = _eap_shape(path, data["cfg"], attn_only)
    rows, cols = {n: i for i, n in enumerate(data["src_nodes"])}, {n: j for j, n in enumerate(data["dst_nodes"])}
    missing = sorted({eap_name(e.src) for e in eap_edges(graph)} - set(rows) | {eap_name(e.dest) for e in eap_edges(graph)} - set(cols))
    if missing:
        raise ValueError(f"{path}: src_nodes/dst_nodes lack {missing[:3]}, which EAP-IG's graph of its cfg has; the file is damaged.")
    values, flags = scores.tolist(), in_graph.tolist()
    entries = {eap_edge_name(e): (float(values[rows[eap_name(e.src)]][cols[eap_name(e.dest)]]),
                                  bool(flags[rows[eap_name(e.src)]][cols[eap_name(e.dest)]])) for e in eap_edges(graph)}
    return _imported(path, graph, data["cfg"].get("d_model"), entries, (model_name, task_name, method))


def read_json(path: Path, limit: int = MAX_INPUT_BYTES) -> object:
    """Parse a JSON file of at most ``limit`` bytes; raise FileNotFoundError or ValueError naming it."""
    if not path.exists():
        raise FileNotFoundError(f"No circuit file at {path}.")
    try:
        return json.loads(read_text_limited(path, "circuit", limit))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}).") from err
    except RecursionError:
        raise ValueError(f"{path} nests JSON deeper than it can be read; circuit files are flat.") from None
