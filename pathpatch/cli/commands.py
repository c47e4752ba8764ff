"""The commands that load, train, save and discover: ``models``, ``train``, ``demo``, ``discover``, ``check``,
``save``, ``convert`` and ``draw``. Each reads its parsed arguments, calls the library and returns an exit code.
"""

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from pathpatch import __version__
from pathpatch.cli.arguments import (MAX_BOOTSTRAP, MAX_PROMPTS, MAX_STEPS, bounded, check_device, check_input_size, check_memory,
                                     max_memory_bytes, out_dir, show_progress)
from pathpatch.cli.errors import EXIT_FAIL, EXIT_OK, Terminated, print_error
from pathpatch.errors import InputError


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
    out = out_dir(args.out) if args.out is not None else None
    specs = [get_seed(name) for name in (list(SEEDS) if args.name == "all" else [args.name])]
    below = []
    for spec in specs:
        model, card = train_seed(spec, steps=args.steps, device=device, progress=show_progress())
        ok = meets_target(spec, card["metrics"])
        path = save_bundled(spec.name, model, card, out, below_target=not ok)
        print(f"{spec.name}: {card['metrics']} (target {spec.target}) -> {path}{'' if ok else '  BELOW TARGET'}")
        if not ok:
            below.append(f"{spec.name} (written to {path})")
    if below:
        print_error(args, f"{', '.join(below)} missed the target, so the earlier weights were kept; train longer (--steps) "
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

    out = out_dir(args.out)
    if args.n is not None:
        bounded("--n", args.n, 1, MAX_PROMPTS, "prompts, e.g. --n 64")
    bounded("--steps", args.steps, 1, MAX_STEPS, "EAP-IG interpolation steps, e.g. --steps 10")
    device = check_device(args.device)
    claim_folder(out, args.force)
    check_input_size(args.task, "prompt")

    from pathpatch.pipeline import DiscoverConfig, EmptyCircuitError, discover, model_label, resolve

    config = DiscoverConfig(
        method=args.method, corruption=args.corruption, direction=args.direction, both_directions=not args.one_direction,
        cross_check=not args.no_cross_check, threshold=args.threshold, relative=not args.absolute, metric=args.metric,
        top_k=args.top_k, n=args.n, seed=args.seed, device=device,
        steps=args.steps, task_corruption=args.task_corruption, granularity=args.granularity, recheck=args.recheck,
        max_memory=max_memory_bytes(args.max_memory),
    )
    from pathpatch.patch.distributed import close, init_from_env, local_device, world

    init_from_env(device)
    config = replace(config, device=local_device(device))
    model, task = resolve(args.model, args.task, config, args.config)
    check_memory(model, task, config)
    try:
        result = discover(model, task, config, progress=show_progress() and world()[0] == 0, model_name=model_label(args.model, model))
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
    from pathpatch.circuit.circuit import from_json
    from pathpatch.claims.claim_reference import explain
    from pathpatch.claims.hypotheses import load_hypothesis
    from pathpatch.files import claim_folder

    if args.explain is not None:
        print(explain(args.explain or None))
        return EXIT_OK
    if args.hypotheses is None:
        raise InputError("check needs a hypothesis file, e.g. pathpatch check hypotheses/permute.toml (or --explain for the claim kinds).")
    out = out_dir(args.out) if args.out is not None else None
    device = check_device(args.device)
    if out is not None:
        claim_folder(out, args.force)
    hypothesis = load_hypothesis(args.hypotheses)
    if hypothesis.method["n"] is not None:
        bounded("n", hypothesis.method["n"], 1, MAX_PROMPTS, "n = 64 in the file's [method]")
    bounded("bootstrap", hypothesis.method["bootstrap"], 1, MAX_BOOTSTRAP, "bootstrap = 200 in the file's [method]")
    check_input_size(args.task, "prompt")
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
                       progress=show_progress(), model_config=args.config, on_result=show, force=args.force)
    except (KeyboardInterrupt, Terminated):
        if out is not None and measured:  # keep the verdicts already measured, marked incomplete
            from pathpatch.claims.checks import results_table
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
        check_input_size(args.baseline, "baseline")
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

    out = out_dir(args.out, "the folder to write, e.g. pathpatch save --model M out/my_model")
    claim_folder(out, args.force)
    from pathpatch.models.checkpoint import save_model
    from pathpatch.models.loading import load_model

    model = load_model(args.model, device="cpu", config=args.config)
    with output_folder(out, args.command_line, __version__, args.force) as tmp:
        save_model(model, tmp)
    print(f"saved {args.model} -> {out}")
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a circuit file between pathpatch's and the peers' formats (EAP-IG/MIB, Edge Pruning, auto-circuit)."""
    from pathpatch.report.interop import convert

    written = convert(Path(args.src), Path(args.dest), src_format=args.src_format, dest_format=args.dest_format,
                      n_layers=args.n_layers, n_heads=args.n_heads, attn_only=args.attn_only or None, d_model=args.d_model)
    print(f"{args.src} -> {written}")
    return EXIT_OK


def cmd_draw(args: argparse.Namespace) -> int:
    """Render a saved circuit JSON as a Graphviz diagram."""
    from pathpatch.circuit.circuit import from_json
    from pathpatch.files import register_files
    from pathpatch.report.export import write_diagram

    if not args.output.strip():
        raise InputError("-o/--output is empty; give the diagram's file name, e.g. -o circuit.svg.")
    output = Path(args.output)
    circuit = from_json(args.circuit)
    path, message = write_diagram(circuit, output)
    register_files(output.parent, sorted({output.with_suffix(".dot").name, path.name}))
    print(message)
    return EXIT_OK
