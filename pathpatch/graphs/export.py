"""Export a circuit: Graphviz diagrams (``.dot`` always, SVG/PNG with the ``dot`` binary) and CSV tables.

The diagram is ranked by layer, ``embed`` at the bottom and ``logits`` at the top; each layer's heads,
inputs and MLP share a rank. Scored edges are coloured by sign (blue helps the clean answer, red
hurts), their width grows with ``|score|``, and q/k/v inputs are labelled by their node names. Every
name and label passes through ``text`` (Graphviz quoting, never HTML), so hostile names stay text. When
Graphviz's ``dot`` is missing the ``.dot`` file is still written and the message says how to install it.
"""

import logging
import shutil
from pathlib import Path

import graphviz

from pathpatch.files import write_atomic, write_text_atomic
from pathpatch.graphs.circuit import Circuit

log = logging.getLogger(__name__)
HIGHLIGHT = "#d95f02"  # failed hypothesis paths
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
    dot = graphviz.Digraph("circuit", graph_attr={"rankdir": "BT", "label": text(title)})
    scores = [abs(s) for _, _, s in circuit.graph.edges(data="score") if s is not None]
    top = max(scores, default=1.0) or 1.0
    ranks: dict[int, list[str]] = {}
    for node, attrs in circuit.graph.nodes(data=True):
        ranks.setdefault(int(attrs.get("stage", 0)), []).append(node)
    for rank in sorted(ranks):
        with dot.subgraph(name=f"rank{rank}", graph_attr={"rank": "same"}) as sub:
            for node in sorted(ranks[rank]):
                kind = circuit.graph.nodes[node].get("kind")
                shape = {"embed": "invhouse", "logits": "house", "mlp": "box", "head_input": "ellipse"}.get(kind, "box")
                style = "rounded,filled" if kind == "head" else "filled"
                sub.node(text(node), shape=shape, style=style, fillcolor="#eef3fb" if kind != "head_input" else "white",
                         fontsize="10" if kind == "head_input" else "12")
    for src, dest, attrs in circuit.graph.edges(data=True):
        if attrs.get("kind") == "internal":
            dot.edge(text(src), text(dest), style="dashed", arrowhead="none", color="gray50")
            continue
        score = float(attrs.get("score", 0.0))
        name = f"{src}->{dest}"
        color = HIGHLIGHT if name in highlight else ("#2166ac" if score >= 0 else "#b2182b")
        width = 0.5 + 4.5 * abs(score) / top
        dot.edge(text(src), text(dest), color=color, penwidth=f"{width:.2f}", tooltip=text(f"{name}: {score:.4g}"))
    present = {f"{u}->{v}" for u, v in circuit.graph.edges()}
    for name in sorted(highlight - present):
        edge = circuit.compute_graph.edge(name)
        dot.edge(text(edge.src.name), text(edge.dest.name), color=HIGHLIGHT, style="dashed", penwidth="2", tooltip=text(f"{name}: missing"))
    return dot


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
        raise ValueError(f"Unsupported diagram format {fmt!r}; use a .svg, .png, .pdf or .dot file name.")
    dot = to_dot(circuit, highlight)
    dot_path = write_text_atomic(path.with_suffix(".dot"), dot.source)
    if fmt == "dot":
        return dot_path, f"wrote {dot_path}"
    if shutil.which("dot") is None:
        return dot_path, f"wrote {dot_path}; Graphviz 'dot' not found, so no {fmt.upper()}: {INSTALL_HINT}"
    rendered = graphviz.Source(dot.source).pipe(format=fmt)
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(rendered))
    return path, f"wrote {dot_path} and {path}"
