"""``check(hypothesis, model=..., task=...)``: measure a hypothesis file's claims on a circuit, given or
discovered with the file's pinned settings, and return a ``CheckReport`` whose exit code CI can read.

A file whose claims need no circuit (attention, weights, neurons, structure) never runs discovery; one that
needs a circuit and names none discovers it with the file's settings, without the report a ``discover``
run writes.
"""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from pathpatch.circuit.circuit import Circuit
from pathpatch.claims.checks import NEEDS_CIRCUIT, ClaimResult, Context, check_claims
from pathpatch.claims.hypotheses import Hypothesis, flat_kinds, load_hypothesis
from pathpatch.errors import InputError
from pathpatch.patch.graph import ComputeGraph
from pathpatch.pipeline.config import DiscoverConfig, discover_config_of
from pathpatch.pipeline.discovery import find_circuit, load_run_task, model_label, resolve
from pathpatch.pipeline.results import CheckReport
from pathpatch.task.groups import AnyTask


def check(
    hypothesis: "Hypothesis | str | Path",
    model: "str | Path | torch.nn.Module | None" = None,
    task: "str | Path | AnyTask | None" = None,
    circuit: Circuit | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
    model_config: "str | Path | dict | None" = None,
    on_result: "Callable[[ClaimResult], None] | None" = None,
    force: bool = False,
) -> CheckReport:
    """Check every claim of a hypothesis; discover the circuit with the file's settings unless one is given
    or no claim needs one (only ``path`` and ``faithfulness`` claims read a circuit).

    Args:
        hypothesis: A ``Hypothesis`` or the path of a hypothesis TOML file.
        model: Overrides the file's ``model``: an object or any ``load_model`` spec.
        task: Overrides the file's ``task``: an object or any ``load_task`` spec.
        circuit: A circuit to check instead of discovering one.
        device: Torch device for models loaded from a spec.
        progress: Show progress bars.
        model_config: Config of a bare weights file (overrides the file's ``model_config``).
        on_result: Called with each claim's verdict as soon as it is measured.
        force: Check a given circuit found with other settings than the file pins (the report says which).

    Raises:
        InputError: A given circuit was found with other settings than the file's [method] (unless ``force``).
    """
    hypothesis = hypothesis if isinstance(hypothesis, Hypothesis) else load_hypothesis(hypothesis)
    config = discover_config_of(hypothesis, device)
    notes = _unpinned(circuit, config, force) if circuit is not None else ()
    model_spec = model if model is not None else hypothesis.model
    if model_config is None and model is None:  # the file's model_config goes with the file's model only
        model_config = hypothesis.model_config
    loaded, loaded_task = resolve(model_spec, task if task is not None else hypothesis.task, config, model_config)
    if model is not None or task is not None:
        hypothesis = replace(hypothesis, model=model_label(model_spec, loaded), task=loaded_task.name)
    if circuit is None and flat_kinds(hypothesis.claims) & NEEDS_CIRCUIT:
        circuit = find_circuit(loaded, loaded_task, config, name=hypothesis.model, progress=progress).circuit
    graph = ComputeGraph.from_model(loaded)
    theirs = graph if circuit is None else circuit.compute_graph
    if theirs != graph:  # layers, heads, MLPs and parallel blocks: the same graph, or the masks index other edges
        shape = lambda g: f"{g.n_layers}-layer, {g.n_heads}-head{', attention-only' if g.attn_only else ''}{', parallel' if g.parallel else ''}"  # noqa: E731
        raise InputError(f"The circuit is from a {shape(theirs)} model, but {hypothesis.model} is {shape(graph)}; "
                         "check a circuit discovered on the same model.")
    device_of = next(loaded.parameters()).device
    named = {name: _named_task(spec, name, loaded, config).to(device_of) for name, spec in hypothesis.tasks.items()}
    ctx = Context(loaded, loaded_task.to(device_of), circuit, graph, config.patch_config(), hypothesis.method["bootstrap"], config.seed, named)
    return CheckReport(hypothesis, check_claims(hypothesis, ctx, on_result), circuit, notes=notes)


def _named_task(spec: str, name: str, model: torch.nn.Module, config: DiscoverConfig) -> AnyTask:
    """One task of a hypothesis file's [tasks], loaded as its main task is and checked against the model."""
    try:
        return load_run_task(spec, model, config)
    except InputError as err:
        raise InputError(f"[tasks] {name} = {spec!r}: {err}") from None


def _unpinned(circuit: Circuit, config: DiscoverConfig, force: bool) -> tuple[str, ...]:
    """Settings a given circuit was found with that differ from the file's [method]; refused unless ``force``."""
    pinned = {"corruption": config.corruption, "direction": config.direction, "threshold": config.threshold,
              "relative": config.relative, "metric": config.metric, "task_corruption": config.task_corruption}
    differ = [f"{key} {circuit.info[key]!r} (the file pins {value!r})" for key, value in pinned.items()
              if value is not None and key in circuit.info and circuit.info[key] != value]
    if differ and not force:
        raise InputError(f"The circuit given was found with {', '.join(differ)}, so its verdicts would not be the file's; "
                         "discover it with the file's [method], or pass --force (force=True) to check it anyway (the report says so).")
    return tuple(f"the circuit was found with {d}" for d in differ)
