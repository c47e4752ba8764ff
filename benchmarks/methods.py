"""What each discovery method costs, in plain forward passes of the same model and batch.

A method's time divided by one plain forward over the clean batch says how much work it does beyond
running the model, whatever the machine: EAP should cost about one clean and one corrupt forward and a
backward (3-4 forwards), EAP-IG with k steps about k + 3. Rows are measured one after another in this
process, each with the peak memory it added; a row whose first run takes under ``REPEAT_UNDER`` seconds
is run three times and keeps its fastest time (the plain forward is the fastest of five), so a first call's
allocations and a busy moment of the machine do not count as the method's work.

Exact patching of every edge has a floor that no faster code reaches: the multiply-adds of recomputing
each edge's patched run from its destination on (``exact_floor_flops``), run at the fastest rate this
machine multiplies matrices of the same shapes (``matmul_rate``). The "floor" row is that time; the
exact all-edge row's time over it says how close the run is.

    python -m benchmarks.methods                 # 12-layer GPT-2-small shape and the permute seed model
    python -m benchmarks.methods --all-edges     # also exact patching of all 32,491 edges (minutes on a CPU)
    python -m benchmarks.methods --quick         # tiny sizes: proves the code runs
"""

import argparse
from dataclasses import asdict, dataclass

import torch
from transformer_lens import HookedTransformer

from benchmarks.common import Measured, best_of, machine, measure, random_model, random_task
from pathpatch.circuit.prune import acdc
from pathpatch.models import Task, build_task, load_model
from pathpatch.patch.activation import activation_patch
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph
from pathpatch.patch.scores import strongest

STEPS = 5
RECHECK = 200
REPEAT_UNDER = 10.0  # seconds: rows faster than this keep the fastest of three runs


@dataclass
class Cost:
    """One method on one model: seconds, the same in plain forwards, and the memory it added."""

    model: str
    method: str
    seconds: float
    forwards: float
    peak_mb: float
    target: str = ""

    @property
    def key(self) -> str:
        return f"{self.model}: {self.method}"


def costs(model: HookedTransformer, task: Task, label: str, device: str, all_edges: bool, acdc_too: bool, targets: bool = True) -> list[Cost]:
    """Every method's cost on one model, in plain forwards of its clean batch; ``targets``: mark the attribution targets
    (set for the GPT-2 shape; on a seed model a forward takes milliseconds and per-call overhead dominates)."""
    noise = PatchConfig(direction="noise")
    with torch.no_grad():
        plain = best_of(lambda: model(task.clean), device, 5).seconds
    n_edges = ComputeGraph.from_model(model).n_edges
    eap = _timed(lambda: attribute_edges(model, task, "eap", config=noise), device)
    rows = [Cost(label, "plain forward (clean batch)", plain, 1.0, 0.0),
            Cost(label, f"EAP over all {n_edges:,} edges", eap.seconds, eap.seconds / plain, eap.peak_mb, "<= 4" if targets else ""),
            _row(label, f"EAP-IG, {STEPS} steps, all {n_edges:,} edges", lambda: attribute_edges(model, task, "eap-ig", steps=STEPS, config=noise),
                 plain, device, f"<= {STEPS + 3}" if targets else "")]
    top = list(strongest(eap.out, min(RECHECK, n_edges))["edge"])
    rows.append(_row(label, f"exact re-check of the {len(top)} strongest edges", lambda: patch_edges(model, task, top, config=noise), plain, device))
    rows.append(_row(label, "activation patching, every head x position (z)", lambda: activation_patch(model, task, "z", True, noise), plain, device))
    if acdc_too:
        rows.append(_row(label, "ACDC (tau 0.01)", lambda: acdc(model, task, tau=0.01, config=noise), plain, device))
    if all_edges:
        floor = exact_floor_flops(model, task) / matmul_rate(model, task, device)
        rows.append(Cost(label, f"floor of exact patching of all {n_edges:,} edges (matrix multiplies at this machine's rate)",
                         floor, floor / plain, 0.0))
        rows.append(_row(label, f"exact patching of all {n_edges:,} edges", lambda: patch_edges(model, task, config=noise), plain, device,
                         f"floor {floor:.3g} s"))
    return rows


def _timed(fn, device: str) -> Measured:
    """``fn`` measured once, and when that took under ``REPEAT_UNDER`` s twice more: the fastest time, the largest peak."""
    first = measure(fn, device)
    if first.seconds >= REPEAT_UNDER:
        return first
    rest = best_of(fn, device, 2)
    return Measured(rest.out, min(first.seconds, rest.seconds), max(first.peak_mb, rest.peak_mb))


def _row(label: str, method: str, fn, plain: float, device: str, target: str = "") -> Cost:
    got = _timed(fn, device)
    return Cost(label, method, got.seconds, got.seconds / plain, got.peak_mb, target)


