"""Side-by-side speed of pathpatch's patching engine and TransformerLens' ``patching`` module.

Each row runs the same work through both (or through pathpatch and a plain-forward baseline), checks
that the numbers agree, and reports wall time, the speed-up ratio and peak memory, all measured in
this one run on this machine. Nothing here asserts on time; the ratios are recorded in
``benchmarks/RESULTS.md`` with the machine and date.

    python -m benchmarks.patching            # CPU rows (GPT-2-small shape reduced to 2 layers)
    python -m benchmarks.patching --quick    # tiny sizes: proves the code runs (CI)
    python -m benchmarks.patching --device cuda --gpt2-layers 12 --seq 16 --batch 8
"""

import argparse
from dataclasses import dataclass

import torch
from transformer_lens import HookedTransformer, patching

from benchmarks.common import TL_CONVENTION, best_of, machine, measure, random_model, random_task
from pathpatch.models import Task, build_task, load_model
from pathpatch.patch.activation import activation_patch
from pathpatch.patch.activation import block_every as patch_block_every
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph


@dataclass
class Row:
    """One benchmark line."""

    work: str
    ours_s: float
    theirs_s: float | None
    baseline: str
    max_diff: float | None
    peak_mb: float

    @property
    def ratio(self) -> float | None:
        """Reference seconds over pathpatch seconds (None without a reference)."""
        return self.theirs_s / self.ours_s if self.theirs_s else None

    def markdown(self) -> str:
        ratio = f"{self.ratio:.1f}x" if self.ratio else "-"
        theirs = f"{self.theirs_s:.2f}" if self.theirs_s else "-"
        diff = f"{self.max_diff:.1e}" if self.max_diff is not None else "-"
        return f"| {self.work} | {self.ours_s:.3f} | {theirs} | {self.baseline} | {ratio} | {diff} | {self.peak_mb:.0f} |"


HEADER = "| work | pathpatch s | other s | other | ratio | max diff | peak MB |\n|---|---|---|---|---|---|---|"


def gpt2_shaped(n_layers: int, d_vocab: int, device: str, edge_hooks: bool) -> HookedTransformer:
    """A random model of GPT-2 small's shape (12 heads, d_model 768, d_mlp 3072, LayerNorm)."""
    return random_model(n_layers, 12, 768, 3072, d_vocab, device, edge_hooks, n_ctx=64)


def head_by_pos(model: HookedTransformer, task: Task, device: str, label: str, repeats: int = 1) -> Row:
    """Head x position patching of ``z``: TransformerLens (one forward per patch) vs pathpatch, each the best of ``repeats``."""
    _, cache = model.run_with_cache(task.clean)
    theirs = best_of(lambda: patching.get_act_patch_attn_head_out_by_pos(model, task.corrupt, cache, task.score), device, repeats)
    ours = best_of(lambda: activation_patch(model, task, "z", True, TL_CONVENTION).values, device, repeats)
    diff = (theirs.out.cpu() - ours.out).abs().max().item()
    return Row(f"{label}: head x pos patching ({ours.out.numel()} patches)", ours.seconds, theirs.seconds, "TL patching", diff, ours.peak_mb)


def ceiling(model: HookedTransformer, task: Task, tl: Row, device: str, label: str) -> Row:
    """One TransformerLens forward over clean and corrupt inputs, the least an exact method runs on TL's
    forward (it needs both runs' activations; TL's patching is handed the clean cache). TL's patching
    time over it is the largest ratio such a method can reach on this model."""
    both = torch.cat([task.clean, task.corrupt])
    with torch.no_grad():
        floor = best_of(lambda: model(both), device, 5)
    return Row(f"{label}: ceiling, one forward over clean + corrupt ({both.shape[0]} sequences)", floor.seconds, tl.theirs_s,
               "TL patching", None, floor.peak_mb)


def block_every(model: HookedTransformer, task: Task, device: str, label: str) -> Row:
    """resid_pre / attn_out / mlp_out by position: TransformerLens' block_every vs pathpatch."""
    _, cache = model.run_with_cache(task.clean)
    theirs = measure(lambda: patching.get_act_patch_block_every(model, task.corrupt, cache, task.score), device)
    ours = measure(lambda: patch_block_every(model, task, True, TL_CONVENTION).values, device)
    diff = (theirs.out.cpu() - ours.out).abs().max().item()
    return Row(f"{label}: block every by pos ({ours.out.numel()} patches)", ours.seconds, theirs.seconds, "TL patching", diff, ours.peak_mb)


