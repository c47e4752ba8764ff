"""Node, edge and hook names: the one place that builds and parses them.

A transformer's residual stream is a sum of the outputs written so far, so it decomposes into a
graph. Outputs (graph sources) are ``embed`` (token plus positional embedding, read at
``blocks.0.hook_resid_pre``), each head ``L{l}H{h}`` (``blocks.{l}.attn.hook_result[:, :, h]``) and each
``MLP{l}`` (``blocks.{l}.hook_mlp_out``). Inputs (graph destinations) are each head's query, key and
value input ``L{l}H{h}.q|.k|.v`` (``blocks.{l}.hook_q_input[:, :, h]`` ...), each ``MLP{l}``
(``blocks.{l}.hook_mlp_in``) and ``logits`` (``blocks.{L-1}.hook_resid_post``). An edge ``src->dest``
joins an output to every later input; ``@POS`` suffixes a node or edge with a position: an index
(``L0H0@5``) or a task's position label (``L1H0.v@END``, see ``pathpatch.task.positions``).

Every hook string is built here with TransformerLens' ``get_act_name``; no other module parses names.
"""

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from pathpatch.errors import InputError

NodeKind = Literal["embed", "head", "head_input", "mlp", "logits"]
Channel = Literal["q", "k", "v"]
CHANNELS: tuple[Channel, ...] = ("q", "k", "v")

_NODE = re.compile(r"^(?:(embed|logits)|L(\d+)H(\d+)(?:\.([qkv]))?|MLP(\d+))(?:@([A-Za-z0-9_]{1,64}))?$")


def hook_name(act: str, layer: int) -> str:
    """Return TransformerLens' hook name for activation ``act`` (``result``, ``q_input``, ...) at ``layer``.

    TransformerLens is imported here, on first use, so that reading and drawing saved circuits does
    not wait seconds for it.
    """
    from transformer_lens.utilities import get_act_name

    return get_act_name(act, layer)


@dataclass(frozen=True)
class Node:
    """One node of the computational graph.

    Attributes:
        name: The node's name, e.g. ``embed``, ``L0H1``, ``L1H0.v``, ``MLP2``, ``logits``, ``L0H1@5``.
        layer: Its layer; ``embed`` is -1 and ``logits`` is ``n_layers``.
        head: Head index for heads and head inputs, else None.
        kind: ``embed``, ``head`` (output), ``head_input`` (q/k/v), ``mlp`` or ``logits``.
        hook_in: Hook where the node reads the residual stream (None for outputs only).
        hook_out: Hook where the node writes to the residual stream (None for inputs only).
        channel: ``q``, ``k`` or ``v`` for head inputs, else None.
        pos: Position (an index or a task's label, as text) for position-aware nodes, else None.
    """

    name: str
    layer: int
    head: int | None
    kind: NodeKind
    hook_in: str | None
    hook_out: str | None
    channel: Channel | None = None
    pos: str | None = None

    @property
    def stage(self) -> int:
        """Order in the forward pass: embed 0, attention of layer l 2l+1, MLP l 2l+2, logits last."""
        if self.kind == "embed":
            return 0
        if self.kind in ("head", "head_input"):
            return 2 * self.layer + 1
        return 2 * self.layer + 2 if self.kind == "mlp" else 2 * self.layer + 1

    @property
    def is_source(self) -> bool:
        """Whether the node writes to the residual stream (can start an edge)."""
        return self.kind in ("embed", "head", "mlp")

    @property
    def is_dest(self) -> bool:
        """Whether the node reads the residual stream (can end an edge)."""
        return self.kind in ("head_input", "mlp", "logits")

    @property
    def base(self) -> str:
        """The name without a position: ``L1H0.v@3`` -> ``L1H0.v``."""
        return node_name(self.kind, self.layer, self.head, self.channel)

    @property
    def owner(self) -> str:
        """The component name without channel or position: ``L1H0.v@3`` -> ``L1H0``."""
        return node_name(self.kind if self.kind != "head_input" else "head", self.layer, self.head)


@dataclass(frozen=True)
class Edge:
    """A residual-stream edge from one node's output to a later node's input.

    Attributes:
        src: The writing node (``embed``, a head or an MLP).
        dest: The reading node (a head's q/k/v input, an MLP or ``logits``).
    """

    src: Node
    dest: Node

    def __post_init__(self) -> None:
        if not is_edge(self.src, self.dest):
            raise InputError(
                f"No edge {self.src.name}->{self.dest.name}: an edge runs from an output (embed, a head, an "
                "MLP) to a later input (a head's .q/.k/.v, a later MLP, logits)."
            )

    @property
    def name(self) -> str:
        """``src->dest``, e.g. ``L0H0->L1H0.v``."""
        return f"{self.src.name}->{self.dest.name}"


def reads_at(node: Node, parallel: bool = False) -> int:
    """The stage at which ``node`` reads the residual stream: its own, but in a parallel block (``parallel_attn_mlp``,
    Pythia/GPT-J) an MLP reads its layer's input alongside the heads, at their stage."""
    return 2 * node.layer + 1 if parallel and node.kind == "mlp" else node.stage


def is_edge(src: Node, dest: Node, parallel: bool = False) -> bool:
    """The one edge rule: an edge runs from a node that writes the residual stream (``embed``, a head, an MLP) to one
    that reads it later (a head's q/k/v input, a later MLP, ``logits``); in parallel blocks no head feeds its own
    layer's MLP.

    Examples:
        >>> mlp, head = parse_node("MLP0", 1, 1), parse_node("L0H0", 1, 1)
        >>> is_edge(head, mlp), is_edge(head, mlp, parallel=True), is_edge(mlp, head)
        (True, False, False)
    """
    return src.is_source and dest.is_dest and src.stage < reads_at(dest, parallel)


