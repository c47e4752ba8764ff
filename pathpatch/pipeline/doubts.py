"""When a discovered circuit is suspect: say so, and say what to try.

A circuit is trusted when it is faithful both ways under its run's corruption: alone (every other edge
corrupt) it recovers at least ``FAITHFUL`` of clean - corrupt (``faithfulness``), and corrupting only it
loses at least that much (``noise_faithfulness``). Two failures are common, and each has its own fixes:

- Low faithfulness: the threshold cut edges that matter together, the effect is spread over positions,
  a single direction missed redundant (OR-like) or conjunctive (AND-like) inputs, or the corruption
  moves the model off its data. Try another corruption, both directions, a lower threshold, position
  granularity.
- A corruption that hides edges: the paired corrupt prompt keeps some input the same (a pointer, a
  shared subject), so no paired measurement, in either direction, can see the edges that carry it, and
  a circuit without them is fully faithful to the paired task. Measuring the same circuit under
  ``resample`` and ``mean`` (``CROSS``: one batched circuit run each) shows it: there its faithfulness falls.

``cross_check`` measures a circuit under several corruptions, each normalised by its own clean - corrupt
gap; ``suspect`` says whether any check failed; ``second_look`` runs both, and when the circuit is suspect
rediscovers it under each other corruption where that costs less than the run itself; ``doubts`` turns the
table into plain sentences naming what to try.
"""

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd
import torch

from pathpatch.circuit.circuit import Circuit
from pathpatch.circuit.directions import directions_of
from pathpatch.circuit.faithfulness import faithfulness
from pathpatch.errors import InputError, listed
from pathpatch.patch.config import CORRUPTIONS, PatchConfig
from pathpatch.patch.cost import estimate
from pathpatch.patch.graph import ComputeGraph
from pathpatch.patch.schedule import memory_budget
from pathpatch.progress import duration
from pathpatch.report.reports import edge_list
from pathpatch.task.groups import AnyTask
from pathpatch.task.positions import Layout
from pathpatch.vocabulary import ABLATIONS, ATTRIBUTION_METHODS

if TYPE_CHECKING:
    from pathpatch.pipeline.config import DiscoverConfig

FAITHFUL = 0.8
CROSS = ("resample", "mean")  # corruptions that keep activations near the data: a circuit is measured under them always
COLUMNS = ("corruption", "gap", "faithfulness", "noise_faithfulness", "found_edges", "found_faithfulness",
           "found_noise_faithfulness", "added", "note")


def cross_check(circuit: Circuit, model: torch.nn.Module, task: AnyTask, config: PatchConfig, corruptions: tuple[str, ...]) -> pd.DataFrame:
    """Return the circuit's faithfulness both ways under each corruption, one row each (``COLUMNS``; the
    ``found_*`` and ``added`` columns are left for rediscoveries). A corruption that cannot run on this task
    (prompts of several lengths for ``resample``/``mean``, or no clean - corrupt gap) gets NaN and a note."""
    rows = []
    for corruption in corruptions:
        row = dict.fromkeys(COLUMNS, math.nan) | {"corruption": corruption, "added": "", "note": ""}
        try:
            f = faithfulness(circuit, model, task, replace(config, corruption=corruption, direction="noise"))
        except InputError as err:
            row["note"] = f"not measured: {_first_sentence(err)}"
        else:
            row.update(gap=f["clean_metric"] - f["corrupt_metric"], faithfulness=f["faithfulness"], noise_faithfulness=f["noise_faithfulness"])
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def second_look(model: torch.nn.Module, task: AnyTask, config: "DiscoverConfig", circuit: Circuit, faith: dict[str, float],
                budget: float, rediscover: "Callable[[DiscoverConfig], pd.DataFrame]", positions: Layout | None = None,
                ) -> tuple[pd.DataFrame, list[str]]:
    """Measure the circuit under ``CROSS``; when it is unfaithful under its own corruption, rediscover it exactly
    under every other corruption, and when only under one of ``CROSS``, under the first such (``rediscover(config)``
    returns the kept rows); each where its estimated time fits in what is left of ``budget`` seconds (the run's own
    time). The circuit is not changed.

    Returns:
        One row per other corruption (``COLUMNS``), and the doubts as sentences (none when it passes).
    """
    patch = config.patch_config()
    directions = (config.direction,) if config.method == "acdc" else directions_of(config.direction, config.both_directions, config.corruption)
    table = cross_check(circuit, model, task, patch, tuple(c for c in CROSS if c != config.corruption))
    if not suspect(faith, table):
        return table, doubts(faith, table, config, directions)
    if unfaithful(faith["faithfulness"], faith["noise_faithfulness"]):
        rest = tuple(c for c in CORRUPTIONS if c != config.corruption and c not in set(table["corruption"]))
        table = pd.concat([table, cross_check(circuit, model, task, patch, rest)], ignore_index=True)
        tries = list(table["corruption"])
    else:  # the circuit holds under its own corruption: rediscover under the first that it fails, to name the edges it misses
        tries = [next(r.corruption for r in table.itertuples() if unfaithful(r.faithfulness, r.noise_faithfulness))]
    graph = ComputeGraph.from_model(model)
    rows = graph.n_edges * (len(positions.labels) if positions is not None else 1)
    per_run = estimate(model, task, "exact", rows, config.steps, config.recheck, memory_budget(config.max_memory, next(model.parameters()).device))
    for i, corruption in enumerate(table["corruption"]):
        if corruption not in tries or math.isnan(table.loc[i, "faithfulness"]):  # NaN: it cannot run on this task (see its note)
            continue
        other = replace(config, method="exact", corruption=corruption, direction="noise" if corruption in ABLATIONS else config.direction)
        seconds = per_run.seconds * len(directions_of(other.direction, other.both_directions, corruption))
        if seconds > budget:
            table.loc[i, "note"] = f"not rediscovered: about {duration(seconds)} of exact scoring, more than the {duration(max(budget, 0))} left"
            continue
        started, found = time.perf_counter(), None
        try:
            kept = rediscover(other)
            found = Circuit.from_edges(kept, graph, circuit.model_name, circuit.task_name, {}, positions) if len(kept) else None
            f = faithfulness(found, model, task, other.patch_config()) if found is not None else None
        except InputError as err:
            table.loc[i, "note"], f = f"not rediscovered: {_first_sentence(err)}", None
        budget -= time.perf_counter() - started
        if f is not None:
            found_columns = ["found_edges", "found_faithfulness", "found_noise_faithfulness"]
            table.loc[i, found_columns] = [f["n_edges"], f["faithfulness"], f["noise_faithfulness"]]
            table.loc[i, "added"] = ";".join(sorted(set(found.scored_edges) - set(circuit.scored_edges)))
        elif not table.loc[i, "note"]:
            table.loc[i, "note"] = "rediscovered: no edge passes the threshold"
    return table, doubts(faith, table, config, directions)


