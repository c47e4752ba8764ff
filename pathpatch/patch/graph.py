"""The computational graph of a model: its sources, destinations and edges, and what it supports.

In a pre-LayerNorm transformer every component reads the residual stream, which is the sum of the
outputs written before it (plus constant biases). Swapping one output's contribution in one reader's
input is therefore an exact intervention on one edge. ``ComputeGraph`` lists the writers
(``embed``, heads, MLPs), the readers (each head's q/k/v input, MLPs, ``logits``) and every edge
between a writer and a later reader, in a fixed order that indexes the rows of score tables and
the ``[src dest]`` masks of circuit runs.

``check_supported`` refuses models where the decomposition would be wrong (post-LN, norms after
attention and MLP) and models that carry hooks of their own, which patching cannot honour
(``user_hooks``), naming the feature and the fix. Parallel attention and MLP blocks (Pythia, GPT-J)
get a graph without ``L{l}H{h} -> MLP{l}`` edges: the MLP reads its layer's input beside the heads.
``patching_hooks`` switches on, for the duration of one engine call, the per-head input hooks
(``use_split_qkv_input``) and MLP input hooks (``use_hook_mlp_in``) that patching reads, and restores
the user's settings afterwards, so any TransformerLens model can be passed in as it is; as every engine
run enters it, it is also where a model's own hooks are refused.
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from jaxtyping import Bool
from torch import Tensor

from pathpatch.errors import InputError
from pathpatch.models.hook_flags import hook_flags, patching_flags
from pathpatch.names import Edge, Node, all_node_names, is_edge, parse_edge, parse_node, reads_at, split_pos
from pathpatch.patch.architecture import Architecture
from pathpatch.patch.user_hooks import refuse_user_hooks
from pathpatch.task.positions import Layout


@dataclass(frozen=True)
class ComputeGraph:
    """Writers, readers and edges of one model shape.

    Attributes:
        n_layers: Number of layers.
        n_heads: Heads per layer.
        attn_only: Whether the model has no MLPs.
        parallel: Whether each MLP reads its layer's input alongside the heads (``parallel_attn_mlp``,
            Pythia/GPT-J), so no head of layer ``l`` feeds ``MLP{l}``.
        sources: Writers in forward order: ``embed``, then per layer its heads and its MLP.
        dests: Readers in forward order: per layer its heads' q, k, v inputs and its MLP, then ``logits``.
    """

    n_layers: int
    n_heads: int
    attn_only: bool
    parallel: bool = False
    sources: tuple[Node, ...] = field(init=False)
    dests: tuple[Node, ...] = field(init=False)

    def __post_init__(self) -> None:
        nodes = [self.node(name) for name in all_node_names(self.n_layers, self.n_heads, self.attn_only)]
        object.__setattr__(self, "sources", tuple(n for n in nodes if n.is_source))
        object.__setattr__(self, "dests", tuple(n for n in nodes if n.is_dest))

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> "ComputeGraph":
        """Return the graph of ``model`` after checking that its edges decompose exactly. Every engine call asks for
        it, so the graph of a shape (its nodes, edge mask and edges, all immutable) is built once (``graph_of_shape``)."""
        check_supported(model)
        cfg = model.cfg
        return graph_of_shape(int(cfg.n_layers), int(cfg.n_heads), bool(cfg.attn_only), bool(getattr(cfg, "parallel_attn_mlp", False)))

    def node(self, name: str) -> Node:
        """Return the node called ``name``; raise KeyError listing what this model has."""
        return parse_node(name, self.n_layers, self.n_heads, self.attn_only)

    def edge(self, name: str) -> Edge:
        """Return the edge called ``src->dest``; raise KeyError/ValueError naming the problem."""
        edge = parse_edge(name, self.n_layers, self.n_heads, self.attn_only)
        if not is_edge(edge.src, edge.dest, self.parallel):
            raise InputError(f"No edge {edge.name}: in this parallel-block model {edge.dest.name} reads layer {edge.dest.layer}'s "
                             f"input alongside its heads, so {edge.src.name} cannot reach it.")
        return edge

    @property
    def valid(self) -> Bool[Tensor, "src dest"]:
        """Which (source, destination) pairs are edges: the source writes before the destination reads."""
        return self._valid.clone()

    @functools.cached_property
    def _valid(self) -> Tensor:
        # names.is_edge over every (source, destination) pair at once: sources write and destinations read by construction
        src_stage = torch.tensor([n.stage for n in self.sources])
        dest_stage = torch.tensor([reads_at(n, self.parallel) for n in self.dests])
        return src_stage[:, None] < dest_stage[None, :]

    def valid_at(self, positions: "Layout | None") -> Bool[Tensor, "src dest *pos"]:
        """``valid``, repeated over the labels of ``positions`` for position-aware masks (``[src dest label]``)."""
        valid = self.valid
        return valid if positions is None else valid[..., None].expand(*valid.shape, len(positions.labels))

    @property
    def edges(self) -> list[Edge]:
        """Every edge, ordered by destination then source (the row order of score tables)."""
        return list(self._edges)

    @functools.cached_property
    def _edges(self) -> tuple[Edge, ...]:
        pairs = self._valid.T.nonzero().tolist()  # [edge 2]: destination-major, as the table rows run
        return tuple(Edge(self.sources[i], self.dests[j]) for j, i in pairs)

    @functools.cached_property
    def sources_before(self) -> tuple[int, ...]:
        """How many sources each destination reads: always the first ones, as sources run in stage order."""
        return tuple(self._valid.sum(0).tolist())

    @functools.cached_property
    def dest_hooks(self) -> dict[str, tuple[Node, ...]]:
        """Destinations grouped by the hook where they read the residual stream, in destination order."""
        groups: dict[str, list[Node]] = {}
        for node in self.dests:
            groups.setdefault(node.hook_in, []).append(node)
        return {name: tuple(nodes) for name, nodes in groups.items()}

    @property
    def n_edges(self) -> int:
        """Number of edges."""
        return int(self._valid.sum())

    def src_index(self, node: Node) -> int:
        """Row of a source in ``[src dest]`` masks."""
        return self._index(self.sources, node)

    def dest_index(self, node: Node) -> int:
        """Column of a destination in ``[src dest]`` masks."""
        return self._index(self.dests, node)

    def mask(self, edges: "list[Edge] | list[str]", positions: "Layout | None" = None) -> Bool[Tensor, "src dest *pos"]:
        """Return the ``[src dest]`` mask with True on the given edges; with ``positions``, the
        ``[src dest label]`` mask of position-aware edges (``L0H0->L1H0.v@END``) over its labels."""
        shape = (len(self.sources), len(self.dests)) + (() if positions is None else (len(positions.labels),))
        out = torch.zeros(shape, dtype=torch.bool)
        for edge in edges:
            base, pos = split_pos(edge) if isinstance(edge, str) else (edge.src.name + "->" + edge.dest.base, edge.dest.pos)
            if (pos is None) != (positions is None):
                raise InputError(f"Edge {base if pos is None else base + '@' + pos!r} " + ("has no position, but the mask is position-aware."
                                 if pos is None else "has a position; pass the task's positions (Layout) for a position-aware mask."))
            parsed = self.edge(base)
            where = (self.src_index(parsed.src), self.dest_index(parsed.dest))
            out[where + (() if positions is None else (positions.index(pos),))] = True
        return out

    def edges_of(self, mask: Bool[Tensor, "src dest"]) -> list[Edge]:
        """Return the edges a ``[src dest]`` mask marks True, in table order."""
        keep = mask & self._valid
        return [Edge(self.sources[i], self.dests[j]) for j, i in keep.T.nonzero().tolist()]

    @functools.cached_property
    def _rows(self) -> dict[str, int]:
        return {node.name: i for i, node in enumerate(self.sources)}

    @functools.cached_property
    def _columns(self) -> dict[str, int]:
        return {node.name: j for j, node in enumerate(self.dests)}

    def _index(self, nodes: tuple[Node, ...], node: Node) -> int:
        found = (self._rows if nodes is self.sources else self._columns).get(node.base)
        if found is not None:
            return found
        raise InputError(f"Node {node.name!r} is not a {'source' if nodes and nodes[0].name == 'embed' else 'destination'} of this graph.")


@functools.lru_cache(maxsize=16)
def graph_of_shape(n_layers: int, n_heads: int, attn_only: bool, parallel: bool) -> ComputeGraph:
    """The one ``ComputeGraph`` of a model shape (a 12-layer GPT-2 has 32,491 edges to build and check)."""
    return ComputeGraph(n_layers, n_heads, attn_only, parallel)


def check_supported(model: torch.nn.Module) -> None:
    """Raise ValueError if ``model``'s edges cannot be patched exactly, naming the feature and fix: an
    unsupported architecture, or hooks the model carries (``user_hooks``)."""
    if getattr(model, "cfg", None) is None:
        raise InputError(f"{type(model).__name__} is not a TransformerLens model (it has no .cfg); load it with load_model().")
    reason = Architecture.of(model).refusal()
    if reason:
        raise InputError(reason)
    refuse_user_hooks(model)


@contextmanager
def patching_hooks(model: torch.nn.Module, ungroup: bool = True) -> Iterator[None]:
    """Switch on the hooks patching reads for the duration, then restore the user's settings.

    ``use_split_qkv_input`` gives every head its own q/k/v input; ``use_hook_mlp_in`` (models with MLPs)
    gives MLPs theirs. With ``ungroup``, a grouped-query model also computes every query head's key and
    value from that head's own input (``ungroup_grouped_query_attention``): the same numbers, but an
    edge into ``L1H0.k`` then reaches head 0's keys only, as EAP-IG's ungrouped graph has it. GPT-2's ``gelu_new``
    runs as the fused tanh GELU meanwhile (``_fuse_activations``).

    Raises:
        TypeError: ``model`` is not a TransformerLens model.
        InputError: ``model`` carries hooks of its own (``user_hooks.refuse_user_hooks``).
    """
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(model, "set_use_split_qkv_input"):
        raise InputError(f"{type(model).__name__} is not a TransformerLens model (no .cfg or hook settings); load it with load_model().")
    refuse_user_hooks(model)  # every engine run enters here: hooks present now are the model owner's, not pathpatch's
    swapped = _fuse_activations(model)
    try:
        with hook_flags(model, patching_flags(cfg, ungroup)):
            yield
    finally:
        for mlp, original in swapped:
            mlp.act_fn = original


def _fuse_activations(model: torch.nn.Module) -> list[tuple[torch.nn.Module, Callable]]:
    """Run GPT-2's ``gelu_new`` (and ``gelu_fast``) as torch's fused tanh GELU: the same formula in one kernel instead
    of five elementwise passes (a third of an exact run's time on GPT-2's shape); values agree to float32 rounding
    (about 5e-7). Return the MLPs switched and their own functions, to put back."""
    from transformer_lens.utilities import activation_functions as fns

    fused = {fns.gelu_new: fns.gelu_pytorch_tanh, fns.gelu_fast: fns.gelu_pytorch_tanh}
    swapped = []
    for block in getattr(model, "blocks", []):
        mlp = getattr(block, "mlp", None)
        original = getattr(mlp, "act_fn", None)
        if original in fused:
            mlp.act_fn = fused[original]
            swapped.append((mlp, original))
    return swapped


F = TypeVar("F", bound=Callable)


def with_patching_hooks(fn: F, ungroup: bool = True) -> F:
    """Run an engine entry point ``fn(model, ...)`` inside ``patching_hooks(model, ungroup)``."""

    @functools.wraps(fn)
    def run(model: torch.nn.Module, *args, **kwargs):
        with patching_hooks(model, ungroup):
            return fn(model, *args, **kwargs)

    return run  # type: ignore[return-value]