def split_pos(name: str) -> tuple[str, str | None]:
    """Split a position-aware edge or node name into its position-free name and its position.

    Examples:
        >>> split_pos("L0H0->L1H0.v@END"), split_pos("embed->L0H0.q")
        (('L0H0->L1H0.v', 'END'), ('embed->L0H0.q', None))
    """
    base, at, pos = name.partition("@")
    if at and not pos:
        raise InputError(f"{name!r} ends in '@' without a position; name one (e.g. '{base}@END') or drop the '@'.")
    return base, (pos or None)


def edge_at(name: str, pos: "str | int | None") -> str:
    """Name an edge (or node) at a position: ``edge_at("L0H0->L1H0.v", "END") == "L0H0->L1H0.v@END"``."""
    return name if pos is None else f"{name}@{pos}"


def node_name(
    kind: NodeKind, layer: int | None = None, head: int | None = None, channel: Channel | None = None, pos: "str | int | None" = None
) -> str:
    """Return the canonical name of a node, e.g. ``node_name("head_input", 1, 0, "v") == "L1H0.v"``."""
    if kind in ("embed", "logits"):
        base = kind
    elif kind == "mlp":
        base = f"MLP{layer}"
    elif kind == "head":
        base = f"L{layer}H{head}"
    else:
        base = f"L{layer}H{head}.{channel}"
    return base if pos is None else f"{base}@{pos}"


def parse_node(name: str, n_layers: int, n_heads: int, attn_only: bool = False, hooks: bool = True) -> Node:
    """Return the Node called ``name`` in a model of the given shape; with ``hooks=False`` without its hook names
    (``hook_in``, ``hook_out`` None), which reading a circuit file needs no TransformerLens import for.

    Raises:
        KeyError: The name is malformed or names a node the model lacks (close matches are listed).

    Examples:
        >>> parse_node("L1H0.v", n_layers=2, n_heads=1).hook_in
        'blocks.1.hook_v_input'
    """
    match = _NODE.match(name.strip())
    if match is None:
        raise InputError(_unknown(name, n_layers, n_heads, attn_only, "is not a node name"))
    special, layer, head, channel, mlp_layer, pos = match.groups()
    hook = hook_name if hooks else (lambda act, layer: None)
    if special == "embed":
        return Node(name, -1, None, "embed", None, hook("resid_pre", 0), pos=pos)
    if special == "logits":
        return Node(name, n_layers, None, "logits", hook("resid_post", n_layers - 1), None, pos=pos)
    if mlp_layer is not None:
        layer = int(mlp_layer)
        if attn_only or layer >= n_layers:
            raise InputError(_unknown(name, n_layers, n_heads, attn_only, "is not in this model"))
        return Node(name, layer, None, "mlp", hook("mlp_in", layer), hook("mlp_out", layer), pos=pos)
    layer, head = int(layer), int(head)
    if layer >= n_layers or head >= n_heads:
        raise InputError(_unknown(name, n_layers, n_heads, attn_only, "is not in this model"))
    if channel is None:
        return Node(name, layer, head, "head", None, hook("result", layer), pos=pos)
    return Node(name, layer, head, "head_input", hook(f"{channel}_input", layer), None, channel, pos)


def parse_edge(name: str, n_layers: int, n_heads: int, attn_only: bool = False) -> Edge:
    """Return the Edge called ``src->dest``; raise KeyError or ValueError naming what is wrong."""
    parts = name.split("->")
    if len(parts) != 2:
        raise InputError(f"Edge name {name!r} must look like 'SRC->DEST', e.g. 'L0H0->L1H0.v'.")
    src, dest = (parse_node(part, n_layers, n_heads, attn_only) for part in parts)
    return Edge(src, dest)


def component_name(name: str) -> str:
    """Return the component a node name belongs to, without channel or position.

    Examples:
        >>> component_name("L1H0.v@3"), component_name("MLP0"), component_name("logits")
        ('L1H0', 'MLP0', 'logits')
    """
    match = _NODE.match(name.strip())
    if match is None:
        raise InputError(f"{name!r} is not a node name; nodes look like 'embed', 'L0H1', 'L1H0.v', 'MLP2', 'logits'.")
    special, layer, head, _, mlp_layer, _ = match.groups()
    if special:
        return special
    return f"MLP{mlp_layer}" if mlp_layer is not None else f"L{layer}H{head}"


def all_node_names(n_layers: int, n_heads: int, attn_only: bool = False) -> list[str]:
    """Return every node name of a model, in forward order (inputs before outputs in a layer)."""
    names = ["embed"]
    for layer in range(n_layers):
        names += [node_name("head_input", layer, h, c) for h in range(n_heads) for c in CHANNELS]
        names += [node_name("head", layer, h) for h in range(n_heads)]
        if not attn_only:
            names.append(node_name("mlp", layer))
    return names + ["logits"]


def _unknown(name: str, n_layers: int, n_heads: int, attn_only: bool, why: str) -> str:
    """Return the message for an unknown node: what the model has, and close matches."""
    close = difflib.get_close_matches(name, all_node_names(n_layers, n_heads, attn_only), n=3, cutoff=0.6)
    mlps = "no MLPs" if attn_only else f"MLPs are 'MLP0'..'MLP{n_layers - 1}'"
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"Unknown node {name!r} ({why}) for a {n_layers}-layer, {n_heads}-head model; heads are "
        f"L0H0..L{n_layers - 1}H{n_heads - 1} (inputs .q/.k/.v), {mlps}, plus 'embed' and 'logits'.{hint}"
    )