def unfaithful(faith: float, noise_faith: float) -> bool:
    """Whether either faithfulness is below ``FAITHFUL`` (NaN, not measured, is not a failure)."""
    return any(value < FAITHFUL for value in (faith, noise_faith) if not math.isnan(value))


def suspect(faith: dict[str, float], table: pd.DataFrame) -> bool:
    """Whether the circuit fails a check: either faithfulness under its own corruption, or under another one."""
    return unfaithful(faith["faithfulness"], faith["noise_faithfulness"]) or any(
        unfaithful(r.faithfulness, r.noise_faithfulness) for r in table.itertuples())


def doubts(faith: dict[str, float], table: pd.DataFrame, config: "DiscoverConfig", directions: tuple[str, ...]) -> list[str]:
    """Return plain sentences on why the circuit is suspect and what to try (empty when it passes every check)."""
    found = [r for r in table.itertuples() if not unfaithful(r.found_faithfulness, r.found_noise_faithfulness)
             and not math.isnan(r.found_faithfulness)]
    if unfaithful(faith["faithfulness"], faith["noise_faithfulness"]):
        return [f"faithfulness is below {FAITHFUL} (the circuit alone recovers {faith['faithfulness']:.2f} of clean - corrupt, "
                f"corrupting only it loses {faith['noise_faithfulness']:.2f}), so the circuit is suspect; try "
                + "; ".join(_tries(config, directions, table, found))]
    failing = [r for r in table.itertuples() if r.corruption in CROSS and unfaithful(r.faithfulness, r.noise_faithfulness)]
    if not failing:
        return []
    measured = ", ".join(f"{r.corruption} {_both(r.faithfulness, r.noise_faithfulness)}" for r in failing)
    best = next((r for r in failing if r.corruption in {f.corruption for f in found}), failing[0])
    adds = f"; a {best.corruption} run also keeps {listed(edge_list(best.added), 6)}" if best.added else ""
    return [f"the {config.corruption} corruption may hide edges: it keeps some inputs the same that the circuit relies on, and under "
            f"{measured} (each a share of its own clean - corrupt) the circuit falls below {FAITHFUL}{adds}; rerun with "
            f"--corruption {best.corruption} to see them"]


def _both(faith: float, noise_faith: float) -> str:
    """The failing faithfulness values of one corruption, named."""
    parts = [f"{value:.2f} {what}" for value, what in ((faith, "alone"), (noise_faith, "corrupted")) if value < FAITHFUL]
    return "(" + ", ".join(parts) + ")"


def _tries(config: "DiscoverConfig", directions: tuple[str, ...], table: pd.DataFrame, found: list) -> list[str]:
    """What to try for an unfaithful circuit, best-supported first."""
    tries = [f"--corruption {r.corruption} (found {int(r.found_edges)} edges, faithfulness {r.found_faithfulness:.2f} alone, "
             f"{r.found_noise_faithfulness:.2f} corrupted)" for r in found]
    unusable = {r.corruption for r in table.itertuples() if r.note.startswith("not measured")}  # e.g. prompts of several lengths
    others = [c for c in CORRUPTIONS if c != config.corruption and c not in unusable]
    if not found and others:
        tries.append("another corruption (--corruption " + " or ".join(others) + ")")
    if len(directions) == 1 and config.method != "acdc":
        tries.append("both directions (drop --one-direction)" if config.corruption not in ABLATIONS
                     else "a corruption with a corrupt run (paired or resample), so that denoising runs too")
    tries.append(f"a lower --threshold (e.g. {config.threshold / 2:g})" if config.top_k is None else f"a larger --top-k (e.g. {2 * config.top_k})")
    if config.granularity == "component" and config.method != "acdc":
        tries.append("--granularity position (an edge at each position)")
    if config.method in ATTRIBUTION_METHODS:
        tries.append(f"a larger --recheck (now {config.recheck}) or --method exact")
    return tries


def _first_sentence(err: Exception) -> str:
    """An error's first sentence, without the ``Task 'name': `` prefix (for notes in a table)."""
    text = str(err).split("; ")[0].split(". ")[0]
    return text.split("': ", 1)[1] if text.startswith("Task '") and "': " in text else text


