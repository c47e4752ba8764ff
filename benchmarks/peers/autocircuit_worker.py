"""Runs inside auto-circuit's own virtual environment (TransformerLens 2.x); never imported by pathpatch.

    python autocircuit_worker.py WORK.pt RESULT.json

WORK.pt holds the model config and weights, the clean/corrupt tokens, answers and the circuit sizes.
The worker times auto-circuit's model wrapping, its EAP (mask gradients, ``grad_function="logit"``,
``mask_val=0``) and its circuit runs (edge patching, the top-k EAP edges clean, the rest corrupt), and
writes the timings, the sorted |EAP| scores and each circuit's mean logit difference as JSON. Circuits run as
``TREE_PATCH``: clean input, every edge outside the circuit carries its corrupt value, which is how
pathpatch (and ACDC) define a circuit run; auto-circuit's ``EDGE_PATCH`` is the mirror image (corrupt
input, circuit edges carry cached clean values) and gives different numbers for circuits that are
not closed under their inputs.
"""

import json
import sys
import time

import torch
from auto_circuit.data import PromptDataLoader, PromptDataset
from auto_circuit.prune import run_circuits
from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores
from auto_circuit.types import AblationType, PatchType
from auto_circuit.utils.graph_utils import patchable_model
from transformer_lens import HookedTransformer, HookedTransformerConfig


def main(work_path: str, result_path: str) -> None:
    work = torch.load(work_path)
    torch.set_num_threads(work["threads"])
    model = HookedTransformer(HookedTransformerConfig(**work["config"]))
    weights = {k: v for k, v in work["state_dict"].items() if not k.endswith((".mask", ".IGNORE"))}  # buffers: rebuilt
    model.load_state_dict(weights, strict=False)
    missing = set(model.state_dict()) - set(weights)
    assert all(k.endswith((".mask", ".IGNORE")) for k in missing), sorted(missing)
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    model.eval()
    clean, corrupt, answers, wrong = work["clean"], work["corrupt"], work["answers"], work["wrong"]
    dataset = PromptDataset(clean, corrupt, list(answers[:, None]), list(wrong[:, None]))
    loader = PromptDataLoader(dataset, seq_len=None, diverge_idx=0, batch_size=len(clean), shuffle=False)
    start = time.perf_counter()
    wrapped = patchable_model(model, factorized=True, slice_output="last_seq", separate_qkv=True, device=torch.device("cpu"))
    t_wrap = time.perf_counter() - start
    start = time.perf_counter()
    scores = mask_gradient_prune_scores(wrapped, loader, None, grad_function="logit", answer_function="avg_diff", mask_val=0.0)
    t_eap = time.perf_counter() - start
    flat = torch.cat([s.flatten() for s in scores.values()]).abs()
    start = time.perf_counter()
    outs = run_circuits(wrapped, loader, work["counts"], scores, patch_type=PatchType.TREE_PATCH, ablation_type=AblationType.RESAMPLE)
    t_circuits = time.perf_counter() - start
    metrics = {}
    for count, by_batch in outs.items():
        logits = next(iter(by_batch.values()))  # [batch d_vocab]: one batch
        metrics[str(count)] = (logits.gather(1, answers[:, None]) - logits.gather(1, wrong[:, None])).mean().item()
    result = {"wrap_s": t_wrap, "eap_s": t_eap, "circuits_s": t_circuits, "n_edges": int(flat.numel()),
              "eap_abs_sorted": flat.sort(descending=True).values.tolist(), "circuit_metrics": metrics}
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
