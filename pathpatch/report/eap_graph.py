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
(attributed with ``loss=True`` metrics), are positive when an edge helps the clean answer. Nothing is
coerced on reading: scores must be finite numbers, flags JSON booleans and shapes integers, and ``.pt``
files are loaded with ``weights_only=True``, so a file that would run code is refused, never run.
"""

import json
import math
import numbers
import pickle
import re
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch

from pathpatch.circuit.circuit import MAX_HEADS, Circuit
from pathpatch.errors import InputError
from pathpatch.files import MAX_INPUT_BYTES, check_size, read_text_limited, write_atomic, write_text_atomic
from pathpatch.names import CHANNELS, Edge, Node
from pathpatch.patch.graph import ComputeGraph
from pathpatch.task.positions import is_positional

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
        raise InputError("This circuit is position-aware (edges such as 'L0H0->L1H0.v@END'); EAP-IG, Edge Pruning and auto-circuit "
                         "files hold one edge over all positions. Discover with --granularity component to convert.")
    return {(u, v): float(d.get("score", 0.0)) for u, v, d in circuit.graph.edges(data=True) if d.get("kind") == "edge"}


def _score_map(scores: pd.DataFrame | None, graph: ComputeGraph) -> dict[tuple[str, str], float]:
    """A score table as ``{(src, dest): score}``; raise ValueError for per-position rows or unknown edges."""
    if scores is None:
        return {}
    if is_positional(scores):
        raise InputError("The score table has per-position rows (by_pos=True); other tools' files hold one score per edge.")
    by_name = {e.name: e for e in graph.edges}
    edges = [by_name.get(name) or graph.edge(name) for name in scores["edge"]]  # graph.edge raises for names it lacks
    bad = [(e, s) for e, s in zip(edges, scores["score"], strict=True) if not _is_number(s)]
    if bad:
        raise InputError(f"The score table gives edge {bad[0][0].name!r} the score {_shown(bad[0][1])}; give every edge a number.")
    return {(e.src.name, e.dest.name): float(s) for e, s in zip(edges, scores["score"], strict=True)}


def _eap_graph(source: "Circuit | pd.DataFrame", scores: pd.DataFrame | None, graph: ComputeGraph | None,
               d_model: int | None) -> tuple[dict, dict[Node, bool], list[tuple[Edge, float, bool]]]:
    """Return EAP-IG's ``cfg``, node flags and ``(edge, score, in_graph)`` rows for a circuit and/or scores."""
    circuit = source if isinstance(source, Circuit) else None
    scores = source if isinstance(source, pd.DataFrame) else scores
    graph = circuit.compute_graph if circuit is not None else graph
    if graph is None:
        raise InputError("A score table does not record its model's shape; pass compute_graph=ComputeGraph(n_layers, n_heads, attn_only).")
    d_model = d_model if d_model is not None else (circuit.graph.graph.get("d_model") if circuit is not None else None)
    if d_model is None:
        raise InputError("EAP-IG's Graph.from_json needs cfg['d_model'], which this circuit does not record; pass d_model (768 for gpt2).")
    if not _is_count(d_model):
        raise InputError(f"d_model={_shown(d_model)}; give the model's d_model, a positive integer (768 for gpt2).")
    kept, values = kept_scores(circuit), {**kept_scores(circuit), **_score_map(scores, graph)}
    bad = [(src, dest, value) for (src, dest), value in values.items() if not math.isfinite(value)]
    if bad:
        raise InputError(f"Edge '{bad[0][0]}->{bad[0][1]}' has score {_shown(bad[0][2])}; EAP-IG files hold finite scores only "
                         "(strict JSON has no NaN): drop or re-score that edge.")
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
    return write_text_atomic(Path(path), json.dumps(data, allow_nan=False))  # strict JSON: scores are checked finite


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
    """The model shape an EAP-IG ``cfg`` describes; refuse shapes and flags of the wrong JSON type, naming them."""
    fix = "EAP-IG's Graph.to_json and to_pt write them as JSON integers and true/false"
    if not isinstance(cfg, dict):
        raise InputError(f"{path}: 'cfg' is {_shown(cfg)}, not an object with n_layers, n_heads and d_model; {fix}.")
    for key in ("n_layers", "n_heads", "d_model"):
        if key not in cfg and key != "d_model":
            raise InputError(f"{path}: cfg lacks {key!r}; {fix}.")
        if key in cfg and not (_is_count(cfg[key]) and (key == "d_model" or cfg[key] <= MAX_HEADS)):
            raise InputError(f"{path}: cfg {key!r} is {_shown(cfg[key])}; it must be a positive integer (no quotes, no "
                             f"decimals{'' if key == 'd_model' else f', at most {MAX_HEADS}'}); {fix}.")
    if cfg["n_layers"] * cfg["n_heads"] > MAX_HEADS:
        raise InputError(f"{path}: cfg records {cfg['n_layers']} layers x {cfg['n_heads']} heads; graphs of more than {MAX_HEADS} heads are not supported.")
    for key in ("attn_only", "parallel_attn_mlp"):
        if not isinstance(cfg.get(key, False), bool):
            raise InputError(f"{path}: cfg {key!r} is {_shown(cfg[key])}; it must be true or false; {fix}.")
    attn_only = cfg.get("attn_only", False) if attn_only is None else attn_only
    return ComputeGraph(cfg["n_layers"], cfg["n_heads"], attn_only, cfg.get("parallel_attn_mlp", False))


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    """A positive integer given as one (not a bool, float or string)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _shown(value: object) -> str:
    """A value as JSON writes it, cut to 60 characters."""
    try:
        text = json.dumps(value, default=repr)
    except ValueError:  # an integer of thousands of digits
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _imported(path: Path, graph: ComputeGraph, d_model: object, entries: dict[str, tuple[float, bool]],
              names: tuple[str, str, str]) -> Imported:
    """Build the circuit and score table from EAP-IG ``{edge name: (score, in_graph)}``."""
    known = {eap_edge_name(e) for e in eap_edges(graph)}
    unknown = [name for name in entries if name not in known]
    if unknown:
        raise InputError(f"{path}: edge {unknown[0]!r} is not in EAP-IG's graph of a {graph.n_layers}-layer, {graph.n_heads}-head "
                         "model (its cfg); edges look like 'input->a0.h0<q>', 'a0.h1->m1', 'm1->logits'.")
    edges = graph.edges
    ours = {eap_edge_name(e) for e in edges}
    lost = [name for name, (score, kept) in entries.items() if name not in ours and (kept or score != 0.0)]
    if lost:
        raise InputError(f"{path}: edge {lost[0]!r} is scored or kept, but an attention-only model has no MLPs; read with attn_only=False.")
    model_name, task_name, method = names
    values = [entries.get(eap_edge_name(e), (0.0, False)) for e in edges]
    table = pd.DataFrame({"edge": [e.name for e in edges], "src": [e.src.name for e in edges],
                          "dest": [e.dest.name for e in edges], "channel": [e.dest.channel or "" for e in edges],
                          "pos": -1, "score": [float(s) for s, _ in values], "method": method})
    kept = table[[bool(k) for _, k in values]]
    info = {} if d_model is None else {"d_model": int(d_model)}  # type: ignore[call-overload]  # checked by _eap_shape
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
        raise InputError(f"{path} is not an EAP-IG graph: it needs keys 'cfg', 'nodes', 'edges', as Graph.to_json writes.")
    graph = _eap_shape(path, data["cfg"], attn_only)
    entries = _json_entries(path, data["nodes"], data["edges"])
    return _imported(path, graph, data["cfg"].get("d_model"), entries, (model_name, task_name, method))


def _json_entries(path: Path, nodes: object, edges: object) -> dict[str, tuple[float, bool]]:
    """EAP-IG JSON's edges as ``{name: (score, in_graph)}``: finite numbers and JSON booleans, nothing coerced."""
    for key, table in (("nodes", nodes), ("edges", edges)):
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            raise InputError(f"{path}: {key!r} is {_kind_of(table)}; EAP-IG files map each {key[:-1]} name to an object "
                             f"such as {{\"in_graph\": true}}, as Graph.to_json writes.")
    for name, node in nodes.items():  # type: ignore[union-attr]
        flag, neurons = node.get("in_graph", False), node.get("neurons")
        if not isinstance(flag, bool) or not (neurons is None or isinstance(neurons, list) and all(isinstance(n, bool) for n in neurons)):
            raise InputError(f"{path}: node {_shown(name)} has in_graph {_shown(flag)} and neurons {_shown(neurons)}; in_graph must be "
                             "true or false and neurons a list of true/false, as Graph.to_json writes.")
        if flag and neurons is not None and not all(neurons):
            raise InputError(f"{path}: node {_shown(name)} keeps only some neurons; neuron-level circuits have no pathpatch form.")
    entries = {}
    for name, edge in edges.items():  # type: ignore[union-attr]
        score, kept = edge.get("score"), edge.get("in_graph")
        if not _is_number(score) or not math.isfinite(score):
            raise InputError(f"{path}: edge {_shown(name)} has score {_shown(score)}; every edge needs a finite number "
                             "(NaN and Infinity are refused): re-run the attribution or drop the edge.")
        if not isinstance(kept, bool):
            raise InputError(f"{path}: edge {_shown(name)} has in_graph {_shown(kept)}; it must be a JSON boolean, true or false "
                             "(not a string or number), as Graph.to_json writes.")
        entries[name] = (float(score), kept)
    return entries


