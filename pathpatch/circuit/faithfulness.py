"""Faithfulness: how much of the clean behaviour a circuit alone recovers.

The circuit's edges carry clean outputs and every other edge carries corrupt ones
(``run_circuits``); faithfulness is ``(m_circuit - m_corrupt) / (m_clean - m_corrupt)``: 1 means the
circuit reproduces the clean metric, 0 means it does no better than the corrupt run. That is the
denoising view (is the circuit sufficient?). The noising view corrupts only the circuit's edges and
keeps the rest clean: ``noise_faithfulness = (m_clean - m_complement) / (m_clean - m_corrupt)`` is the
share lost (is the circuit necessary?), and ``complement_faithfulness = 1 - noise_faithfulness`` what
the rest of the model still does. ``m_corrupt`` is the empty circuit's metric under the run's own
corruption: the task's corrupt prompts for ``paired``, every edge resampled or ablated for
``resample``, ``mean`` and ``zero``, so each corruption has its own normaliser.

``faithfulness_curve`` keeps the top ``fraction`` of edges by ``|score|`` (at least one edge, rounded)
for fractions from 0.1% to 100% and measures each; its CPR is the area under that curve and its CMD
the area under ``|1 - faithfulness|`` (trapezoids over the fractions; higher CPR, lower CMD are better).
``mib_curves`` computes CPR and CMD exactly as the MIB circuit track does, which differs in three
ways: sizes are ``int(share * n_edges)`` (rounded down, so the smallest shares may hold no edge), CPR
ranks edges by signed score and CMD by ``|score|``, and each top-n set is pruned to ``embed -> logits``
paths before it runs. Reports give both.
"""

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from pathpatch.circuit.circuit import Circuit
from pathpatch.circuit.prune import on_paths, prune_top_k
from pathpatch.errors import InputError
from pathpatch.patch.circuits import run_circuits_with_baselines
from pathpatch.patch.config import NOISE, PatchConfig
from pathpatch.patch.graph import ComputeGraph
from pathpatch.patch.scores import normalized
from pathpatch.task.groups import AnyTask
from pathpatch.task.positions import Layout

FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
Shares = Sequence[float | int]  # edge shares, e.g. MIB's (.001, ..., .5, 1)
Values = Sequence[float] | np.ndarray | pd.Series  # one faithfulness per share


def faithfulness(circuit: Circuit, model: torch.nn.Module, task: AnyTask, config: PatchConfig = NOISE) -> dict[str, float]:
    """Return the circuit's metric, its faithfulness both ways and its complement's faithfulness.

    Returns:
        ``metric`` (circuit alone), ``clean_metric``, ``corrupt_metric`` (empty circuit: the normaliser is
        ``clean_metric - corrupt_metric``), ``faithfulness`` (share recovered with only the circuit clean),
        ``noise_faithfulness`` (share lost with only the circuit corrupt), ``complement_faithfulness``
        (``1 - noise_faithfulness``) and ``n_edges``.

    Raises:
        ValueError: Empty circuit, or clean and corrupt give the same metric.
    """
    if not circuit.scored_edges:
        raise InputError("The circuit has no edges, so faithfulness is that of the corrupt run; lower the threshold.")
    graph, columns = ComputeGraph.from_model(model), circuit.layout
    mask = circuit.mask()
    valid = graph.valid_at(columns)
    values, clean, corrupt = run_circuits_with_baselines(model, task, torch.stack([mask, valid & ~mask]), config, columns)
    (circuit_m, _), clean_m, corrupt_m = values.mean(-1).tolist(), clean.mean().item(), corrupt.mean().item()
    scaled = normalized(values.mean(-1) - corrupt_m, clean_m, corrupt_m, task.name).tolist()
    return {
        "metric": circuit_m,
        "clean_metric": clean_m,
        "corrupt_metric": corrupt_m,
        "faithfulness": scaled[0],
        "noise_faithfulness": 1.0 - scaled[1],
        "complement_faithfulness": scaled[1],
        "n_edges": len(circuit.scored_edges),
    }


def faithfulness_curve(
    scores: pd.DataFrame, model: torch.nn.Module, task: AnyTask, fractions: tuple[float, ...] = FRACTIONS, config: PatchConfig = NOISE,
    positions: Layout | None = None,
) -> pd.DataFrame:
    """Return faithfulness of the top-``fraction`` circuits; ``attrs`` holds ``cpr`` and ``cmd``
    (position-aware rows need the task's ``positions``)."""
    graph = ComputeGraph.from_model(model)
    sizes = [max(1, round(f * len(scores))) for f in fractions]
    masks = [graph.mask(list(prune_top_k(scores, k)["edge"]), positions) for k in sizes]
    per_prompt, clean, corrupt = run_circuits_with_baselines(model, task, torch.stack(masks), config, positions)
    values, clean_m, corrupt_m = per_prompt.mean(-1), clean.mean().item(), corrupt.mean().item()
    faith = normalized(values - corrupt_m, clean_m, corrupt_m, task.name)
    table = pd.DataFrame({"fraction": fractions, "n_edges": sizes, "metric": values.numpy(), "faithfulness": faith.numpy()})
    x = np.asarray(fractions)
    table.attrs["cpr"] = float(np.trapezoid(table["faithfulness"], x))
    table.attrs["cmd"] = float(np.trapezoid((1 - table["faithfulness"]).abs(), x))
    return table


def mib_sizes(n_edges: int, percentages: Shares = FRACTIONS) -> list[int]:
    """Return the circuit sizes MIB evaluates: ``int(pct * n_edges)``, rounded down (so 0 for tiny shares).

    As ``evaluate_area_under_curve`` in MIB's ``MIB_circuit_track/evaluation.py`` computes ``curr_num_items``.

    Examples:
        >>> mib_sizes(46)
        [0, 0, 0, 0, 0, 2, 4, 9, 23, 46]
    """
    return [int(pct * n_edges) for pct in percentages]


