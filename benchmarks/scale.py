"""Arithmetic for docs/scale.md: edges, variants, memory and FLOPs of exact patching on large models.

Run ``python -m benchmarks.scale`` to print the tables; nothing is downloaded or allocated (shapes only).
"""

from dataclasses import dataclass

from pathpatch.patch.graph import ComputeGraph


@dataclass(frozen=True)
class Shape:
    """The config fields the arithmetic needs."""

    name: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    parallel: bool = False
    gated: bool = False

    @property
    def layer_params(self) -> int:
        attn = self.d_model * self.d_head * (2 * self.n_heads + 2 * self.n_kv_heads)
        return attn + (3 if self.gated else 2) * self.d_model * self.d_mlp

    @property
    def params(self) -> int:
        return self.n_layers * self.layer_params + 2 * self.d_vocab * self.d_model


SHAPES = (
    Shape("GPT-2 small", 12, 12, 12, 768, 64, 3072, 50257),
    Shape("Pythia-1B", 16, 8, 8, 2048, 256, 8192, 50304, parallel=True),
    Shape("Llama-3.1-8B", 32, 32, 8, 4096, 128, 14336, 128256, gated=True),
)


def grouped_edges(shape: Shape) -> int:
    """Edges when k/v inputs belong to key/value groups (one .k and one .v per group)."""
    graph = ComputeGraph(shape.n_layers, shape.n_heads, False, shape.parallel)
    per_group = shape.n_heads // shape.n_kv_heads
    keep = [d for d in graph.dests if d.kind != "head_input" or d.channel == "q" or d.head % per_group == 0]
    index = [graph.dest_index(d) for d in keep]
    return int(graph.valid[:, index].sum())


def bytes_per_variant(shape: Shape, batch: int, n_pos: int) -> int:
    """schedule.chunk_size's estimate, with shared head inputs (no per-head copies), float32."""
    per_layer = n_pos * (4 * shape.d_model + shape.n_heads * (n_pos + 4 * shape.d_head) + 4 * shape.d_mlp + 8 * shape.d_model)
    return 4 * batch * per_layer * 3


def rows(batch: int = 8, n_pos: int = 16) -> list[dict]:
    out = []
    for s in SHAPES:
        graph = ComputeGraph(s.n_layers, s.n_heads, False, s.parallel)
        sources = len(graph.sources)  # embed, every head, every MLP
        # each edge variant runs from its destination's layer: on average about half the layers
        layers_run = sum(min(e.dest.layer, s.n_layers - 1) for e in graph.edges) / graph.n_edges
        flops = graph.n_edges * batch * n_pos * 2 * s.layer_params * (s.n_layers - layers_run)
        out.append({
            "model": s.name, "params (B)": s.params / 1e9, "nodes (EAP-IG)": 1 + s.n_layers * (s.n_heads + 1) + 1,
            "edges (per-head k/v)": graph.n_edges, "edges (grouped k/v)": grouped_edges(s),
            "MB per variant": bytes_per_variant(s, batch, n_pos) / 2**20,
            "cached outputs GB": 2 * sources * batch * n_pos * s.d_model * 4 / 2**30,
            "edge-patching PFLOP": flops / 1e15,
        })
    return out


if __name__ == "__main__":
    import pandas as pd

    print(pd.DataFrame(rows()).to_markdown(index=False, floatfmt=".3g"))
