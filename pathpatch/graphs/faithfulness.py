"""Faithfulness: how much of the clean behaviour a circuit alone recovers.

The circuit's edges carry clean outputs and every other edge carries corrupt ones
(``run_circuits``); faithfulness is ``(m_circuit - m_corrupt) / (m_clean - m_corrupt)``: 1 means the
circuit reproduces the clean metric, 0 means it does no better than the corrupt run. The complement
(everything but the circuit kept clean) says how much the rest of the model still does.

The curve over circuit sizes follows the MIB benchmark: keep the top ``fraction`` of edges by
``|score|`` for fractions from 0.1% to 100% and measure faithfulness of each; CPR is the area under
that curve and CMD the area under ``|1 - faithfulness|`` (trapezoids over the fractions; higher CPR and
lower CMD are better).
"""

import numpy as np
import pandas as pd
import torch

from pathpatch.discovery.config import PatchConfig, normalized
from pathpatch.discovery.edges import NOISE, run_circuits_with_baselines
from pathpatch.discovery.graph import ComputeGraph
from pathpatch.discovery.prune import prune_top_k
from pathpatch.graphs.circuit import Circuit
from pathpatch.models.tasks import AnyTask

FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def faithfulness(circuit: Circuit, model: torch.nn.Module, task: AnyTask, config: PatchConfig = NOISE) -> dict[str, float]:
    """Return the circuit's metric, its faithfulness and its complement's faithfulness.

    Raises:
        ValueError: Empty circuit, or clean and corrupt give the same metric.
    """
    if not circuit.scored_edges:
        raise ValueError("The circuit has no edges, so faithfulness is that of the corrupt run; lower the threshold.")
    graph = ComputeGraph.from_model(model)
    mask = circuit.mask()
    values, clean, corrupt = run_circuits_with_baselines(model, task, torch.stack([mask, graph.valid & ~mask]), config)
    (circuit_m, complement_m), clean_m, corrupt_m = values.mean(-1).tolist(), clean.mean().item(), corrupt.mean().item()
    scaled = normalized(values.mean(-1) - corrupt_m, clean_m, corrupt_m, task.name).tolist()
    return {
        "metric": circuit_m,
        "clean_metric": clean_m,
        "corrupt_metric": corrupt_m,
        "faithfulness": scaled[0],
        "complement_faithfulness": scaled[1],
        "n_edges": len(circuit.scored_edges),
    }


def faithfulness_curve(
    scores: pd.DataFrame, model: torch.nn.Module, task: AnyTask, fractions: tuple[float, ...] = FRACTIONS, config: PatchConfig = NOISE
) -> pd.DataFrame:
    """Return faithfulness of the top-``fraction`` circuits; ``attrs`` holds ``cpr`` and ``cmd``."""
    graph = ComputeGraph.from_model(model)
    sizes = [max(1, round(f * len(scores))) for f in fractions]
    masks = [graph.mask(list(prune_top_k(scores, k)["edge"])) for k in sizes]
    per_prompt, clean, corrupt = run_circuits_with_baselines(model, task, torch.stack(masks), config)
    values, clean_m, corrupt_m = per_prompt.mean(-1), clean.mean().item(), corrupt.mean().item()
    faith = normalized(values - corrupt_m, clean_m, corrupt_m, task.name)
    table = pd.DataFrame({"fraction": fractions, "n_edges": sizes, "metric": values.numpy(), "faithfulness": faith.numpy()})
    x = np.asarray(fractions)
    table.attrs["cpr"] = float(np.trapezoid(table["faithfulness"], x))
    table.attrs["cmd"] = float(np.trapezoid((1 - table["faithfulness"]).abs(), x))
    return table
