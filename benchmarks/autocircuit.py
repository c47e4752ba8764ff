"""pathpatch vs auto-circuit (Miller et al., 2024) on the same model, data and work.

auto-circuit needs TransformerLens 2.x, which cannot share an environment with pathpatch's 3.x, so
this script makes its own virtual environment (``benchmarks/.venv-autocircuit``, once, from PyPI),
hands the model weights and tokens to ``peers/autocircuit_worker.py`` running there, and compares:

- EAP over every edge (auto-circuit: mask gradients with ``mask_val=0``, which it documents as exact
  EAP) — the sorted ``|score|`` lists must agree;
- circuit runs at several sizes (top-k EAP edges clean, the rest corrupt) — the logit differences
  must agree.

If the environment cannot be made (no network, a resolver failure), the rows are skipped with the
reason, never faked.

    python -m benchmarks.autocircuit
"""

import json
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import torch

from benchmarks.common import measure, random_model, random_task
from benchmarks.patching import Row
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.circuits import run_circuits
from pathpatch.patch.config import NOISE
from pathpatch.patch.graph import ComputeGraph
from pathpatch.patch.scores import strongest

VENV = Path(__file__).parent / ".venv-autocircuit"
WORKER = Path(__file__).parent / "peers" / "autocircuit_worker.py"
# auto-circuit 1.0.1 imports TransformerLens 2.x; TL 2.x pins numpy < 2, which the newest pyarrow refuses.
REQUIREMENTS = (("auto-circuit==1.0.1",), ("transformer-lens>=2.16,<3", "pyarrow<20"))
FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


def ensure_venv(venv: Path = VENV) -> tuple[Path | None, str]:
    """Return auto-circuit's Python (making the environment if needed) and a note; None if it failed."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import auto_circuit.prune, transformer_lens"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python, "auto-circuit environment found"
    steps = [[sys.executable, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", f"torch=={version('torch').split('+')[0]}"]]
    steps += [[str(python), "-m", "pip", "install", "-q", *group] for group in REQUIREMENTS]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"could not install auto-circuit ({' '.join(step[2:5])}...: {tail[0]})"
    if subprocess.run(probe, capture_output=True).returncode != 0:
        return None, "auto-circuit installed but does not import"
    return python, "auto-circuit environment made"


def run(device: str = "cpu", n_layers: int = 2, d_vocab: int = 50257, batch: int = 4, seq: int = 8) -> tuple[list[Row], str]:
    """Rows comparing EAP and circuit runs; the note says which auto-circuit ran, or why none did."""
    if not device.startswith("cpu"):
        return [], "auto-circuit rows run on CPU only (the worker builds its model there)"
    python, note = ensure_venv()
    if python is None:
        return [], note
    model = random_model(n_layers, 12, 768, 3072, d_vocab, device, edge_hooks=True, n_ctx=64)
    task = random_task(d_vocab, batch, seq, device)
    graph = ComputeGraph.from_model(model)
    eap = measure(lambda: attribute_edges(model, task, "eap"), device)
    counts = sorted({max(1, round(f * graph.n_edges)) for f in FRACTIONS})
    masks = torch.stack([graph.mask(list(strongest(eap.out, k)["edge"])) for k in counts])
    circuits = measure(lambda: run_circuits(model, task, masks, NOISE), device)
    theirs = _run_worker(python, model, task, counts)
    ours_sorted = torch.tensor(eap.out["score"].abs().sort_values(ascending=False).to_numpy())
    theirs_sorted = torch.tensor(theirs["eap_abs_sorted"])
    eap_diff = (ours_sorted - theirs_sorted).abs().max().item() if len(ours_sorted) == len(theirs_sorted) else float("inf")
    their_metrics = torch.tensor([theirs["circuit_metrics"].get(str(k), float("nan")) for k in counts])
    circuit_diff = (circuits.out - their_metrics).abs().max().item()
    label = f"GPT-2-shaped {n_layers}L, batch {batch} x seq {seq}"
    rows = [
        Row(f"{label}: EAP over all {graph.n_edges} edges (auto-circuit: {theirs['n_edges']})", eap.seconds,
            theirs["eap_s"] + theirs["wrap_s"], "auto-circuit", eap_diff, eap.peak_mb),
        Row(f"{label}: {len(counts)} circuit runs, top-k EAP edges clean", circuits.seconds, theirs["circuits_s"], "auto-circuit",
            circuit_diff, circuits.peak_mb),
    ]
    return rows, f"{note}: auto-circuit 1.0.1 with TransformerLens 2.x (its time includes wrapping the model once)"


def _run_worker(python: Path, model: torch.nn.Module, task, counts: list[int]) -> dict:
    """Run the worker in auto-circuit's environment on the same weights and tokens; return its JSON."""
    cfg = model.cfg
    config = {key: getattr(cfg, key) for key in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "n_ctx", "d_vocab", "act_fn", "normalization_type")}
    with tempfile.TemporaryDirectory() as tmp:
        work, result = Path(tmp) / "work.pt", Path(tmp) / "result.json"
        torch.save({"config": config, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "clean": task.clean.cpu(),
                    "corrupt": task.corrupt.cpu(), "answers": task.answers[:, 0].cpu(), "wrong": task.wrong_answers[:, 0].cpu(),
                    "counts": counts, "threads": torch.get_num_threads()}, work)
        done = subprocess.run([str(python), str(WORKER), str(work), str(result)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"auto-circuit worker failed:\n{done.stderr[-2000:]}")
        return json.loads(result.read_text())


if __name__ == "__main__":
    rows, note = run()
    print(note)
    for row in rows:
        print(row.markdown())
