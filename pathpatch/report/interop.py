"""Convert circuits between pathpatch and other tools: EAP-IG/MIB, Edge Pruning, auto-circuit.

All cut the same residual-stream graph, so a conversion renames nodes and lays the edges out as the
other tool does. Names, ours -> EAP-IG/MIB (``eap_graph``) -> Edge Pruning -> auto-circuit:

- ``embed`` -> ``input`` -> ``tok_embeds`` + ``pos_embeds`` (GPT-2), ``embeds`` (Llama) -> ``Resid Start``
- ``L1H0`` -> ``a1.h0`` -> ``a1.h0`` -> ``A1.0``; its input ``L1H0.q`` -> ``a1.h0<q>`` -> ``a1.h0.q`` -> ``A1.0.Q``
- ``MLP1`` -> ``m1`` -> ``m1`` -> ``MLP 1``; ``logits`` -> ``logits`` -> ``resid_post`` -> ``Resid End``

Our ``embed`` and auto-circuit's ``Resid Start`` are both ``blocks.0.hook_resid_pre``. Edge Pruning's
GPT-2 (``modeling_fpt2.py``) splits the input into token and position embeddings: ``embed->X`` is written
as both, and either reads back as ``embed->X``. Edge Pruning's ``edges.json`` and auto-circuit's edge
names are edge sets only (auto-circuit saves no circuit files; we use a JSON list of its ``Edge.name``
strings), so they keep the circuit's edges and lose the scores: kept edges read back with score 1.0.
For EAP-IG files, what survives is said in ``eap_graph``. ``convert`` reads any of these and writes any.
"""

import json
import math
from pathlib import Path
from typing import Literal, get_args

import pandas as pd

from pathpatch.circuit.circuit import MAX_HEADS, Circuit, from_json
from pathpatch.errors import InputError
from pathpatch.files import write_atomic, write_text_atomic
from pathpatch.names import CHANNELS, Node
from pathpatch.patch.graph import ComputeGraph
from pathpatch.report.eap_graph import (EAP_JSON_MAX_BYTES, Imported,  # noqa: F401  (re-exported: one import for every format)
                                        eap_edge_name, eap_edges, eap_name, from_eap_json, from_eap_pt, kept_scores, read_json, to_eap_json,
                                        to_eap_pt)

Format = Literal["pathpatch", "scores", "eap-json", "eap-pt", "edge-pruning", "auto-circuit"]
Family = Literal["fpt2", "fllama"]
FORMATS: tuple[str, ...] = get_args(Format)
EP_EMBEDS: dict[str, tuple[str, ...]] = {"fpt2": ("tok_embeds", "pos_embeds"), "fllama": ("embeds",)}


def edge_pruning_name(node: Node) -> str:
    """Return Edge Pruning's name for a head, head input, MLP or ``logits`` (``writer_idx_to_name``/``reader_idx_to_name``).

    Examples:
        >>> g = ComputeGraph(2, 1, False)
        >>> [edge_pruning_name(g.node(n)) for n in ("L0H0", "L1H0.q", "logits")]
        ['a0.h0', 'a1.h0.q', 'resid_post']
    """
    if node.kind == "embed":
        raise InputError("Edge Pruning names the input by model family; see EP_EMBEDS.")
    if node.kind in ("logits", "mlp"):
        return "resid_post" if node.kind == "logits" else f"m{node.layer}"
    return f"a{node.layer}.h{node.head}" + (f".{node.channel}" if node.channel else "")