def mib_top_edges(scores: pd.DataFrame, n: int, absolute: bool, positions: Layout | None = None) -> pd.DataFrame:
    """Return the circuit MIB evaluates at size ``n``: the top ``n`` edges, then only those on embed -> logits paths.

    EAP-IG's ``Graph.apply_topn(n, absolute)`` ranks by ``|score|`` when ``absolute`` and by the signed score
    otherwise, then ``prune`` drops edges without a path from ``input`` to ``logits`` (``on_paths``). Ties
    keep table order here; ``torch.argsort`` there leaves them unspecified.

    Examples:
        >>> rows = pd.DataFrame({"edge": ["embed->logits", "embed->L0H0.v", "L0H0->logits"], "src": ["embed", "embed", "L0H0"],
        ...                      "dest": ["logits", "L0H0.v", "logits"], "score": [0.5, -2.0, 1.0]})
        >>> list(mib_top_edges(rows, 2, absolute=False)["edge"]), list(mib_top_edges(rows, 2, absolute=True)["edge"])
        (['embed->logits'], ['embed->L0H0.v', 'L0H0->logits'])
    """
    key = scores["score"].abs() if absolute else scores["score"]
    top = key.sort_values(ascending=False, kind="stable").index[:n]
    return on_paths(scores.loc[top].sort_index(), positions)


def _mib_areas(percentages: Shares, faithfulness: Values, log_scale: bool) -> tuple[float, float]:
    """Return MIB's ``(area_under, area_from_1)``: trapezoids over ``percentages`` (or their logs), unnormalised."""
    if len(percentages) != len(faithfulness) or len(percentages) < 2:
        raise InputError(f"Got {len(percentages)} circuit sizes and {len(faithfulness)} faithfulness values; give one value per size, at least two.")
    x = [math.log(p) for p in percentages] if log_scale else list(percentages)
    f = [float(v) for v in faithfulness]
    under = sum((x[i + 1] - x[i]) * (f[i] + f[i + 1]) / 2 for i in range(len(f) - 1))
    from_1 = sum((x[i + 1] - x[i]) * (abs(1.0 - f[i]) + abs(1.0 - f[i + 1])) / 2 for i in range(len(f) - 1))
    return under, from_1


def mib_cpr(percentages: Shares, faithfulness: Values, log_scale: bool = False) -> float:
    """Return MIB's CPR: the area under faithfulness over the edge shares (``area_under``; higher is better).

    MIB reports it from the curve of signed-score rankings, see ``mib_curves``.

    Examples:
        >>> mib_cpr((0.5, 1.0), [0.5, 1.0])
        0.375
    """
    return _mib_areas(percentages, faithfulness, log_scale)[0]


def mib_cmd(percentages: Shares, faithfulness: Values, log_scale: bool = False) -> float:
    """Return MIB's CMD: the area under ``|1 - faithfulness|`` over the edge shares (``area_from_1``; lower is better).

    MIB reports it from the curve of ``|score|`` rankings, see ``mib_curves``.

    Examples:
        >>> mib_cmd((0.5, 1.0), [0.5, 1.0])
        0.125
    """
    return _mib_areas(percentages, faithfulness, log_scale)[1]


def mib_curves(scores: pd.DataFrame, model: torch.nn.Module, task: AnyTask, percentages: Shares = FRACTIONS,
               config: PatchConfig = NOISE, positions: Layout | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return MIB's two faithfulness curves, signed and ``|score|`` ranking; ``attrs`` hold ``cpr``, ``cmd``, ``average``.

    Follows ``evaluate_area_under_curve`` (MIB ``MIB_circuit_track/evaluation.py``): sizes ``mib_sizes``,
    circuits ``mib_top_edges``, faithfulness ``(m_circuit - m_empty) / (m_clean - m_empty)``, areas
    over the linear shares. MIB's tables (``print_results.py``) report CPR from the signed curve
    (``--absolute`` off) and CMD from the absolute one: ``signed.attrs["cpr"]``, ``absolute.attrs["cmd"]``.
    Both curves run in one batch.

    Returns:
        ``(signed, absolute)``, one row per share: ``fraction``, ``n_edges`` (top-n size), ``n_kept`` (after
        pruning to paths), ``metric``, ``faithfulness``.
    """
    graph = ComputeGraph.from_model(model)
    sizes = mib_sizes(len(scores), percentages)
    kept = [mib_top_edges(scores, n, absolute, positions) for absolute in (False, True) for n in sizes]
    masks = torch.stack([graph.mask(list(rows["edge"]), positions) for rows in kept])  # [circuit src dest (pos)]
    per_prompt, clean, corrupt = run_circuits_with_baselines(model, task, masks, config, positions)
    values, clean_m, corrupt_m = per_prompt.mean(-1), clean.mean().item(), corrupt.mean().item()
    faith = normalized(values - corrupt_m, clean_m, corrupt_m, task.name).tolist()
    tables = []
    for part in (slice(0, len(sizes)), slice(len(sizes), None)):
        f = faith[part]
        table = pd.DataFrame({"fraction": percentages, "n_edges": sizes, "n_kept": [len(rows) for rows in kept[part]],
                              "metric": values[part].tolist(), "faithfulness": f})
        table.attrs.update(cpr=mib_cpr(percentages, f), cmd=mib_cmd(percentages, f), average=sum(f) / len(f))
        tables.append(table)
    return tables[0], tables[1]
