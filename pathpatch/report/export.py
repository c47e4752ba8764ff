"""Export a circuit: Graphviz diagrams (``.dot`` always, SVG/PNG with the ``dot`` binary) and CSV tables.

The diagram is ranked by layer, ``embed`` at the bottom and ``logits`` at the top; each layer's heads,
inputs and MLP share a rank. A position-aware circuit is drawn on a grid instead: one column per
position it uses (headed by the position's label and token), one row per layer, nodes pinned in place
(Graphviz's ``neato`` layout, chosen inside the ``.dot`` file), so information moving between positions
inside a head reads as a slanted dashed line. Scored edges are coloured by sign (blue helps the clean answer, red
hurts), their width grows with ``|score|``; connectors (edges below the threshold, kept only to join a
stronger edge to ``embed`` and ``logits``) are dashed grey, as the title's legend line and their tooltips
say; q/k/v inputs are labelled by their node names. Every name and label passes through ``text``
(Graphviz quoting, never HTML), so hostile names stay text. When Graphviz's ``dot`` is missing the
``.dot`` file is still written and the message says how to install it.
"""

import logging
import shutil
from pathlib import Path

import graphviz

from pathpatch.circuit.circuit import Circuit
from pathpatch.errors import InputError
from pathpatch.files import write_atomic, write_text_atomic

log = logging.getLogger(__name__)
HIGHLIGHT = "#d95f02"  # failed hypothesis paths
CONNECTOR = "#8c8c8c"  # edges kept only to join stronger ones to embed and logits
CONNECTOR_NOTE = "connector: below the threshold, kept to join a stronger edge to embed and logits"
INSTALL_HINT = "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)"


def to_dot(circuit: Circuit, highlight: set[str] | None = None) -> graphviz.Digraph:
    """Return the circuit as a Graphviz digraph; edges named in ``highlight`` are drawn orange (dashed if missing).

    Examples:
        >>> import networkx as nx
        >>> g = nx.DiGraph(); g.add_node("embed", kind="embed", stage=0); g.add_node("logits", kind="logits", stage=3)
        >>> g.add_edge("embed", "logits", score=1.0, kind="edge")
        >>> "embed -> logits" in to_dot(Circuit(g, "m", "t", "exact")).source
        True
    """
    highlight = highlight or set()
    title = f"{circuit.model_name} / {circuit.task_name} ({circuit.method})"
    if any(connector for _, _, connector in circuit.graph.edges(data="connector")):
        title += "\ndashed grey: connectors (below the threshold, kept to join stronger edges to embed and logits)"
    if circuit.layout is not None:
        dot = _grid(circuit, title)
    else:
        dot = graphviz.Digraph("circuit", graph_attr={"rankdir": "BT", "label": text(title)})
        ranks: dict[int, list[str]] = {}
        for node, attrs in circuit.graph.nodes(data=True):
            ranks.setdefault(int(attrs.get("stage", 0)), []).append(node)
        for rank in sorted(ranks):
            with dot.subgraph(name=f"rank{rank}", graph_attr={"rank": "same"}) as sub:
                for node in sorted(ranks[rank]):
                    sub.node(text(node), **_node_style(circuit.graph.nodes[node].get("kind")))
    scores = [abs(s) for _, _, s in circuit.graph.edges(data="score") if s is not None]
    top = max(scores, default=1.0) or 1.0
    for src, dest, attrs in circuit.graph.edges(data=True):
        if attrs.get("kind") == "internal":
            moves = "@" in dest and dest.rsplit("@", 1)[1] != src.rsplit("@", 1)[-1]  # between positions, inside a head
            dot.edge(text(src), text(dest), style="dashed", arrowhead="vee" if moves else "none", arrowsize="0.5", color="gray50")
            continue
        score = float(attrs.get("score", 0.0))
        name = f"{src}->{dest}"
        connector = bool(attrs.get("connector"))
        color = HIGHLIGHT if name in highlight else (CONNECTOR if connector else ("#2166ac" if score >= 0 else "#b2182b"))
        width = 0.5 + 4.5 * abs(score) / top
        note = f" ({CONNECTOR_NOTE})" if connector else ""
        dot.edge(text(src), text(dest), color=color, penwidth=f"{width:.2f}", tooltip=text(f"{name}: {score:.4g}{note}"),
                 **({"style": "dashed"} if connector else {}))
    present = {f"{u}->{v}" for u, v in circuit.graph.edges()}
    for name in sorted(highlight - present):
        if "@" in name:  # a missing position-aware hop has no pinned place to be drawn at
            continue
        edge = circuit.compute_graph.edge(name)
        dot.edge(text(edge.src.name), text(edge.dest.name), color=HIGHLIGHT, style="dashed", penwidth="2", tooltip=text(f"{name}: missing"))
    return dot