def to_edge_pruning(circuit: Circuit, path: "str | Path", *, family: Family = "fpt2") -> Path:
    """Write a circuit as Edge Pruning's ``edges.json``: ``[writer, reader]`` pairs, in ``get_edges`` order.

    Args:
        circuit: The circuit.
        path: File to write (``json.dump(edges, f, indent=4)``, as ``vis_fpt2.py`` does).
        family: ``fpt2`` (GPT-2: ``embed`` is written as ``tok_embeds`` and ``pos_embeds``) or ``fllama`` (``embeds``).

    Returns:
        The path written.
    """
    graph, kept = circuit.compute_graph, set(kept_scores(circuit))
    writers = [(alias, n.name) for n in graph.sources for alias in (EP_EMBEDS[family] if n.kind == "embed" else (edge_pruning_name(n),))]
    pairs = []
    for layer in range(graph.n_layers):
        inputs = sorted((d for d in graph.dests if d.kind == "head_input" and d.layer == layer), key=lambda d: (CHANNELS.index(d.channel), d.head))
        mlps = [d for d in graph.dests if d.kind == "mlp" and d.layer == layer]
        for readers in (inputs, mlps):
            pairs += [[alias, edge_pruning_name(d)] for alias, src in writers for d in readers if (src, d.name) in kept]
    pairs += [[alias, "resid_post"] for alias, src in writers if (src, "logits") in kept]
    return write_text_atomic(Path(path), json.dumps(pairs, indent=4))


def from_edge_pruning(path: "str | Path", n_layers: int, n_heads: int, *, attn_only: bool = False,
                      with_embedding_nodes: bool | None = None, model_name: str = "unknown", task_name: str = "unknown") -> Circuit:
    """Read Edge Pruning's ``edges.json`` (kept edges get score 1.0; Edge Pruning keeps no scores).

    Args:
        path: The file.
        n_layers, n_heads, attn_only: The model's shape, which the file does not hold.
        with_embedding_nodes: Whether the model was pruned with embedding nodes (``-w``). Without them the
            embeddings feed every reader, so ``embed`` gets an edge into each input of every kept component
            and into ``logits``. Default: whether any ``tok_embeds``/``pos_embeds``/``embeds`` pair appears.
        model_name, task_name: Provenance the file does not hold.

    Raises:
        ValueError: Not a list of ``[writer, reader]`` pairs, or a name this shape lacks.
    """
    path = Path(path)
    pairs = read_json(path)
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs):
        raise InputError(f"{path} is not Edge Pruning's edges.json: expected a list of [writer, reader] name pairs.")
    graph = ComputeGraph(n_layers, n_heads, attn_only)
    embeds = {alias for aliases in EP_EMBEDS.values() for alias in aliases}
    writers = {**{edge_pruning_name(n): n for n in graph.sources[1:]}, **{alias: graph.sources[0] for alias in embeds}}
    readers = {edge_pruning_name(d): d for d in graph.dests}
    bad = [p for p in pairs if p[0] not in writers or p[1] not in readers]
    if bad:
        raise InputError(f"{path}: pair {bad[0]} names a node a {n_layers}-layer, {n_heads}-head model{' without MLPs' if attn_only else ''} "
                         "lacks; writers look like 'tok_embeds', 'a0.h1', 'm0', readers like 'a1.h0.q', 'm1', 'resid_post'.")
    kept = {(writers[w].name, readers[r].name) for w, r in pairs}
    if not (any(w in embeds for w, _ in pairs) if with_embedding_nodes is None else with_embedding_nodes):
        owners = {src for src, _ in kept} | {"logits"}
        kept |= {("embed", d.name) for d in graph.dests if d.owner in owners}
    return _circuit_of(graph, kept, "edge-pruning", model_name, task_name, path)


def _circuit_of(graph: ComputeGraph, kept: set[tuple[str, str]], method: str, model_name: str, task_name: str, path: Path) -> Circuit:
    """A circuit of the given ``(src, dest)`` edges, score 1.0 each, in table order."""
    edges = {(e.src.name, e.dest.name): e for e in graph.edges}
    impossible = sorted(kept - set(edges))
    if impossible:
        raise InputError(f"{path}: {impossible[0][0]} -> {impossible[0][1]} is no edge of this model: an edge runs from an output to a later input.")
    chosen = [e for key, e in edges.items() if key in kept]
    rows = pd.DataFrame({"edge": [e.name for e in chosen], "src": [e.src.name for e in chosen], "dest": [e.dest.name for e in chosen],
                         "score": 1.0, "method": method})
    return Circuit.from_edges(rows, graph, model_name, task_name)


