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
import platform
import resource
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig, patching

from pathpatch.discovery.activation import activation_patch
from pathpatch.discovery.attribution import attribute_edges
from pathpatch.discovery.config import PatchConfig
from pathpatch.discovery.edges import patch_edges
from pathpatch.discovery.graph import ComputeGraph
from pathpatch.models import Task, build_task, load_model
from pathpatch.models.loading import enable_patching_hooks


@dataclass
class Row:
    """One benchmark line."""

    work: str
    ours_s: float
    theirs_s: float | None
    baseline: str
    max_diff: float | None
    peak_mb: float

    def markdown(self) -> str:
        ratio = f"{self.theirs_s / self.ours_s:.1f}x" if self.theirs_s else "-"
        theirs = f"{self.theirs_s:.2f}" if self.theirs_s else "-"
        diff = f"{self.max_diff:.1e}" if self.max_diff is not None else "-"
        return f"| {self.work} | {self.ours_s:.3f} | {theirs} | {self.baseline} | {ratio} | {diff} | {self.peak_mb:.0f} |"


def timed(fn: Callable[[], object], device: str) -> tuple[object, float, float]:
    """Run ``fn``; return its result, wall seconds and peak memory in MB (CUDA: allocated; CPU: process RSS)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out, time.perf_counter() - start, peak


def gpt2_shaped(n_layers: int, d_vocab: int, device: str, edge_hooks: bool) -> HookedTransformer:
    """A random model of GPT-2 small's shape (12 heads, d_model 768, d_mlp 3072, LayerNorm).

    ``edge_hooks`` switches on the per-head input hooks edge patching needs; activation patching rows use
    the plain model, as a TransformerLens user would.
    """
    cfg = HookedTransformerConfig(
        n_layers=n_layers, n_heads=12, d_model=768, d_head=64, d_mlp=3072, n_ctx=64, d_vocab=d_vocab,
        act_fn="gelu_new", normalization_type="LN", seed=0, device=device,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg).eval()
    return enable_patching_hooks(model) if edge_hooks else model


def random_task(d_vocab: int, batch: int, seq: int, device: str) -> Task:
    """Random clean/corrupt tokens read at the last position."""
    g = torch.Generator().manual_seed(0)
    tok = lambda shape: torch.randint(0, d_vocab, shape, generator=g)  # noqa: E731
    return Task("random", tok((batch, seq)), tok((batch, seq)), tok((batch, 1)), tok((batch, 1)), torch.tensor([seq - 1])).to(device)


def head_by_pos(model: HookedTransformer, task: Task, device: str, label: str) -> Row:
    """Head x position patching of ``z``: TransformerLens (one forward per patch) vs pathpatch."""
    _, cache = model.run_with_cache(task.clean)
    theirs, t_theirs, _ = timed(lambda: patching.get_act_patch_attn_head_out_by_pos(model, task.corrupt, cache, task.score), device)
    ours, t_ours, peak = timed(lambda: activation_patch(model, task, "z", True, PatchConfig(normalize=False)), device)
    diff = (theirs.cpu() - ours.values).abs().max().item()
    return Row(f"{label}: head x pos patching ({ours.values.numel()} patches)", t_ours, t_theirs, "TL patching", diff, peak)


def block_every(model: HookedTransformer, task: Task, device: str, label: str) -> Row:
    """resid_pre / attn_out / mlp_out by position: TransformerLens' block_every vs pathpatch."""
    _, cache = model.run_with_cache(task.clean)
    theirs, t_theirs, _ = timed(lambda: patching.get_act_patch_block_every(model, task.corrupt, cache, task.score), device)
    config = PatchConfig(normalize=False)
    run = lambda: torch.stack([activation_patch(model, task, a, True, config).values for a in ("resid_pre", "attn_out", "mlp_out")])  # noqa: E731
    ours, t_ours, peak = timed(run, device)
    diff = (theirs.cpu() - ours).abs().max().item()
    return Row(f"{label}: block every by pos ({ours.numel()} patches)", t_ours, t_theirs, "TL patching", diff, peak)


def efficiency(model: HookedTransformer, task: Task, device: str, label: str) -> Row:
    """Head x position patching vs one plain batched forward over as many sequences as it patches."""
    n_variants = model.cfg.n_layers * model.cfg.n_heads * task.clean.shape[1]
    _, t_ours, peak = timed(lambda: activation_patch(model, task, "z", True, PatchConfig(normalize=False)), device)
    chunk = max(1, 256 // task.clean.shape[0])

    def plain() -> None:
        for start in range(0, n_variants, chunk):
            n = min(chunk, n_variants - start)
            model(task.corrupt.repeat(n, 1))

    _, t_plain, _ = timed(plain, device)
    return Row(f"{label}: patching efficiency vs {n_variants} x batch plain forwards", t_ours, t_plain, "plain forward", None, peak)


def all_edges(model: HookedTransformer, task: Task, device: str, label: str) -> list[Row]:
    """Exact noising of every edge, and EAP over every edge."""
    n_edges = ComputeGraph.from_model(model).n_edges
    _, t_exact, peak = timed(lambda: patch_edges(model, task, config=PatchConfig(direction="noise", normalize=False)), device)
    _, t_eap, peak_eap = timed(lambda: attribute_edges(model, task, "eap"), device)
    return [
        Row(f"{label}: exact patching of all {n_edges} edges", t_exact, None, "-", None, peak),
        Row(f"{label}: EAP over all {n_edges} edges", t_eap, None, "-", None, peak_eap),
    ]


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
    if args.quick:
        args.gpt2_layers, args.d_vocab, args.seq, args.batch, args.permute_batch = 1, 1000, 4, 2, 4
    device = args.device
    torch.manual_seed(0)
    rows = []
    permute = load_model("permute", device=device)
    warm_task = build_task("permute", n=2, seed=1).to(device)
    activation_patch(permute, warm_task, "z", True, PatchConfig(normalize=False))  # warm-up: first calls allocate
    rows.append(head_by_pos(permute, build_task("permute", n=args.permute_batch, seed=0).to(device), device, "S0 permute"))
    model = gpt2_shaped(args.gpt2_layers, args.d_vocab, device, edge_hooks=False)
    task = random_task(args.d_vocab, args.batch, args.seq, device)
    label = f"GPT-2-shaped {args.gpt2_layers}L, batch {args.batch} x seq {args.seq}"
    rows.append(head_by_pos(model, task, device, label))
    rows.append(block_every(model, task, device, label))
    rows.append(efficiency(model, task, device, label))
    rows.extend(all_edges(gpt2_shaped(args.gpt2_layers, args.d_vocab, device, edge_hooks=True), task, device, label))
    machine = torch.cuda.get_device_name() if device.startswith("cuda") else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"\nmachine: {machine}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}\n")
    print("| work | pathpatch s | other s | other | ratio | max diff | peak MB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row.markdown())
    return rows


if __name__ == "__main__":
    main()