def _node_style(kind: str | None) -> dict[str, str]:
    """Shape, fill and font of a node by kind."""
    shape = {"embed": "invhouse", "logits": "house", "mlp": "box", "head_input": "ellipse"}.get(kind or "", "box")
    return {"shape": shape, "style": "rounded,filled" if kind == "head" else "filled",
            "fillcolor": "#eef3fb" if kind != "head_input" else "white", "fontsize": "10" if kind == "head_input" else "12"}


COLUMN, ROW, NODE = 1.9, 0.75, 0.95  # grid spacing and the room a node takes, in inches (neato reads pinned positions in inches)


def _grid(circuit: Circuit, title: str) -> graphviz.Digraph:
    """A position-aware circuit's nodes pinned on a grid: a column per position it uses, rows by layer
    (embed at the bottom; per layer q/k/v inputs, heads, MLP; logits on top), headed by label and token."""
    columns = circuit.layout
    assert columns is not None
    graph = circuit.graph
    used = sorted({int(graph.nodes[n]["column"]) for n in graph}, key=int)
    n_layers = int(graph.graph["n_layers"])
    dot = graphviz.Digraph("circuit", graph_attr={"layout": "neato", "splines": "true", "overlap": "true", "label": text(title),
                                                  "outputorder": "edgesfirst"})
    cells: dict[tuple[int, int], list[str]] = {}
    for node, attrs in graph.nodes(data=True):
        cells.setdefault((int(attrs["column"]), _row(attrs)), []).append(node)
    widths = {c: max(COLUMN, max(len(v) for (col, _), v in cells.items() if col == c) * NODE) for c in used}  # a column fits its widest cell
    x_of, x = {}, 0.0
    for c in used:
        x_of[c], x = x + widths[c] / 2, x + widths[c]
    for (column, row), names in sorted(cells.items()):
        names = sorted(names, key=lambda n: (graph.nodes[n].get("head") or 0, n))
        for i, node in enumerate(names):
            x = x_of[column] + (i - (len(names) - 1) / 2) * NODE
            style = _node_style(graph.nodes[node].get("kind"))
            dot.node(text(node), label=text(node.rsplit("@", 1)[0]), pos=f"{x:.2f},{row * ROW:.2f}!", **style)
    top = (3 * n_layers + 2) * ROW
    for column in used:
        label, token = columns.labels[column], columns.tokens[column]
        heading = label if not token or token == label else f"{label}\n{token}"
        dot.node(f"column {column}", label=text(heading).replace("\\n", "\n"), shape="plaintext", pos=f"{x_of[column]:.2f},{top:.2f}!")
    rows = [("embed", 0)] + [(f"layer {l}", 3 * l + 2) for l in range(n_layers)] + [("logits", 3 * n_layers + 1)]
    for name, row in rows:
        dot.node(f"row {name}", label=text(name), shape="plaintext", fontcolor="gray40", pos=f"{-COLUMN * 0.4:.2f},{row * ROW:.2f}!")
    return dot


def _row(attrs: dict) -> int:
    """Grid row of a node: embed 0; layer l's inputs 3l+1, heads 3l+2, MLP 3l+3; logits on top."""
    kind, layer = attrs.get("kind"), int(attrs.get("layer", 0))
    if kind == "embed":
        return 0
    if kind == "logits":
        return 3 * layer + 1
    return 3 * layer + {"head_input": 1, "head": 2, "mlp": 3}[kind]


def text(value: str) -> str:
    r"""Return ``value`` as literal Graphviz text: quoted where needed, backslashes doubled, never read as an
    HTML label (``<...>``), so a model or task name cannot change the diagram's DOT source.

    Examples:
        >>> source = graphviz.Digraph(graph_attr={"label": text('<b>"x"</b>')}).source
        >>> r'label="<b>\"x\"</b>"' in source
        True
    """
    return graphviz.escape(str(value))


def write_diagram(circuit: Circuit, path: "str | Path", highlight: set[str] | None = None) -> tuple[Path, str]:
    """Write ``<path>.dot`` and, when ``dot`` is installed, the format of ``path``'s suffix (svg/png).

    Returns:
        The file written last and a message for the user (which says how to install Graphviz if missing).
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "svg"
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise InputError(f"Unsupported diagram format {fmt!r}; use a .svg, .png, .pdf or .dot file name.")
    dot = to_dot(circuit, highlight)
    dot_path = write_text_atomic(path.with_suffix(".dot"), dot.source)
    if fmt == "dot":
        return dot_path, f"wrote {dot_path}"
    if shutil.which("dot") is None:
        return dot_path, f"wrote {dot_path}; Graphviz 'dot' not found, so no {fmt.upper()}: {INSTALL_HINT}"
    rendered = graphviz.Source(dot.source).pipe(format=fmt)
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(rendered))
    return path, f"wrote {dot_path} and {path}"
