"""The ``pathpatch`` command line: parse arguments, call the library, report.

Commands: ``models`` lists bundled models and tasks with their measured accuracy; ``train`` retrains a
seed model and writes its weights; ``demo`` loads a bundled model and scores its task; ``discover``
scores every edge, prunes to a circuit and writes scores, circuit, diagram and report; ``draw`` renders
a saved circuit. Every command has ``--help``. This module is the only place that prints.
"""

import argparse
import logging
import sys
from pathlib import Path

from pathpatch import __version__

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2
MODEL_HELP = ("a bundled name, a TransformerLens checkpoint folder (config.json + model.safetensors or .pt), a weights file "
              "with --config, a Hugging Face folder, or file.py:function (runs that file)")
TASK_HELP = "a bundled task name, prompts as .jsonl, EAP-IG .csv or auto-circuit .json, or file.py:function"


def cmd_models(args: argparse.Namespace) -> int:
    """Print the bundled models and tasks as a table."""
    from pathpatch.models.planted import PLANTED
    from pathpatch.models.zoo import SEEDS, TASK_ONLY, read_card

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
        rows.append((name, "001", "task only", "-", "next weekday; needs a GPT-2-tokenizer model directory"))
    for name, planted in PLANTED.items():
        rows.append((name, "-", "hand-set", "exact", f"{planted.summary}; true edges: {', '.join(planted.edges)}"))
    widths = [max(len(r[i]) for r in rows + [("name", "doc", "measured", "target", "")]) for i in range(4)]
    header = ("name", "doc", "measured", "target", "task / circuit")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """Train one or all seed models and write their weights and cards."""
    from pathpatch.models.training import train_seed
    from pathpatch.models.zoo import SEEDS, get_seed, meets_target, save_bundled

    names = list(SEEDS) if args.name == "all" else [args.name]
    specs = [get_seed(name) for name in names]
    failed = []
    for spec in specs:
        model, card = train_seed(spec, steps=args.steps, device=args.device, progress=True)
        path = save_bundled(spec.name, model, card, Path(args.out) if args.out else None)
        ok = meets_target(spec, card["metrics"])
        print(f"{spec.name}: {card['metrics']} (target {spec.target}) -> {path}{'' if ok else '  BELOW TARGET'}")
        if not ok:
            failed.append(spec.name)
    return EXIT_FAIL if failed else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Load a bundled model, measure it on fresh data, and score its task clean vs corrupt."""
    import torch

    from pathpatch.models import build_task, load_model
    from pathpatch.models.zoo import evaluate, get_seed

    spec = get_seed(args.model)
    model = load_model(args.model, device=args.device)
    print(f"{spec.name} (document {spec.document}): {spec.summary}")
    print(f"fresh-data metrics: {evaluate(model, spec)}")
    task = build_task(spec.name, n=args.n, seed=args.seed)
    task.check_model(model)
    with torch.no_grad():
        clean = task.score(model(task.clean.to(args.device))).item()
        corrupt = task.score(model(task.corrupt.to(args.device))).item()
    print(f"task {task.name}: {task.metric} clean {clean:.3f}, corrupt {corrupt:.3f} (corruption: {task.corruption})")
    return EXIT_OK


def cmd_discover(args: argparse.Namespace) -> int:
    """Score edges, prune to a circuit, measure faithfulness, and write all outputs to ``--out``."""
    from pathpatch.pipeline import DiscoverConfig, discover

    out = _out_dir(args.out)
    config = DiscoverConfig(
        method=args.method, corruption=args.corruption, direction=args.direction, threshold=args.threshold,
        relative=not args.absolute, metric=args.metric, top_k=args.top_k, n=args.n, seed=args.seed, device=args.device,
        steps=args.steps, task_corruption=args.task_corruption,
    )
    result = discover(args.model, args.task, config, progress=_progress(), model_config=args.config)
    paths, message = result.write(out)
    print(result.summary())
    for label, path in paths.items():
        print(f"  {label}: {path}")
    print(f"  {message}")
    return EXIT_OK


def _out_dir(value: str) -> Path:
    """Return ``--out`` as a path; an empty value would write into the working directory."""
    if not value.strip():
        raise ValueError("--out is empty; give the folder to write into, e.g. --out out/run1.")
    return Path(value)


def _progress() -> bool:
    """Progress bars only when a person watches a terminal."""
    return sys.stderr.isatty()


def cmd_check(args: argparse.Namespace) -> int:
    """Check a hypothesis file; exit 0 when every claim passes, 1 when any fails."""
    from pathpatch.graphs.circuit import from_json
    from pathpatch.graphs.export import write_diagram
    from pathpatch.pipeline import check

    out = _out_dir(args.out) if args.out is not None else None
    circuit = from_json(args.circuit) if args.circuit else None
    report = check(args.hypotheses, model=args.model, task=args.task, circuit=circuit, device=args.device,
                   progress=_progress(), model_config=args.config)
    print(report.text())
    if args.baseline:
        print("\nchanges since baseline:")
        print(report.compare(Path(args.baseline)).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if out is not None:
        print(f"  report: {report.write(out / 'check.json')}")
        print(f"  circuit: {report.circuit.to_json(out / 'circuit.json')}")
        failed = {hop for d in report.table.loc[~report.table["passed"], "detail"] for hop in failed_hops(d)}
        print(f"  {write_diagram(report.circuit, out / 'circuit.svg', highlight=failed)[1]}")
    return EXIT_OK if report.passed else EXIT_FAIL


def cmd_save(args: argparse.Namespace) -> int:
    """Load a model from any spec and write it as a TransformerLens checkpoint folder."""
    from pathpatch.models.checkpoint import save_model
    from pathpatch.models.loading import load_model

    out = _out_dir(args.out)
    model = load_model(args.model, device="cpu", config=args.config)
    print(f"saved {args.model} -> {save_model(model, out)}")
    return EXIT_OK


def failed_hops(detail: str) -> list[str]:
    """Return the edges a failed path claim names as missing from the circuit."""
    prefix = "not in circuit: "
    return detail[len(prefix):].split(", ") if detail.startswith(prefix) else []


def cmd_draw(args: argparse.Namespace) -> int:
    """Render a saved circuit JSON as a Graphviz diagram."""
    from pathpatch.graphs.circuit import from_json
    from pathpatch.graphs.export import write_diagram

    _, message = write_diagram(from_json(args.circuit), args.output)
    print(message)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with one sub-command per stage (without importing TransformerLens)."""
    from pathpatch.models.seeds import SEED_NAMES as SEEDS

    parser = argparse.ArgumentParser(prog="pathpatch", description="Automated circuit discovery on TransformerLens models.")
    parser.add_argument("--version", action="version", version=f"pathpatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list bundled models and tasks with measured accuracy")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a seed model on CPU and write its weights into the package")
    p.add_argument("name", choices=[*SEEDS, "all"], help="seed model to train, or 'all'")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the seed's recipe)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--out", default=None, help="folder for weights and card (default: the package's weights/)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="load a bundled model and score its task, clean vs corrupt")
    p.add_argument("--model", default="permute", choices=list(SEEDS), help="bundled model (default: permute)")
    p.add_argument("--n", type=int, default=64, help="prompts in the task (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("discover", help="find a circuit: score edges, prune, measure faithfulness, export")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--config", default=None, help="config.json (HookedTransformerConfig fields) of a bare weights file given as --model")
    p.add_argument("--task", default=None, help=TASK_HELP + " (default: a bundled model's own task)")
    p.add_argument("--task-corruption", default=None, help="corruption a bundled task generates (e.g. values or pointers for permute)")
    p.add_argument("--method", default="exact", choices=["exact", "eap", "eap-ig", "acdc"], help="edge scoring (default exact; acdc: greedy, threshold is tau)")
    p.add_argument("--direction", default="noise", choices=["noise", "denoise"], help="noise: patch corrupt into clean (default); denoise: clean into corrupt")
    p.add_argument("--corruption", default="paired", choices=["paired", "resample", "mean", "zero"], help="what cut edges carry")
    p.add_argument("--threshold", type=float, default=0.05, help="keep edges with |normalized score| >= this (default 0.05)")
    p.add_argument("--absolute", action="store_true", help="read --threshold in metric units, not as a share of clean - corrupt")
    p.add_argument("--metric", default=None, choices=["logit_diff", "loss", "accuracy", "kl", "mse"], help="override the task's metric")
    p.add_argument("--top-k", type=int, default=None, help="keep the k strongest edges instead of a threshold (k >= 1)")
    p.add_argument("--steps", type=int, default=10, help="EAP-IG interpolation steps (default 10)")
    p.add_argument("--n", type=int, default=None, help="prompts (default: 64 generated, or every prompt of a file)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", required=True, help="output folder (scores.csv, circuit.json, circuit.svg, report.md)")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("check", help="check a hypothesis file; exit 0 all pass, 1 any fail, 2 bad input")
    p.add_argument("hypotheses", help="hypothesis TOML file (see hypotheses/*.toml)")
    p.add_argument("--circuit", default=None, help="circuit JSON to check (default: discover one with the file's settings)")
    p.add_argument("--baseline", default=None, help="a check.json from an earlier run: report what moved")
    p.add_argument("--model", default=None, help="override the file's model: " + MODEL_HELP)
    p.add_argument("--config", default=None, help="config.json of a bare weights file given as the model")
    p.add_argument("--task", default=None, help="override the file's task: " + TASK_HELP)
    p.add_argument("--out", default=None, help="folder for check.json, circuit.json and the diagram")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("save", help="write any model as a TransformerLens checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--config", default=None, help="config.json of a bare weights file given as --model")
    p.add_argument("out", help="folder to write")
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("draw", help="draw a saved circuit with Graphviz (.dot always, .svg/.png with dot)")
    p.add_argument("circuit", help="circuit JSON written by `pathpatch discover`")
    p.add_argument("-o", "--output", default="circuit.svg", help="output file: .svg, .png, .pdf or .dot (default circuit.svg)")
    p.set_defaults(func=cmd_draw)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit code (0 ok, 1 failed check, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError, TypeError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"pathpatch {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
