"""Half precision: every method runs in bfloat16/float16 and stays within the stated tolerance of float32.

The tolerance is a share of |clean - corrupt| (the normalized-score scale): 0.02 for bfloat16 and
0.005 for float16, as the README states. Metrics are always computed in float32 from upcast logits.
"""

import pytest
import torch

from pathpatch.models import build_task, load_model
from pathpatch.patch.activation import activation_patch
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.circuits import run_circuits
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph

TOLERANCE = {torch.bfloat16: 0.02, torch.float16: 0.005}


@pytest.fixture(scope="module", params=["permute", "trigrams"])
def full(request):
    model, task = load_model(request.param), build_task(request.param, n=32, seed=0)
    edges = patch_edges(model, task)
    gap = abs(edges.attrs["clean_metric"] - edges.attrs["corrupt_metric"])
    return request.param, task, gap, {
        "edges": edges["normalized"].to_numpy(),
        "z": activation_patch(model, task, "z", True).table["normalized"].to_numpy(),
        "eap-ig": attribute_edges(model, task, "eap-ig")["score"].to_numpy() / gap,
        "circuits": (run_circuits(model, task, _masks(model)) / gap).numpy(),
    }


def _masks(model):
    graph = ComputeGraph.from_model(model)
    edges = graph.edges
    return torch.stack([graph.valid, graph.mask(edges[: len(edges) // 2]), torch.zeros_like(graph.valid)])


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
def test_half_precision_stays_within_tolerance_of_float32(full, dtype):
    name, task, gap, reference = full
    model = load_model(name).to(dtype)
    assert model.cfg.dtype == dtype
    low = {
        "edges": patch_edges(model, task)["normalized"].to_numpy(),
        "z": activation_patch(model, task, "z", True).table["normalized"].to_numpy(),
        "eap-ig": attribute_edges(model, task, "eap-ig")["score"].to_numpy() / gap,
        "circuits": (run_circuits(model, task, _masks(model)) / gap).numpy(),
    }
    for method, values in low.items():
        assert values.dtype.itemsize == 4, method
        worst = abs(values - reference[method]).max()
        assert worst <= TOLERANCE[dtype], f"{name} {method} in {dtype}: off by {worst:.4f} of |clean - corrupt|"
