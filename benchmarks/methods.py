"""What each discovery method costs, in plain forward passes of the same model and batch.

A method's time divided by one plain forward over the clean batch says how much work it does beyond
running the model, whatever the machine: EAP should cost about one clean and one corrupt forward and a
backward (3-4 forwards), EAP-IG with k steps about k + 3. Rows are measured one after another in this
process, each with the peak memory it added.

    python -m benchmarks.methods                 # 12-layer GPT-2-small shape and the permute seed model
    python -m benchmarks.methods --all-edges     # also exact patching of all 32,491 edges (minutes on a CPU)
    python -m benchmarks.methods --quick         # tiny sizes: proves the code runs
"""

import argparse
from dataclasses import asdict, dataclass

import torch
from transformer_lens import HookedTransformer

from benchmarks.common import best_of, machine, measure, random_model, random_task
from pathpatch.discovery.activation import activation_patch
from pathpatch.discovery.attribution import attribute_edges
from pathpatch.discovery.config import PatchConfig
from pathpatch.discovery.edges import patch_edges
from pathpatch.discovery.graph import ComputeGraph
from pathpatch.discovery.prune import acdc, strongest
from pathpatch.models import Task, build_task, load_model

STEPS = 5
RECHECK = 200


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


def costs(model: HookedTransformer, task: Task, label: str, device: str, all_edges: bool, acdc_too: bool) -> list[Cost]:
    """Every method's cost on one model, in plain forwards of its clean batch."""
    noise = PatchConfig(direction="noise")
    with torch.no_grad():
        plain = best_of(lambda: model(task.clean), device, 5).seconds
    n_edges = ComputeGraph.from_model(model).n_edges
    eap = measure(lambda: attribute_edges(model, task, "eap", config=noise), device)
    rows = [Cost(label, "plain forward (clean batch)", plain, 1.0, 0.0),
            Cost(label, f"EAP over all {n_edges:,} edges", eap.seconds, eap.seconds / plain, eap.peak_mb, "<= 4"),
            _row(label, f"EAP-IG, {STEPS} steps, all {n_edges:,} edges", lambda: attribute_edges(model, task, "eap-ig", steps=STEPS, config=noise),
                 plain, device, f"<= {STEPS + 3}")]
    top = list(strongest(eap.out, min(RECHECK, n_edges))["edge"])
    rows.append(_row(label, f"exact re-check of the {len(top)} strongest edges", lambda: patch_edges(model, task, top, config=noise), plain, device))
    rows.append(_row(label, "activation patching, every head x position (z)", lambda: activation_patch(model, task, "z", True, noise), plain, device))
    if acdc_too:
        rows.append(_row(label, "ACDC (tau 0.01)", lambda: acdc(model, task, tau=0.01, config=noise), plain, device))
    if all_edges:
        rows.append(_row(label, f"exact patching of all {n_edges:,} edges", lambda: patch_edges(model, task, config=noise), plain, device))
    return rows


def _row(label: str, method: str, fn, plain: float, device: str, target: str = "") -> Cost:
    got = measure(fn, device)
    return Cost(label, method, got.seconds, got.seconds / plain, got.peak_mb, target)


def run(quick: bool = False, device: str = "cpu", all_edges: bool = False) -> tuple[list[Cost], str]:
    """The rows on the GPT-2-shaped model (12 layers) and on the permute seed model."""
    layers, d_vocab, batch, seq = (1, 1000, 2, 4) if quick else (12, 50257, 4, 8)
    torch.manual_seed(0)
    model = random_model(layers, 12, 768, 3072, d_vocab, device, edge_hooks=True, n_ctx=64)
    task = random_task(d_vocab, batch, seq, device)
    rows = costs(model, task, f"GPT-2 shape {layers}L", device, all_edges, acdc_too=False)
    permute = load_model("permute", device=device)
    rows += costs(permute, build_task("permute", n=8 if quick else 32, seed=0).to(device), "permute", device, True, acdc_too=True)
    setting = (f"GPT-2-small shape with {layers} layers (12 heads, d_model 768, d_mlp 3072, d_vocab {d_vocab}; batch {batch} x seq {seq}); "
               f"permute seed model, batch {8 if quick else 32}. ACDC on the 12-layer shape is not run (hours on a CPU).")
    return rows, setting


def markdown(rows: list[Cost]) -> str:
    """The rows as a markdown table."""
    lines = ["| model | method | seconds | plain forwards | target | peak MB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.method} | {r.seconds:.3f} | {r.forwards:.1f} | {r.target or '-'} | {r.peak_mb:.0f} |" for r in rows]
    return "\n".join(lines)


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