def efficiency(model: HookedTransformer, task: Task, device: str, label: str) -> Row:
    """Head x position patching vs plain batched forwards over as many sequences as it patches."""
    n_variants = model.cfg.n_layers * model.cfg.n_heads * task.clean.shape[1]
    ours = measure(lambda: activation_patch(model, task, "z", True, TL_CONVENTION), device)
    chunk = max(1, 256 // task.clean.shape[0])

    def plain() -> None:
        for start in range(0, n_variants, chunk):
            model(task.corrupt.repeat(min(chunk, n_variants - start), 1))

    t_plain = measure(plain, device).seconds
    return Row(f"{label}: patching efficiency vs {n_variants} x batch plain forwards", ours.seconds, t_plain, "plain forward", None, ours.peak_mb)


def all_edges(model: HookedTransformer, task: Task, device: str, label: str) -> list[Row]:
    """Exact noising of every edge, and EAP over every edge."""
    n_edges = ComputeGraph.from_model(model).n_edges
    exact = measure(lambda: patch_edges(model, task, config=PatchConfig(direction="noise", normalize=False)), device)
    eap = measure(lambda: attribute_edges(model, task, "eap"), device)
    return [
        Row(f"{label}: exact patching of all {n_edges} edges", exact.seconds, None, "-", None, exact.peak_mb),
        Row(f"{label}: EAP over all {n_edges} edges", eap.seconds, None, "-", None, eap.peak_mb),
    ]


def run(quick: bool = False, device: str = "cpu", gpt2_layers: int = 2, d_vocab: int = 50257, seq: int = 8, batch: int = 4,
        permute_batch: int = 32) -> tuple[list[Row], str]:
    """Every row, and the words describing the GPT-2-shaped setting."""
    if quick:
        gpt2_layers, d_vocab, seq, batch, permute_batch = 1, 1000, 4, 2, 4
    torch.manual_seed(0)
    rows = []
    permute = load_model("permute", device=device)
    activation_patch(permute, build_task("permute", n=2, seed=1), "z", True, TL_CONVENTION)  # warm-up: first calls allocate
    permute_task = build_task("permute", n=permute_batch, seed=0).to(device)
    rows.append(head_by_pos(permute, permute_task, device, "S0 permute", repeats=5))  # milliseconds: best of 5 on both sides
    rows.append(ceiling(permute, permute_task, rows[-1], device, "S0 permute"))
    model = gpt2_shaped(gpt2_layers, d_vocab, device, edge_hooks=False)
    task = random_task(d_vocab, batch, seq, device)
    label = f"GPT-2-shaped {gpt2_layers}L, batch {batch} x seq {seq}"
    rows.append(head_by_pos(model, task, device, label))
    rows.append(block_every(model, task, device, label))
    rows.append(efficiency(model, task, device, label))
    rows.extend(all_edges(gpt2_shaped(gpt2_layers, d_vocab, device, edge_hooks=True), task, device, label))
    setting = (f"GPT-2-small shape with {gpt2_layers} layers: 12 heads, d_model 768, d_mlp 3072, d_vocab {d_vocab}; "
               f"batch {batch} x seq {seq}, metric read at the last position; S0 permute batch {permute_batch}")
    return rows, setting


def markdown(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    return "\n".join([HEADER, *(row.markdown() for row in rows)])


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds: proves the benchmark runs")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--gpt2-layers", type=int, default=2, help="layers of the GPT-2-shaped model (12 = full)")
    parser.add_argument("--d-vocab", type=int, default=50257, help="vocabulary of the GPT-2-shaped model")
    parser.add_argument("--seq", type=int, default=8, help="sequence length for the GPT-2-shaped rows")
    parser.add_argument("--batch", type=int, default=4, help="batch for the GPT-2-shaped rows")
    parser.add_argument("--permute-batch", type=int, default=32, help="batch for the S0 permute row")
    args = parser.parse_args(argv)
    rows, setting = run(args.quick, args.device, args.gpt2_layers, args.d_vocab, args.seq, args.batch, args.permute_batch)
    print(f"\n{machine(args.device)}\n{setting}\n")
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