def autocircuit_name(node: Node) -> str:
    """Return auto-circuit's name for a node (``factorized_src_nodes``/``factorized_dest_nodes``, separate q/k/v).

    Examples:
        >>> g = ComputeGraph(2, 2, False)
        >>> [autocircuit_name(g.node(n)) for n in ("embed", "L0H1", "L1H0.v", "MLP0", "logits")]
        ['Resid Start', 'A0.1', 'A1.0.V', 'MLP 0', 'Resid End']
    """
    if node.kind in ("embed", "logits"):
        return "Resid Start" if node.kind == "embed" else "Resid End"
    if node.kind == "mlp":
        return f"MLP {node.layer}"
    return f"A{node.layer}.{node.head}" + (f".{node.channel.upper()}" if node.channel else "")


def to_autocircuit_names(circuit: Circuit) -> list[str]:
    """Return the circuit's edges as auto-circuit ``Edge.name`` strings (``A0.1->A1.0.V``), in table order."""
    kept = kept_scores(circuit)
    return [f"{autocircuit_name(e.src)}->{autocircuit_name(e.dest)}" for e in circuit.compute_graph.edges if (e.src.name, e.dest.name) in kept]


def from_autocircuit_names(names: list[str], compute_graph: ComputeGraph) -> list[str]:
    """Return our edge names for auto-circuit edge names; a combined head input (``A1.0``, ``separate_qkv=False``) gives q, k and v.

    Raises:
        ValueError: A name this shape lacks.
    """
    lookup: dict[str, list[str]] = {}
    for e in compute_graph.edges:
        lookup.setdefault(f"{autocircuit_name(e.src)}->{autocircuit_name(e.dest)}", []).append(e.name)
        if e.dest.kind == "head_input":
            lookup.setdefault(f"{autocircuit_name(e.src)}->{autocircuit_name(compute_graph.node(e.dest.owner))}", []).append(e.name)
    unknown = [n for n in names if n not in lookup]
    if unknown:
        raise InputError(f"auto-circuit edge {unknown[0]!r} is not in a {compute_graph.n_layers}-layer, {compute_graph.n_heads}-head "
                         "model; edges look like 'Resid Start->A0.1.Q', 'A0.1->MLP 1', 'MLP 1->Resid End'.")
    return [ours for n in names for ours in lookup[n]]


def to_autocircuit_json(circuit: Circuit, path: "str | Path") -> Path:
    """Write the circuit as a JSON list of auto-circuit edge names (auto-circuit itself saves no circuit files)."""
    return write_text_atomic(Path(path), json.dumps(to_autocircuit_names(circuit), indent=2))


def from_autocircuit_json(path: "str | Path", n_layers: int, n_heads: int, *, attn_only: bool = False, parallel: bool = False,
                          model_name: str = "unknown", task_name: str = "unknown") -> Circuit:
    """Read a JSON list of auto-circuit edge names as a circuit (score 1.0 each)."""
    path = Path(path)
    names = read_json(path)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{path} is not a list of auto-circuit edge names such as 'A0.1->A1.0.V'.")
    graph = ComputeGraph(n_layers, n_heads, attn_only, parallel)
    try:
        ours = from_autocircuit_names(names, graph)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from err
    return _circuit_of(graph, {(e.src.name, e.dest.name) for e in map(graph.edge, ours)}, "auto-circuit", model_name, task_name, path)


def guess_format(path: Path) -> Format:
    """Return the format of an existing file from its suffix and content (what ``convert`` reads).

    Raises:
        ValueError: Neither tells; the message names the file and the choices.
    """
    if path.suffix in (".pt", ".csv"):
        return "eap-pt" if path.suffix == ".pt" else "scores"
    what = f"suffix {path.suffix!r}"
    if path.suffix == ".json":
        data = read_json(path, EAP_JSON_MAX_BYTES)
        if isinstance(data, dict) and ("cfg" in data or {"nodes", "edges", "graph"} <= set(data)):
            return "eap-json" if "cfg" in data else "pathpatch"
        if isinstance(data, list) and data and all(isinstance(p, list) for p in data):
            return "edge-pruning"
        if isinstance(data, list) and data and all(isinstance(p, str) for p in data):
            return "auto-circuit"
        what = "an empty list" if data == [] else "JSON of no known layout"
    raise InputError(f"Cannot tell the format of {path} ({what}); name it with src_format (--from), one of {', '.join(FORMATS)}.")