def exact_floor_flops(model: HookedTransformer, task: Task) -> float:
    """Floating-point operations of exact patching of every edge, each edge's run recomputed from its destination on.

    Per prompt of ``n_pos`` positions and per edge: into a head's q, k or v, that head's one projection
    and its output projection; into an MLP, the MLP; then every later layer at every position (the keys and
    values of later layers read every position), and in the last layer only the read positions' queries,
    output projection and MLP. Attention scores, norms and the read columns of the unembedding are left out
    (a few percent on GPT-2's shape), so the floor is a lower bound.
    """
    cfg = model.cfg
    d, d_head, n_heads, last = cfg.d_model, cfg.d_head, cfg.n_heads, cfg.n_layers - 1
    n_pos, n_read = task.clean.shape[1], len(task.positions)
    d_mlp = 0 if cfg.attn_only else cfg.d_mlp
    mlp = 2 * d * d_mlp  # multiply-adds a token
    full = n_pos * (4 * d * n_heads * d_head + mlp)
    final = n_pos * 2 * d * n_heads * d_head + n_read * (2 * d * n_heads * d_head + mlp)

    def after(layer: int) -> int:  # the layers after ``layer``, the last one read only where the metric reads
        return 0 if layer >= last else (last - layer - 1) * full + final

    macs = 0
    for edge in ComputeGraph.from_model(model).edges:
        node = edge.dest
        if node.kind == "head_input":
            positions = n_read if node.layer == last else n_pos
            own = positions * 2 * d * d_head + (n_read * mlp if node.layer == last else n_pos * mlp)
        elif node.kind == "mlp":
            own = n_read * mlp if node.layer == last else n_pos * mlp
        else:  # the logits: the read columns only
            continue
        macs += own + after(node.layer)
    return 2.0 * macs * task.clean.shape[0]


def matmul_rate(model: HookedTransformer, task: Task, device: str, repeats: int = 20) -> float:
    """The fastest rate (floating-point operations a second) this machine multiplies a batch of patched
    variants' residual streams ``[variants * batch * pos, d_model]`` by an MLP's input weights."""
    cfg = model.cfg
    rows = 16 * task.clean.shape[0] * task.clean.shape[1]  # sixteen variants, as a chunk of patched runs holds
    a = torch.randn(rows, cfg.d_model, device=device)
    b = torch.randn(cfg.d_model, cfg.d_mlp or 4 * cfg.d_model, device=device)
    seconds = best_of(lambda: a @ b, device, repeats).seconds
    return 2.0 * rows * b.shape[0] * b.shape[1] / seconds


def run(quick: bool = False, device: str = "cpu", all_edges: bool = False) -> tuple[list[Cost], str]:
    """The rows on the GPT-2-shaped model (12 layers) and on the permute seed model."""
    layers, d_vocab, batch, seq = (1, 1000, 2, 4) if quick else (12, 50257, 4, 8)
    torch.manual_seed(0)
    model = random_model(layers, 12, 768, 3072, d_vocab, device, edge_hooks=True, n_ctx=64)
    task = random_task(d_vocab, batch, seq, device)
    rows = costs(model, task, f"GPT-2 shape {layers}L", device, all_edges, acdc_too=False)
    permute = load_model("permute", device=device)
    rows += costs(permute, build_task("permute", n=8 if quick else 32, seed=0).to(device), "permute", device, True, acdc_too=True, targets=False)
    setting = (f"GPT-2-small shape with {layers} layers (12 heads, d_model 768, d_mlp 3072, d_vocab {d_vocab}; batch {batch} x seq {seq}); "
               f"permute seed model, batch {8 if quick else 32}. ACDC on the 12-layer shape is not run (hours on a CPU).")
    return rows, setting


def markdown(rows: list[Cost]) -> str:
    """The rows as a markdown table."""
    lines = ["| model | method | seconds | plain forwards | target | peak MB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.method} | {r.seconds:.3f} | {r.forwards:.1f} | {r.target or '-'} | {r.peak_mb:.0f} |" for r in rows]
    return "\n".join(lines)


def targets(rows: list[Cost]) -> list[str]:
    """The cost targets read off this run: attribution in plain forwards, exact all-edge against its floor."""
    lines = []
    for row in rows:
        if row.target.startswith("<="):
            met = row.forwards <= float(row.target.split()[1])
            lines.append(f"- {row.key}: {row.forwards:.1f} plain forwards, target {row.target}: **{'met' if met else 'not met'}**.")
    floors = {r.model: r for r in rows if r.method.startswith("floor of exact")}
    for row in rows:
        floor = floors.get(row.model)
        if floor is not None and row.method.startswith("exact patching of all"):
            lines.append(f"- {row.key}: {row.seconds:.3g} s, {row.seconds / floor.seconds:.2f}x its floor of {floor.seconds:.3g} s "
                         f"(the same multiply-adds at this machine's matrix-multiply rate).")
    return lines


def as_records(rows: list[Cost]) -> list[dict]:
    """The rows as JSON records, keyed by ``key`` (``--compare`` matches rows by it)."""
    return [{"key": r.key, **asdict(r)} for r in rows]


def main(argv: list[str] | None = None) -> list[Cost]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the code runs")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--all-edges", action="store_true", help="also exact patching of every edge of the 12-layer shape (minutes)")
    args = parser.parse_args(argv)
    rows, setting = run(args.quick, args.device, args.all_edges)
    print(f"\n{machine(args.device)}\n{setting}\n\n{markdown(rows)}")
    return rows


if __name__ == "__main__":
    main()
