"""The ``pathpatch`` command line: parse arguments, check them, call the library, report.

Commands: ``models`` lists bundled models and tasks with their measured accuracy; ``train`` retrains a
seed model and writes its weights; ``demo`` loads a bundled model and scores its task; ``discover``
scores every edge, prunes to a circuit and writes scores, circuit, diagram and report; ``check``
measures a hypothesis file's claims; ``save`` writes a model as a checkpoint folder; ``draw`` renders
a saved circuit; ``lens`` takes a first look at a logit-difference task (direct logit attribution by
layer and head, the logit lens, the strongest heads' attention). Every command has ``--help``. This module is the only place that prints.

Errors: every failure is one line on stderr, ``pathpatch <command>: error: <what was wrong and the
fix>``, and no traceback unless ``--verbose`` or ``--debug``: either prints the traceback, then the line,
and the exit code stays the same (``--verbose`` also logs progress details). Exit codes: 0 done; 1 a claim failed (``check``) or a trained model missed its target
(``train``); 4 no claim failed but some were inconclusive (their 95% interval straddles the bound); 2 bad input (arguments, files, devices, sizes, out of memory, a folder that cannot be
written); 3 an unexpected internal error; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).

Preflight, before any model is loaded: ``--device`` must exist on this machine (``check_device``);
``--n`` is at most ``MAX_PROMPTS`` and ``--steps`` at most ``MAX_STEPS``; an output folder must be
writable by pathpatch (``files.claim_folder``). Before ``discover`` runs, the activations it caches are
estimated (``memory_estimate``) and checked against the memory the device has available.

Output folders (``discover --out``, ``check --out``, ``lens --out``, ``save``) are written whole or not at all
(``files.output_folder``); an earlier pathpatch run in the folder is replaced, including anything
nested in it (``make demo`` writes ``out/permute/check`` again after replacing ``out/permute``).
"""

import argparse
import os
import json
import math
from dataclasses import replace
import logging
import re
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pathpatch import __version__
from pathpatch.errors import InputError
from pathpatch.settings import CORRUPTIONS, DEFAULT_CORRUPTION, DEFAULT_THRESHOLD

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM
MAX_PROMPTS = 1_000_000  # --n and a hypothesis file's n: beyond this, generating the prompts alone takes gigabytes
MAX_STEPS = 1_000  # EAP-IG --steps: published runs use 5-100; each step is one more batch through the backward pass
MAX_BOOTSTRAP = 100_000  # a hypothesis file's bootstrap resamples
LENS_BOOTSTRAP = 200  # `lens`: resamples of prompts for the 95% intervals, as a hypothesis file's default
MODEL_HELP = ("a bundled name, a TransformerLens checkpoint folder (config.json + model.safetensors or .pt), a weights file "
              "with --config, a Hugging Face folder, or file.py:function (runs that file)")
TASK_HELP = "a bundled task name, prompts as .jsonl, EAP-IG .csv or auto-circuit .json, or file.py:function"
EPILOG = ("exit codes: 0 ok, 1 a claim failed (check) or a model missed its target (train), 2 bad input, 3 internal error, "
          "4 no claim failed but some were inconclusive (check), "
          "130 interrupted. Errors are one line; --verbose or --debug adds the traceback (same exit code).")


class Terminated(BaseException):
    """SIGTERM, raised where the process is so that output folders are cleaned up as on Ctrl-C."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see `{self.prog} --help`.\n")


def cmd_models(args: argparse.Namespace) -> int:
    """Print the bundled models and tasks as a table."""
    from pathpatch.models.planted_zoo import PLANTED
    from pathpatch.models.zoo import SEEDS, TASK_ONLY, TASK_SUMMARIES, read_card

    rows = []
    for name, spec in SEEDS.items():
        try:
            metrics = read_card(name)["metrics"]
            measured = f"mse {metrics['mse']:.5f}" if spec.continuous else f"accuracy {metrics['accuracy']:.3f}"
        except FileNotFoundError:
            measured = "not trained"
        target = f"mse <= {spec.target}" if spec.continuous else f">= {spec.target}"
        rows.append((name, spec.document, measured, target, spec.summary))
    for name in TASK_ONLY:
        source, summary = TASK_SUMMARIES[name]
        rows.append((name, source, "task only", "-", summary))
    for name, planted in PLANTED.items():
        rows.append((name, "-", "hand-set", "exact", f"{planted.summary}; true edges: {', '.join(planted.edges)}"))
    widths = [max(len(r[i]) for r in rows + [("name", "doc", "measured", "target", "")]) for i in range(4)]
    header = ("name", "doc", "measured", "target", "task / circuit")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """Train one or all seed models; write weights that meet their target over the bundled ones, others beside them."""
    from pathpatch.models.training import train_seed
    from pathpatch.models.zoo import SEEDS, get_seed, meets_target, save_bundled

    if args.steps is not None:
        bounded("--steps", args.steps, 1, 10**9, "training steps, e.g. --steps 3000")
    device = check_device(args.device)
    out = _out_dir(args.out) if args.out is not None else None
    specs = [get_seed(name) for name in (list(SEEDS) if args.name == "all" else [args.name])]
    below = []
    for spec in specs:
        model, card = train_seed(spec, steps=args.steps, device=device, progress=_progress())
        ok = meets_target(spec, card["metrics"])
        path = save_bundled(spec.name, model, card, out, below_target=not ok)
        print(f"{spec.name}: {card['metrics']} (target {spec.target}) -> {path}{'' if ok else '  BELOW TARGET'}")
        if not ok:
            below.append(f"{spec.name} (written to {path})")
    if below:
        _error(args, f"{', '.join(below)} missed the target, so the earlier weights were kept; train longer (--steps) "
                     "or fix the recipe, then copy the .below-target files over the weights if you want them anyway.")
    return EXIT_FAIL if below else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Load a bundled model, measure it on fresh data, and score its task clean vs corrupt."""
    bounded("--n", args.n, 1, MAX_PROMPTS, "prompts, e.g. --n 64")
    device = check_device(args.device)
    import torch

    from pathpatch.models import build_task, load_model
    from pathpatch.models.zoo import evaluate, get_seed

    spec = get_seed(args.model)
    model = load_model(args.model, device=device)
    print(f"{spec.name} (document {spec.document}): {spec.summary}")
    print(f"fresh-data metrics: {evaluate(model, spec)}")
    task = build_task(spec.name, n=args.n, seed=args.seed)
    task.check_model(model)
    with torch.no_grad():
        clean = task.score(model(task.clean.to(device))).item()
        corrupt = task.score(model(task.corrupt.to(device))).item()
    print(f"task {task.name}: {task.metric} clean {clean:.3f}, corrupt {corrupt:.3f} (corruption: {task.corruption})")
    return EXIT_OK