def _dest_format(dest: Path, src_format: str) -> Format:
    """The format to write: by suffix, by the peers' default file names, else ours when importing."""
    named = {".pt": "eap-pt", ".csv": "scores", "edges.json": "edge-pruning", "importances.json": "eap-json", "circuit.json": "pathpatch"}
    fmt = named.get(dest.suffix) or named.get(dest.name) or ("pathpatch" if dest.suffix == ".json" and src_format not in ("pathpatch", "scores") else None)
    if fmt is None:
        raise InputError(f"Cannot tell which format to write {dest} in (from {src_format}); name it with dest_format (--to), one of {', '.join(FORMATS)}.")
    return fmt  # type: ignore[return-value]


def convert(src: "str | Path", dest: "str | Path", *, src_format: Format | None = None, dest_format: Format | None = None,
            n_layers: int | None = None, n_heads: int | None = None, attn_only: bool | None = None, parallel: bool = False,
            d_model: int | None = None) -> Path:
    """Convert a circuit or score file between pathpatch, EAP-IG/MIB, Edge Pruning and auto-circuit formats.

    Args:
        src: File to read: ``circuit.json`` (``pathpatch``), ``scores.csv`` (``scores``), EAP-IG ``.json``/``.pt``,
            Edge Pruning ``edges.json`` or a JSON list of auto-circuit edge names.
        dest: File to write.
        src_format, dest_format: One of ``FORMATS``; by default guessed from suffix and content (``guess_format``),
            and for ``dest`` from its suffix or the peers' default names (``edges.json``, ``importances.json``).
        n_layers, n_heads, attn_only, parallel: The model's shape, for formats that do not record it
            (``scores``, ``edge-pruning``, ``auto-circuit``).
        d_model: For EAP-IG output, when the source does not record it.

    Returns:
        The path written.

    Raises:
        ValueError: A format cannot be told, the shape is missing, or the source lacks what ``dest`` stores
            (a circuit, or every edge's score).
    """
    src, dest = Path(src), Path(dest)
    if not src.exists():
        raise FileNotFoundError(f"No file at {src} to convert.")
    for name, value in (("src_format", src_format), ("dest_format", dest_format)):
        if value is not None and value not in FORMATS:
            raise InputError(f"{name}={value!r}; choose one of {', '.join(FORMATS)}.")
    _check_shape(n_layers, n_heads)
    src_format = src_format or guess_format(src)
    dest_format = dest_format or _dest_format(dest, src_format)
    circuit, scores, graph = _read(src, src_format, n_layers, n_heads, attn_only, parallel)
    if circuit is not None and circuit.layout is not None and dest_format != "pathpatch":
        kept_scores(circuit)  # raises: the peers' formats hold edges over all positions only
    if dest_format in ("eap-json", "eap-pt"):
        write = to_eap_json if dest_format == "eap-json" else to_eap_pt
        return write(circuit if circuit is not None else scores, dest, scores=scores if circuit is not None else None,  # type: ignore[arg-type]
                     compute_graph=graph, d_model=d_model)
    if dest_format == "scores":
        if scores is None:
            raise InputError(f"{src} ({src_format}) holds a circuit, not every edge's score; write it as pathpatch, eap-json or eap-pt.")
        return write_atomic(dest, lambda tmp: scores.to_csv(tmp, index=False))
    if circuit is None or not circuit.scored_edges:
        raise InputError(f"{src} ({src_format}) holds scores but no circuit edges; write them as scores or eap-json, or prune them first.")
    if dest_format == "pathpatch":
        return circuit.to_json(dest)
    return to_edge_pruning(circuit, dest) if dest_format == "edge-pruning" else to_autocircuit_json(circuit, dest)