def _kind_of(value: object) -> str:
    """A JSON value's kind for a message: ``a list``, ``an object holding a list``."""
    if isinstance(value, dict):
        inner = next((v for v in value.values() if not isinstance(v, dict)), None)
        return f"an object holding {_kind_of(inner)}"
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def from_eap_pt(path: "str | Path", *, attn_only: bool | None = None, model_name: str = "unknown",
                task_name: str = "unknown", method: str = "unknown") -> Imported:
    """Read EAP-IG's ``Graph.to_pt`` file (loaded with ``weights_only=True``); arguments as for ``from_eap_json``."""
    path = Path(path)
    data = _load_pt(path)
    missing = [k for k in EAP_PT_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise InputError(f"{path} is not an EAP-IG graph: it lacks {missing}, which Graph.to_pt writes.")
    graph = _eap_shape(path, data["cfg"], attn_only)
    _check_pt(path, data)
    scores, in_graph = data["edges_scores"], data["edges_in_graph"]  # [src dest] each
    neurons = data.get("neurons_in_graph")
    if neurons is not None and not neurons[data["nodes_in_graph"]].all():
        raise InputError(f"{path}: some nodes keep only some neurons; neuron-level circuits have no pathpatch form.")
    rows, cols = {n: i for i, n in enumerate(data["src_nodes"])}, {n: j for j, n in enumerate(data["dst_nodes"])}
    missing = sorted({eap_name(e.src) for e in eap_edges(graph)} - set(rows) | {eap_name(e.dest) for e in eap_edges(graph)} - set(cols))
    if missing:
        raise InputError(f"{path}: src_nodes/dst_nodes lack {missing[:3]}, which EAP-IG's graph of its cfg has; the file is damaged.")
    values, flags = scores.tolist(), in_graph.tolist()
    entries = {}
    for edge in eap_edges(graph):
        i, j = rows[eap_name(edge.src)], cols[eap_name(edge.dest)]
        if not math.isfinite(values[i][j]):
            raise InputError(f"{path}: edge {eap_edge_name(edge)!r} has score {values[i][j]}; every edge needs a finite score: "
                             "re-run the attribution or zero that edge.")
        entries[eap_edge_name(edge)] = (float(values[i][j]), bool(flags[i][j]))
    return _imported(path, graph, data["cfg"].get("d_model"), entries, (model_name, task_name, method))


def _check_pt(path: Path, data: dict) -> None:
    """Refuse ``Graph.to_pt`` entries of the wrong kind: name lists, float scores and bool flags of matching shapes."""
    names = {key: data[key] for key in ("src_nodes", "dst_nodes")}
    for key, value in names.items():
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise InputError(f"{path}: {key} is {_kind_of(value)}; Graph.to_pt writes a list of node names.")
    shape = (len(names["src_nodes"]), len(names["dst_nodes"]))
    wanted = {"edges_scores": ("float", shape), "edges_in_graph": ("bool", shape), "nodes_in_graph": ("bool", shape[:1])}
    if data.get("neurons_in_graph") is not None:
        wanted["neurons_in_graph"] = ("bool", shape[:1])
    for key, (kind, dims) in wanted.items():
        value = data[key]
        fits = torch.is_tensor(value) and (value.is_floating_point() if kind == "float" else value.dtype == torch.bool)
        if not fits or tuple(value.shape[:len(dims)]) != dims or value.dim() != len(dims) + (key == "neurons_in_graph"):
            got = f"a {value.dtype} tensor of shape {tuple(value.shape)}" if torch.is_tensor(value) else _kind_of(value)
            raise InputError(f"{path}: {key} is {got}; Graph.to_pt writes a {kind} tensor of shape "
                             f"{dims + (('d_model',) if key == 'neurons_in_graph' else ())} ([src_nodes dst_nodes] = {shape}).")


def _load_pt(path: Path) -> object:
    """Load a torch file with ``weights_only=True``, which never runs code; refuse pickled code and damaged files, naming them."""
    check_size(path, "circuit", EAP_JSON_MAX_BYTES)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL (\S+)", str(err))
        if named:  # the pickle asks to import and call something
            raise InputError(f"{path} refused: the file would run code when loaded (pickle, {named.group(1)!r}); save plain "
                             "tensors/safetensors, as EAP-IG's Graph.to_pt does.") from None
        reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
        raise InputError(f"{path} is not a torch file ({reason.group(1)[:200] if reason else 'unreadable pickle'}); it is damaged, "
                         "truncated or not written by torch.save: write it again with EAP-IG's Graph.to_pt.") from None
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError) as err:
        text = str(err).strip().split(". ")[0][:200] if isinstance(err, (RuntimeError, ValueError)) else ""
        reason = text or "neither a torch zip archive nor a pickle"
        raise InputError(f"{path} is not a readable torch file ({reason}); it is damaged, truncated or not written by torch.save: "
                         "write it again with EAP-IG's Graph.to_pt.") from None


def read_json(path: Path, limit: int = MAX_INPUT_BYTES) -> object:
    """Parse a JSON file of at most ``limit`` bytes; raise FileNotFoundError or ValueError naming it."""
    if not path.exists():
        raise FileNotFoundError(f"No circuit file at {path}.")
    text = read_text_limited(path, "circuit", limit).removeprefix("\ufeff")  # a BOM, as Windows editors write one
    try:
        return json.loads(text)
    except ValueError as err:  # JSONDecodeError, or an integer of more than 4300 digits
        raise InputError(f"{path} is not valid JSON ({str(err)[:200]}).") from None
    except RecursionError:
        raise InputError(f"{path} nests JSON deeper than it can be read; circuit files are flat.") from None
