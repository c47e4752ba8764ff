"""How patching cost grows with layers, heads, sequence length and batch.

One base model (2 layers, 4 heads, d_model 128, d_mlp 512, vocabulary 1000; batch 8 x seq 16) is
grown along one axis at a time. At each point, in the same run:

- head x position activation patching of ``z``: pathpatch vs TransformerLens' ``patching`` module
  (their speed ratio, same numbers checked);
- exact patching of every edge: seconds, patched variants per second, peak memory, and the cost of
  one patched variant relative to one plain forward pass of the same batch (below 1 means prefix
  reuse and batching make a variant cheaper than a forward).

    python -m benchmarks.scaling [--quick] [--device cuda]
"""

import argparse

import pandas as pd
from transformer_lens import patching

from benchmarks.common import TL_CONVENTION, measure, random_model, random_task, save_figure
from pathpatch.patch.activation import activation_patch
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph

BASE = {"layers": 2, "heads": 4, "seq": 16, "batch": 8}
AXES = {"layers": (1, 2, 4, 8), "heads": (2, 4, 8, 16), "seq": (8, 16, 32, 64), "batch": (2, 8, 32)}
QUICK_AXES = {"layers": (1, 2), "heads": (2, 4), "seq": (4, 8), "batch": (2, 4)}
D_MODEL, D_MLP, D_VOCAB = 128, 512, 1000
NOISE = PatchConfig(direction="noise", normalize=False)


def point(layers: int, heads: int, seq: int, batch: int, device: str, d_model: int = D_MODEL) -> dict:
    """Measure one configuration; return one table row."""
    task = random_task(D_VOCAB, batch, seq, device)
    plain = random_model(layers, heads, d_model, D_MLP, D_VOCAB, device, edge_hooks=False)
    _, cache = plain.run_with_cache(task.clean)
    theirs = measure(lambda: patching.get_act_patch_attn_head_out_by_pos(plain, task.corrupt, cache, task.score), device)
    ours = measure(lambda: activation_patch(plain, task, "z", True, TL_CONVENTION).values, device)
    diff = (theirs.out.cpu() - ours.out).abs().max().item()
    model = random_model(layers, heads, d_model, D_MLP, D_VOCAB, device, edge_hooks=True)
    n_edges = ComputeGraph.from_model(model).n_edges
    edges = measure(lambda: patch_edges(model, task, config=NOISE), device)
    forward = min(measure(lambda: model(task.clean), device).seconds for _ in range(3))
    return {
        "layers": layers, "heads": heads, "seq": seq, "batch": batch, "edges": n_edges,
        "TL head x pos s": theirs.seconds, "head x pos s": ours.seconds, "speed-up vs TL": theirs.seconds / ours.seconds,
        "max diff": diff, "all edges s": edges.seconds, "variants / s": n_edges / edges.seconds,
        "variant / forward": edges.seconds / n_edges / forward, "peak MB": edges.peak_mb,
    }


def run(quick: bool = False, device: str = "cpu") -> pd.DataFrame:
    """Grow the base model along each axis in turn; one row per point, ``axis`` names the one grown."""
    axes = QUICK_AXES if quick else AXES
    base = {"layers": 1, "heads": 2, "seq": 4, "batch": 2} if quick else BASE
    rows = []
    for axis, values in axes.items():
        for value in values:
            settings = {**base, axis: value}
            rows.append({"axis": axis, **point(**settings, device=device, d_model=32 if quick else D_MODEL)})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, out_dir, caption: str) -> list:
    """Seconds (top) and ratios (bottom) against each axis, as ``scaling.png`` in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    axes_ = list(dict.fromkeys(table["axis"]))
    fig, grid = plt.subplots(2, len(axes_), figsize=(3.3 * len(axes_), 6.0), squeeze=False)
    for col, axis in enumerate(axes_):
        part = table[table["axis"] == axis]
        top, bottom = grid[0][col], grid[1][col]
        for column, label in (("TL head x pos s", "TL head x pos"), ("head x pos s", "pathpatch head x pos"), ("all edges s", "pathpatch all edges")):
            top.plot(part[axis], part[column], marker="o", ms=3, label=label)
        top.set(yscale="log", xlabel=axis, ylabel="seconds", title=f"cost vs {axis}")
        bottom.plot(part[axis], part["speed-up vs TL"], marker="o", ms=3, label="speed-up vs TL (head x pos)")
        bottom.plot(part[axis], part["variant / forward"], marker="s", ms=3, label="one edge variant / one forward")
        bottom.axhline(1.0, color="0.8", lw=0.8)
        bottom.set(yscale="log", xlabel=axis, ylabel="ratio")
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(part[axis]), [str(v) for v in part[axis]])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        if col == 0:
            top.legend(fontsize=7)
            bottom.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return [save_figure(fig, out_dir / "scaling.png", caption)]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the code runs")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = parser.parse_args(argv)
    table = run(args.quick, args.device)
    print(table.to_markdown(index=False, floatfmt=".3g"))
    return table


if __name__ == "__main__":
    main()