def _check_shape(n_layers: int | None, n_heads: int | None) -> None:
    """Refuse a model shape that is not a positive integer (given as one), or larger than circuits may be."""
    for name, value in (("n_layers", n_layers), ("n_heads", n_heads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HEADS):
            raise InputError(f"{name}={value!r} (--{name.replace('_', '-')}); give the model's {name}, an integer from 1 to {MAX_HEADS}.")
    if n_layers is not None and n_heads is not None and n_layers * n_heads > MAX_HEADS:
        raise InputError(f"n_layers={n_layers} x n_heads={n_heads} is more than the {MAX_HEADS} heads circuits may have; check --n-layers and --n-heads.")


def _read_scores(src: Path, graph: ComputeGraph) -> pd.DataFrame:
    """Read a score table (``scores.csv``), refusing unreadable files, edges ``graph`` lacks, edges scored twice and
    scores that are not finite numbers."""
    try:
        scores = pd.read_csv(src, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{src} is not a readable CSV score table ({str(err).strip()[:200]}); write it as scores.csv is written.") from None
    if not {"edge", "score"} <= set(scores.columns):
        raise InputError(f"{src} has columns {list(map(str, scores.columns))[:10]}; a score table needs 'edge' and 'score', as scores.csv has.")
    numbers = pd.to_numeric(scores["score"], errors="coerce")
    bad = [i for i, value in enumerate(numbers) if not math.isfinite(value)]
    if bad:
        raise InputError(f"{src}:{bad[0] + 2}: score {str(scores['score'].iloc[bad[0]])[:60]!r} of edge {str(scores['edge'].iloc[bad[0]])[:60]!r} "
                         "is not a finite number; every row needs one (NaN and inf are refused).")
    known = {e.name for e in graph.edges}
    for line, name in enumerate(scores["edge"].astype(str), start=2):
        if name not in known:
            try:
                graph.edge(name)  # a per-position edge ('L0H0->L1H0.v@3') is known this way; others raise, naming the problem
            except ValueError as err:
                raise InputError(f"{src}:{line}: {err}") from None
    repeated = scores["edge"].astype(str).duplicated()
    if repeated.any():
        line = int(repeated.to_numpy().argmax())
        name = str(scores["edge"].iloc[line])
        first = int(scores["edge"].astype(str).eq(name).to_numpy().argmax())
        raise InputError(f"{src}:{line + 2}: edge {name[:60]!r} is scored again (first on line {first + 2}); "
                         "keep one row per edge, as scores.csv has.")
    return scores.assign(edge=scores["edge"].astype(str), score=numbers.astype(float))


def _read(src: Path, fmt: str, n_layers: int | None, n_heads: int | None, attn_only: bool | None,
          parallel: bool) -> tuple[Circuit | None, pd.DataFrame | None, ComputeGraph]:
    """Read ``src`` as ``fmt``: its circuit, its score table (each or both), and the model shape."""
    if fmt in ("pathpatch", "eap-json", "eap-pt"):
        circuit, scores = (from_json(src), None) if fmt == "pathpatch" else (from_eap_json if fmt == "eap-json" else from_eap_pt)(src, attn_only=attn_only)
        graph = circuit.compute_graph
        if (n_layers, n_heads) != (None, None) and (n_layers, n_heads) != (graph.n_layers, graph.n_heads):
            raise InputError(f"{src} is a {graph.n_layers}-layer, {graph.n_heads}-head graph, not {n_layers} x {n_heads}; drop the shape arguments.")
        return circuit, scores, graph
    if n_layers is None or n_heads is None:
        raise InputError(f"{src} ({fmt}) does not record the model's shape; give n_layers and n_heads (and attn_only, parallel).")
    graph = ComputeGraph(n_layers, n_heads, bool(attn_only), parallel)
    if fmt == "scores":
        return None, _read_scores(src, graph), graph
    if fmt == "edge-pruning":
        return from_edge_pruning(src, n_layers, n_heads, attn_only=bool(attn_only)), None, graph
    return from_autocircuit_json(src, n_layers, n_heads, attn_only=bool(attn_only), parallel=parallel), None, graph