def cmd_discover(args: argparse.Namespace) -> int:
    """Score edges, prune to a circuit, measure faithfulness, and write all outputs to ``--out``."""
    from pathpatch.files import claim_folder

    out = _out_dir(args.out)
    if args.n is not None:
        bounded("--n", args.n, 1, MAX_PROMPTS, "prompts, e.g. --n 64")
    bounded("--steps", args.steps, 1, MAX_STEPS, "EAP-IG interpolation steps, e.g. --steps 10")
    device = check_device(args.device)
    claim_folder(out, args.force)
    _check_input_size(args.task, "prompt")

    from pathpatch.pipeline import DiscoverConfig, EmptyCircuitError, discover, model_label, resolve

    config = DiscoverConfig(
        method=args.method, corruption=args.corruption, direction=args.direction, both_directions=not args.one_direction,
        cross_check=not args.no_cross_check, threshold=args.threshold, relative=not args.absolute, metric=args.metric,
        top_k=args.top_k, n=args.n, seed=args.seed, device=device,
        steps=args.steps, task_corruption=args.task_corruption, granularity=args.granularity, recheck=args.recheck,
        max_memory=_max_memory(args.max_memory),
    )
    from pathpatch.discovery.distributed import close, init_from_env, local_device, world

    init_from_env(device)
    config = replace(config, device=local_device(device))
    model, task = resolve(args.model, args.task, config, args.config)
    check_memory(model, task, config)
    try:
        result = discover(model, task, config, progress=_progress() and world()[0] == 0, model_name=model_label(args.model, model))
    except EmptyCircuitError as err:  # keep the scores: they say what to try next
        if world()[0] == 0:
            err.args = (f"{err} (every score is in {err.write(out, force=args.force, command=args.command_line)})",)
        close()
        raise
    if world()[0] != 0:  # every rank computed the same result; rank 0 writes and prints
        close()
        return EXIT_OK
    close()
    paths, message = result.write(out, force=args.force, command=args.command_line)
    print(result.summary())
    for label, path in paths.items():
        print(f"  {label}: {path}")
    print(f"  {message}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Check a hypothesis file; exit 0 when every claim passes, 1 when any fails."""
    from pathpatch.files import claim_folder
    from pathpatch.graphs.circuit import from_json
    from pathpatch.graphs.claim_reference import explain
    from pathpatch.graphs.hypotheses import load_hypothesis

    if args.explain is not None:
        print(explain(args.explain or None))
        return EXIT_OK
    if args.hypotheses is None:
        raise InputError("check needs a hypothesis file, e.g. pathpatch check hypotheses/permute.toml (or --explain for the claim kinds).")
    out = _out_dir(args.out) if args.out is not None else None
    device = check_device(args.device)
    if out is not None:
        claim_folder(out, args.force)
    hypothesis = load_hypothesis(args.hypotheses)
    if hypothesis.method["n"] is not None:
        bounded("n", hypothesis.method["n"], 1, MAX_PROMPTS, "n = 64 in the file's [method]")
    bounded("bootstrap", hypothesis.method["bootstrap"], 1, MAX_BOOTSTRAP, "bootstrap = 200 in the file's [method]")
    _check_input_size(args.task, "prompt")
    circuit = from_json(args.circuit) if args.circuit else None
    if circuit is not None:
        _check_circuit_model(args, circuit, args.model if args.model is not None else hypothesis.model)

    from pathpatch.pipeline import check

    measured = []

    def show(result) -> None:  # each verdict as it is measured, so a long check shows where it is
        measured.append(result)
        bound = "reported" if result.op == "report" else f"{result.op} {result.threshold:g}"
        print(f"[{len(measured)}/{len(hypothesis.claims)}] {result.verdict.upper()}: {result.name} ({result.kind}) = {result.value:.4g} "
              f"[{result.ci_low:.4g}, {result.ci_high:.4g}] {bound}", file=sys.stderr, flush=True)

    try:
        report = check(hypothesis, model=args.model, task=args.task, circuit=circuit, device=device,
                       progress=_progress(), model_config=args.config, on_result=show, force=args.force)
    except (KeyboardInterrupt, Terminated):
        if out is not None and measured:  # keep the verdicts already measured, marked incomplete
            from pathpatch.graphs.checks import results_table
            from pathpatch.pipeline import CheckReport

            CheckReport(hypothesis, results_table(measured), circuit, complete=False).write(out, force=args.force, command=args.command_line)
            print(f"interrupted: {len(measured)} verdicts written to {out}", file=sys.stderr)
        raise
    unmeasured = report.table.loc[report.table["value"].isna(), "name"].tolist()
    if unmeasured:
        raise InputError(f"claims {unmeasured} measured NaN, so they can be neither passed nor failed (clean and corrupt "
                         "give the same metric, or the metric is not finite); fix the task or metric. Nothing was written.")
    print(report.text())
    if args.baseline:
        _check_input_size(args.baseline, "baseline")
        print("\nchanges since baseline:")
        print(report.compare(Path(args.baseline)).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if out is not None:
        paths, message = report.write(out, force=args.force, command=args.command_line)
        for label, path in paths.items():
            print(f"  {label}: {path}")
        print(f"  {message}")
    return report.exit_code


def _check_circuit_model(args: argparse.Namespace, circuit, model_spec: str) -> None:
    """Refuse a circuit recorded for another model than the one it is checked on (a warning with --force).

    Its shape is compared once the model is loaded (``pipeline.check``).
    """
    from pathpatch.pipeline import model_label

    name = model_label(model_spec, None)
    if circuit.model_name == name:
        return
    message = (f"--circuit {args.circuit} was found on model {circuit.model_name!r}, but it is checked on {name!r}; "
               "discover the circuit on this model, or pass --force if the two are the same model")
    if not args.force:
        raise InputError(message + ".")
    logging.getLogger(__name__).warning("%s (--force: checking anyway).", message.split("; ")[0])


def cmd_save(args: argparse.Namespace) -> int:
    """Load a model from any spec and write it as a TransformerLens checkpoint folder."""
    from pathpatch.files import claim_folder, output_folder

    out = _out_dir(args.out, "the folder to write, e.g. pathpatch save --model M out/my_model")
    claim_folder(out, args.force)
    from pathpatch.models.checkpoint import save_model
    from pathpatch.models.loading import load_model

    model = load_model(args.model, device="cpu", config=args.config)
    with output_folder(out, args.command_line, __version__, args.force) as tmp:
        save_model(model, tmp)
    print(f"saved {args.model} -> {out}")
    return EXIT_OK


def cmd_patch(args: argparse.Namespace) -> int:
    """Activation patching of the named activations: CSV tables, PNG heatmaps and report.html in ``--out``."""
    from pathpatch.files import claim_folder, output_folder

    out = _out_dir(args.out)
    acts = [a.strip() for a in args.what.split(",") if a.strip()]
    device = check_device(args.device)
    if args.n is not None:
        bounded("--n", args.n, 1, MAX_PROMPTS, "prompts, e.g. --n 64")
    claim_folder(out, args.force)
    from pathpatch.discovery.activation import ACTS, absent_acts, activation_patch
    from pathpatch.discovery.config import PatchConfig
    from pathpatch.graphs.plots import figure_png, patching_heatmap, patching_table, str_tokens
    from pathpatch.pipeline import DiscoverConfig, model_label, resolve
    from pathpatch.reports import patch_html

    unknown = [a for a in acts if a not in ACTS]
    if unknown or not acts:
        raise InputError(f"--what {args.what!r}: unknown activations {unknown or 'none given'}; choose from {', '.join(ACTS)}.")
    model, task = resolve(args.model, args.task, DiscoverConfig(n=args.n, seed=args.seed, device=device, task_corruption=args.task_corruption),
                          args.config)
    skipped = [a for a in acts if a in absent_acts(model)]  # e.g. mlp_out of an attention-only model
    if len(skipped) == len(acts):
        raise InputError(f"--what {args.what!r}: the model has none of these activations (attention-only models have no resid_mid or "
                         "mlp_out); patch resid_pre, attn_out or a head activation (z, q, k, v, pattern), e.g. --what resid_pre,attn_out,z.")
    if skipped:
        print(f"pathpatch patch: note: skipping {', '.join(skipped)}: the model has no such activation (it has no MLPs)", file=sys.stderr)
        acts = [a for a in acts if a not in skipped]
    config = PatchConfig(direction=args.direction, corruption=args.corruption, seed=args.seed, progress=_progress())
    _say_patch_cost(model, task, acts, not args.no_positions)
    tokens = str_tokens(model, task)
    heatmaps, tables = {}, {}
    for act in acts:
        result = activation_patch(model, task, act, per_pos=not args.no_positions, config=config)
        tables[act] = patching_table(result, act, tokens)
        heatmaps[act] = figure_png(patching_heatmap(result, act, tokens, title=f"{act}: {args.direction} patching, normalized"))
    name = model_label(args.model, model)
    settings = {"model": name, "task": task.name, "what": ",".join(acts), "direction": args.direction, "corruption": args.corruption,
                "per position": not args.no_positions, "seed": args.seed}
    if skipped:
        settings["skipped (not in the model)"] = ",".join(skipped)
    with output_folder(out, args.command_line, __version__, args.force) as tmp:
        for act in acts:
            tables[act].to_csv(tmp / f"{act}.csv", index=False)
            (tmp / f"{act}.png").write_bytes(heatmaps[act])
        (tmp / "report.html").write_text(patch_html(f"Activation patching: {name} / {task.name}", heatmaps, tables, settings))
    print(f"{name} / {task.name}: patched {', '.join(acts)} -> {out} ({', '.join(f'{a}.csv, {a}.png' for a in acts)}, report.html)")
    return EXIT_OK


def _say_patch_cost(model, task, acts: list[str], per_pos: bool) -> None:
    """Log how long activation patching of ``acts`` will take when it is more than a minute (from a timed forward)."""
    from pathpatch.discovery.activation import index_axes
    from pathpatch.discovery.cost import announce, estimate
    from pathpatch.discovery.runner import memory_budget
    from pathpatch.models.tasks import task_groups

    sizes = {"layer": model.cfg.n_layers, "head": model.cfg.n_heads, "pos": max(g.clean.shape[1] for g in task_groups(task))}
    rows = sum(math.prod(sizes.get(axis, 1) for axis in index_axes(act, per_pos)) for act in acts)
    planned = estimate(model, task, "activation", rows, 1, 0, memory_budget(None, next(model.parameters()).device))
    announce(planned, f"{rows:,} patched activations")


def cmd_lens(args: argparse.Namespace) -> int:
    """Direct logit attribution and the logit lens: CSV tables, PNG figures, report.md and report.html in ``--out``."""
    from pathpatch.files import claim_folder, output_folder

    out = _out_dir(args.out)
    if args.n is not None:
        bounded("--n", args.n, 1, MAX_PROMPTS, "prompts, e.g. --n 64")
    bounded("--top", args.top, 1, 50, "heads whose attention is drawn, e.g. --top 3")
    device = check_device(args.device)
    claim_folder(out, args.force)
    _check_input_size(args.task, "prompt")
    from pathpatch.discovery.lens import first_look
    from pathpatch.pipeline import DiscoverConfig, model_label, resolve
    from pathpatch.reports import lens_html, lens_markdown

    model, task = resolve(args.model, args.task, DiscoverConfig(n=args.n, seed=args.seed, device=device, task_corruption=args.task_corruption),
                          args.config)
    look = first_look(model, task, progress=_progress())
    kinds, resamples = ("embed", "attn", "mlp", "bias"), LENS_BOOTSTRAP
    tables = {"logit_diff": look.logit_diff, "dla": look.dla_table(kinds, resamples, args.seed),
              "heads": look.dla_table(("head",), resamples, args.seed), "lens": look.lens_table(resamples, args.seed)}
    name = model_label(args.model, model)
    pngs = _lens_figures(model, task, tables, args.top, f"{name} / {task.name}")
    csvs = {"logit_diff.csv": tables["logit_diff"], "dla.csv": tables["dla"], "dla_heads.csv": tables["heads"],
            "logit_lens.csv": tables["lens"], "dla_per_prompt.csv": look.dla, "logit_lens_per_prompt.csv": look.lens}
    settings = {"model": name, "task": task.name, "prompts": len(look.logit_diff), "seed": args.seed, "bootstrap": resamples, "pathpatch": __version__}
    files = [*csvs, *pngs, "report.md", "report.html"]
    title = f"First look: {name} / {task.name}"
    with output_folder(out, args.command_line, __version__, args.force) as tmp:
        for file, table in csvs.items():
            table.to_csv(tmp / file, index=False)
        for file, (_, png) in pngs.items():
            (tmp / file).write_bytes(png)
        (tmp / "report.md").write_text(lens_markdown(title, tables, settings, files))
        (tmp / "report.html").write_text(lens_html(title, tables, {caption: png for caption, png in pngs.values()}, settings))
    ld = look.logit_diff
    print(f"{name} / {task.name}: logit difference clean {ld['clean'].mean():.4g}, corrupt {ld['corrupt'].mean():.4g} over {len(ld)} prompts "
          f"-> {out} ({', '.join(files)})")
    return EXIT_OK


def _lens_figures(model, task, tables: dict, top: int, label: str) -> dict[str, tuple[str, bytes]]:
    """File name -> (caption, PNG) of the lens figures: DLA by head and by layer, the logit lens, and the attention
    patterns of the ``top`` most positive and most negative heads (on the largest group of same-length prompts)."""
    from pathpatch.graphs.plots import attention_patterns, dla_heads_heatmap, figure_png, series_figure
    from pathpatch.models.tasks import task_groups

    lens, dla, heads = tables["lens"], tables["dla"], tables["heads"]
    own = lens[["own_mean", "own_ci_low", "own_ci_high"]].set_axis(["mean", "ci_low", "ci_high"], axis=1)
    figures = {
        "dla_heads.png": ("Direct logit attribution by head", dla_heads_heatmap(heads, f"Direct logit attribution by head: {label}")),
        "dla.png": ("Direct logit attribution by layer", series_figure(dla["component"].tolist(), {"DLA": dla}, "logit difference",
                                                  f"Direct logit attribution by layer: {label}")),
        "logit_lens.png": ("Logit lens", series_figure(lens["after"].tolist(), {"final scale (document 001)": lens, "own scale": own},
                                                       "logit difference", f"Logit lens: {label}")),
    }
    group = max(task_groups(task), key=lambda g: g.clean.shape[0])
    ranked = heads.sort_values("mean", ascending=False)
    for sign, chosen in (("positive", ranked[ranked["mean"] > 0].head(top)), ("negative", ranked[ranked["mean"] < 0].tail(top)[::-1])):
        if len(chosen):
            caption = f"Attention of the {len(chosen)} most {sign} head{'s' if len(chosen) > 1 else ''} ({', '.join(chosen['component'])})"
            figures[f"attention_{sign}.png"] = (caption, attention_patterns(model, group, chosen["component"].tolist()))
    return {file: (caption, figure_png(fig)) for file, (caption, fig) in figures.items()}


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a circuit file between pathpatch's and the peers' formats (EAP-IG/MIB, Edge Pruning, auto-circuit)."""
    from pathpatch.graphs.interop import convert

    written = convert(Path(args.src), Path(args.dest), src_format=args.src_format, dest_format=args.dest_format,
                      n_layers=args.n_layers, n_heads=args.n_heads, attn_only=args.attn_only or None, d_model=args.d_model)
    print(f"{args.src} -> {written}")
    return EXIT_OK


def cmd_draw(args: argparse.Namespace) -> int:
    """Render a saved circuit JSON as a Graphviz diagram."""
    from pathpatch.files import register_files
    from pathpatch.graphs.circuit import from_json
    from pathpatch.graphs.export import write_diagram

    if not args.output.strip():
        raise InputError("-o/--output is empty; give the diagram's file name, e.g. -o circuit.svg.")
    output = Path(args.output)
    circuit = from_json(args.circuit)
    path, message = write_diagram(circuit, output)
    register_files(output.parent, sorted({output.with_suffix(".dot").name, path.name}))
    print(message)
    return EXIT_OK


def _out_dir(value: str, example: str = "the folder to write into, e.g. --out out/run1") -> Path:
    """Return an output folder argument as a path; an empty value would write into the working directory."""
    if not value.strip():
        raise InputError(f"--out is empty ({value!r}); give {example}.")
    return Path(value)


def _progress() -> bool:
    """Progress bars only when a person watches a terminal."""
    return sys.stderr.isatty()


def _check_input_size(spec: str | None, what: str) -> None:
    """Refuse an input file over ``files.MAX_INPUT_BYTES`` before anything parses it."""
    from pathpatch.files import check_size

    if spec and Path(spec).is_file():
        check_size(Path(spec), what)


def workers_count(text: str) -> int:
    """An argparse type: a number of worker processes, 1 up to this machine's CPU cores."""
    cores = os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of processes; give 1 to {cores}") from None
    if not 1 <= value <= cores:
        raise argparse.ArgumentTypeError(f"{value} processes on a machine with {cores} CPU cores; give 1 to {cores}")
    return value


def finite_float(text: str) -> float:
    """An argparse type: a finite number (NaN and infinities would compare true or false with everything)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give e.g. 0.05")
    return value


def bounded(flag: str, value: int, low: int, high: int, example: str) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``; else raise ValueError naming the flag and the bound."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{flag} {value!r} is out of range; give an integer from {low} to {high:,} ({example}).")
    return value


def _max_memory(gigabytes: float | None) -> float | None:
    """Bytes of a ``--max-memory`` given in GB; refuse a value that is not positive and finite."""
    if gigabytes is None:
        return None
    if not math.isfinite(gigabytes) or gigabytes <= 0:
        raise InputError(f"--max-memory {gigabytes:g}; give a positive number of gigabytes, e.g. --max-memory 3.")
    return gigabytes * 1e9


def check_device(value: str) -> str:
    """Return ``value`` as a torch device string if this machine has that device; else raise ValueError naming the fix.

    Used by every command that takes ``--device``, before anything is loaded.
    """
    import torch

    try:
        device = torch.device(value.strip())
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"--device {value!r} is not a torch device; use cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA support"
            raise InputError(f"--device {value!r}: no CUDA GPU is usable on this machine (torch {torch.__version__}, built with {build}); "
                             "use --device cpu.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"--device {value!r}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1}); "
                             "pick one of them.")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"--device {value!r}: Apple's MPS backend is not available on this machine; use --device cpu.")
    elif device.type != "cpu":
        raise InputError(f"--device {value!r}: pathpatch runs on cpu, cuda, cuda:N or mps, not {device.type}.")
    return str(device)


def memory_estimate(model, task, config) -> int:
    """Return the bytes of activations a discovery run holds at once (the largest prompt group).

    Every source's output is cached for the clean and the corrupt run: prompts x positions x d_model x
    2 x sources. EAP/EAP-IG also keep, for the backward pass, every layer's activations of ``steps``
    stacked copies of the prompts (``runner.layer_floats``, as the variant chunks count them). Bytes per value
    follow the model's dtype.
    """
    import torch

    from pathpatch.discovery.runner import layer_floats
    from pathpatch.models.tasks import task_groups

    cfg = model.cfg
    sources = 1 + cfg.n_layers * (cfg.n_heads + (0 if cfg.attn_only else 1))
    width = getattr(cfg, "dtype", torch.float32).itemsize
    largest = 0
    for group in task_groups(task):
        batch, pos = group.clean.shape[:2]
        per_prompt = 2 * sources * pos * cfg.d_model
        if config.method in ("eap", "eap-ig"):
            per_prompt += (config.steps if config.method == "eap-ig" else 1) * cfg.n_layers * layer_floats(cfg, pos, cfg.n_heads)
        largest = max(largest, width * batch * per_prompt)
    return largest


def available_memory(device: str) -> tuple[int, str]:
    """Return the bytes free for activations on ``device`` and where they are: CUDA's free memory, else the
    system's available RAM (``/proc/meminfo`` MemAvailable, or physical memory)."""
    import os

    import torch

    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"{device} has"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "this machine has"
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine has"


def check_memory(model, task, config) -> None:
    """Raise ValueError, with the estimate, when a discovery run's activations cannot fit in available memory.

    Attribution runs in chunks that follow the memory budget, so only exact methods are checked.
    """
    from pathpatch.models.tasks import n_prompts

    if config.method in ("eap", "eap-ig"):
        return
    need = memory_estimate(model, task, config)
    free, where = available_memory(config.device)
    if need > free:
        steps = f" x {config.steps} EAP-IG steps" if config.method == "eap-ig" else ""
        backward = ", plus backward activations for attribution" if config.method in ("eap", "eap-ig") else ""
        raise InputError(f"{n_prompts(task):,} prompts{steps} need about {need / 2**30:.1f} GiB of activations (prompts x positions "
                         f"x d_model x sources x 2{backward}), but {where} {free / 2**30:.1f} GiB available; use fewer prompts (--n)"
                         f"{', fewer --steps, or --method exact' if backward else ''}.")


def add_model_and_task(p: argparse.ArgumentParser) -> None:
    """The options naming a run's model and task (discover, patch)."""
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--config", default=None, help="config.json (HookedTransformerConfig fields) of a bare weights file given as --model")
    p.add_argument("--task", default=None, help=TASK_HELP + " (default: a bundled model's own task)")
    p.add_argument("--task-corruption", default=None, help="corruption a bundled task generates (e.g. values or pointers for permute)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with one sub-command per stage (without importing TransformerLens)."""
    from pathpatch.models.seeds import SEED_NAMES as SEEDS

    common = argparse.ArgumentParser(add_help=False)  # so that --verbose/--debug may also follow the command
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress details; show tracebacks")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show errors' tracebacks (same exit codes)")
    parser = Parser(prog="pathpatch", description="Automated circuit discovery on TransformerLens models.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"pathpatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details; show tracebacks of errors")
    parser.add_argument("--debug", action="store_true", help="show errors' full tracebacks (same exit codes)")
    parser.add_argument("--workers", type=workers_count, default=1,
                        help="shard patched variants over N processes (torchrun; gloo on CPU, NCCL on GPUs), 1 to the CPU cores")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = lambda name, help: sub.add_parser(name, help=help, parents=[common], epilog=EPILOG)
    force_help = "write into a folder that holds files pathpatch did not write (they are kept)"

    p = add("models", "list bundled models and tasks with measured accuracy")
    p.set_defaults(func=cmd_models)

    p = add("train", "train a seed model on CPU and write its weights into the package")
    p.add_argument("name", choices=[*SEEDS, "all"], help="seed model to train, or 'all'")
    p.add_argument("--steps", type=int, default=None, help="training steps, a positive integer (default: the seed's recipe)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--out", default=None, help="folder for weights and card (default: the package's weights/); a model "
                                               "below its target is written as NAME.below-target.* instead")
    p.set_defaults(func=cmd_train)

    p = add("demo", "load a bundled model and score its task, clean vs corrupt")
    p.add_argument("--model", default="permute", choices=list(SEEDS), help="bundled model (default: permute)")
    p.add_argument("--n", type=int, default=64, help=f"prompts in the task, 1..{MAX_PROMPTS:,} (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.set_defaults(func=cmd_demo)

    p = add("discover", "find a circuit: score edges, prune, measure faithfulness, export")
    add_model_and_task(p)
    p.add_argument("--method", default="exact", choices=["exact", "eap", "eap-ig", "acdc"], help="edge scoring (default exact; acdc: greedy, threshold is tau)")
    p.add_argument("--direction", default="noise", choices=["noise", "denoise"],
                   help="primary direction, whose effects fill score/normalized: noise patches corrupt into clean (default); denoise clean into corrupt")
    p.add_argument("--one-direction", action="store_true", help="score edges in --direction only (default: both directions, keeping "
                   "an edge that passes in either; about half the scoring time)")
    p.add_argument("--no-cross-check", action="store_true", help="skip measuring the circuit under the other corruptions (and "
                   "rediscovering with them when it is suspect)")
    p.add_argument("--corruption", default=DEFAULT_CORRUPTION, choices=CORRUPTIONS, help="what cut edges carry")
    p.add_argument("--threshold", type=finite_float, default=DEFAULT_THRESHOLD, help="keep edges with |normalized score| >= this (default 0.05)")
    p.add_argument("--absolute", action="store_true", help="read --threshold in metric units, not as a share of clean - corrupt")
    p.add_argument("--metric", default=None, choices=["logit_diff", "loss", "accuracy", "kl", "mse"], help="override the task's metric")
    p.add_argument("--top-k", type=int, default=None, help="keep the k strongest edges instead of a threshold (k >= 1)")
    p.add_argument("--granularity", default="component", choices=["component", "position"],
                   help="component: an edge over all positions (default); position: an edge at each position label, e.g. L0H0->L1H0.v@END")
    p.add_argument("--steps", type=int, default=10, help=f"EAP-IG interpolation steps, 1..{MAX_STEPS} (default 10)")
    p.add_argument("--recheck", type=int, default=50, help="eap/eap-ig: re-score this many of the strongest attributed edges exactly (default 50)")
    p.add_argument("--max-memory", type=finite_float, default=None, help="activation memory budget in GB; runs chunk to stay within it "
                   "(default: 1.5 GB on CPU, half the free memory on a GPU)")
    p.add_argument("--n", type=int, default=None, help=f"prompts, 1..{MAX_PROMPTS:,} (default: 64 generated, or every prompt of a file)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", required=True, help="output folder (scores.csv, circuit.json, circuit.svg, report.md), replaced whole")
    p.add_argument("--force", action="store_true", help=force_help)
    p.set_defaults(func=cmd_discover)

    p = add("check", "check a hypothesis file; exit 0 all pass, 1 any fail, 4 none fails but some are inconclusive, 2 bad input")
    p.add_argument("hypotheses", nargs="?", default=None, help="hypothesis TOML file (see hypotheses/*.toml)")
    p.add_argument("--explain", nargs="?", const="", default=None, metavar="KIND",
                   help="print every claim kind with an example line (or one KIND's keys and rules), and exit")
    p.add_argument("--circuit", default=None, help="circuit JSON to check (default: discover one with the file's settings)")
    p.add_argument("--baseline", default=None, help="a check.json from an earlier run: report what moved")
    p.add_argument("--model", default=None, help="override the file's model: " + MODEL_HELP)
    p.add_argument("--config", default=None, help="config.json of a bare weights file given as the model")
    p.add_argument("--task", default=None, help="override the file's task: " + TASK_HELP)
    p.add_argument("--out", default=None, help="folder for check.json, check.md, circuit.json and the diagram, replaced whole")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--force", action="store_true", help=force_help + "; check a --circuit recorded for a model of another name")
    p.set_defaults(func=cmd_check)

    p = add("save", "write any model as a TransformerLens checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--config", default=None, help="config.json of a bare weights file given as --model")
    p.add_argument("--force", action="store_true", help=force_help)
    p.add_argument("out", help="folder to write, replaced whole")
    p.set_defaults(func=cmd_save)

    p = add("patch", "activation patching: CSV tables, layer x position / layer x head heatmaps and report.html")
    add_model_and_task(p)
    p.add_argument("--what", default="resid_pre,attn_out,mlp_out,z", help="comma-separated activations (resid_pre, attn_out, mlp_out, z, v, pattern, ...)")
    p.add_argument("--direction", default="noise", choices=["noise", "denoise"],
                   help="noise: patch corrupt into clean (default, as discover); denoise: clean into corrupt (TransformerLens' patching helpers)")
    p.add_argument("--corruption", default=DEFAULT_CORRUPTION, choices=CORRUPTIONS, help="what patched-out activations carry")
    p.add_argument("--no-positions", action="store_true", help="patch each layer (and head) over all positions at once")
    p.add_argument("--n", type=int, default=None, help="prompts (default: 64 generated, or every prompt of a file)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", required=True, help="output folder, replaced whole")
    p.add_argument("--force", action="store_true", help=force_help)
    p.set_defaults(func=cmd_patch)

    p = add("lens", "first look: logit difference, direct logit attribution by layer and head, logit lens, top heads' attention")
    add_model_and_task(p)
    p.add_argument("--n", type=int, default=None, help=f"prompts, 1..{MAX_PROMPTS:,} (default: 64 generated, or every prompt of a file)")
    p.add_argument("--seed", type=int, default=0, help="data and bootstrap seed (default 0)")
    p.add_argument("--top", type=int, default=3, help="draw the attention of this many most positive and most negative heads (default 3)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", required=True, help="output folder (CSV tables, PNG figures, report.md, report.html), replaced whole")
    p.add_argument("--force", action="store_true", help=force_help)
    p.set_defaults(func=cmd_lens)

    p = add("convert", "convert a circuit file: pathpatch JSON/scores.csv, EAP-IG/MIB .json/.pt, Edge Pruning edges.json, auto-circuit names")
    p.add_argument("src", help="file to read")
    p.add_argument("dest", help="file to write (format from its name unless --to)")
    p.add_argument("--from", dest="src_format", default=None, help="format of src: pathpatch, scores, eap-json, eap-pt, edge-pruning, auto-circuit")
    p.add_argument("--to", dest="dest_format", default=None, help="format of dest (same names)")
    p.add_argument("--n-layers", type=int, default=None, help="model shape, for formats that do not record it")
    p.add_argument("--n-heads", type=int, default=None, help="model shape, for formats that do not record it")
    p.add_argument("--attn-only", action="store_true", help="the model has no MLPs")
    p.add_argument("--d-model", type=int, default=None, help="d_model recorded in EAP-IG's cfg")
    p.set_defaults(func=cmd_convert)

    p = add("draw", "draw a saved circuit with Graphviz (.dot always, .svg/.png with dot)")
    p.add_argument("circuit", help="circuit JSON written by `pathpatch discover`")
    p.add_argument("-o", "--output", default="circuit.svg", help="output file: .svg, .png, .pdf or .dot (default circuit.svg)")
    p.set_defaults(func=cmd_draw)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit code (see the module docstring: 0 ok, 1 failed claim, 2 bad input)."""
    if argv is None and WORKER_ARGV in os.environ and _launched():  # a rank started by --workers
        argv = json.loads(os.environ[WORKER_ARGV])
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("pathpatch.progress").setLevel(logging.INFO)  # estimates and progress lines, also off a terminal
    if _launched() and os.environ.get("RANK", "0") != "0":
        logging.disable(logging.WARNING)  # rank 0 says it once
    if args.workers > 1 and not _launched():
        return _launch_workers(args.workers, argv, args.command)
    args.command_line = shlex.join(["pathpatch", *argv])
    with _sigterm_raises():
        try:
            return args.func(args)
        except (Exception, KeyboardInterrupt, Terminated) as err:  # the one place every failure becomes one line
            code, message = explain_error(err)
            if args.verbose or args.debug:  # the traceback, then the line; the exit code stays the same
                traceback.print_exc()
            if _left_for_launcher(code, message, err):
                return code
        _error(args, message)
        return code


WORKER_ARGV = "PATHPATCH_WORKER_ARGV"


def _launched() -> bool:
    from pathpatch.discovery.distributed import launched

    return launched()


def _left_for_launcher(code: int, message: str, err: BaseException) -> bool:
    """In a rank started by ``--workers``, leave the error for the launcher to report once; return whether it did."""
    from pathpatch.discovery.distributed import is_peer_failure, leave_error

    return leave_error(code, message, isinstance(err, Terminated) or is_peer_failure(err))


def _launch_workers(n: int, argv: list[str], command: str) -> int:
    """Run this command as ``n`` ranks (as ``torchrun --standalone --nproc-per-node n``; rank 0 writes)."""
    from pathpatch.discovery.distributed import launch

    rest, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            rest.append(arg)
    # The command line travels in the environment: torchrun's own parser would take abbreviations such as --n.
    code, message = launch(n, {WORKER_ARGV: json.dumps(rest)})
    if message:
        print(f"pathpatch {command}: error: {message}", file=sys.stderr)
    return code


def explain_error(err: BaseException) -> tuple[int, str]:
    """Return the exit code and the one-line message for an exception that reached the top."""
    if isinstance(err, (KeyboardInterrupt, Terminated)):
        interrupted = isinstance(err, KeyboardInterrupt)
        return (EXIT_INTERRUPTED if interrupted else EXIT_TERMINATED,
                f"{'interrupted' if interrupted else 'terminated (SIGTERM)'}; the output folder was left as it was")
    kinds = {cls.__name__ for cls in type(err).__mro__}
    text = err.args[0] if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) else str(err)
    if isinstance(err, MemoryError) or "OutOfMemoryError" in kinds:
        return EXIT_BAD_INPUT, (f"out of memory ({_first_line(text) or type(err).__name__}); use fewer prompts (--n), fewer EAP-IG --steps, "
                                "a smaller model, or a device with more memory")
    if isinstance(err, RecursionError):
        return EXIT_BAD_INPUT, "an input is nested too deeply to read (RecursionError); give flat JSON/TOML as pathpatch writes it"
    if isinstance(err, ImportError):
        return EXIT_BAD_INPUT, f"a module could not be imported ({text}); install pathpatch's dependencies (pip install -e .) or the module named"
    if isinstance(err, OSError) and err.strerror and err.filename:
        return EXIT_BAD_INPUT, f"{err.strerror}: {err.filename}; check the path, its permissions and the free disk space"
    if isinstance(err, (InputError, OSError)):
        return EXIT_BAD_INPUT, text or type(err).__name__
    return EXIT_INTERNAL, (f"unexpected {type(err).__name__}: {_first_line(text)}; this is a bug if the input is valid: rerun with --debug "
                           "for the traceback and report it")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else ""


def _error(args: argparse.Namespace, message: str) -> None:
    """Print ``message`` as the one error line of this command."""
    one_line = re.sub(r"\s*\n\s*", " ", message.strip())
    print(f"pathpatch {args.command}: error: {one_line}", file=sys.stderr)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into a ``Terminated`` exception for the duration (main thread only), so cleanups run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
