"""The argument parser of every command, with ``--help`` for each.
"""

import argparse

from pathpatch import __version__
from pathpatch.cli.arguments import (EPILOG, MAX_PROMPTS, MAX_STEPS, MODEL_HELP, TASK_HELP, Parser, add_model_and_task, finite_float,
                                     workers_count)
from pathpatch.cli.commands import cmd_check, cmd_convert, cmd_demo, cmd_discover, cmd_draw, cmd_models, cmd_save, cmd_train
from pathpatch.cli.looks import cmd_lens, cmd_patch
from pathpatch.vocabulary import (CORRUPTIONS, DEFAULT_CORRUPTION, DEFAULT_DIRECTION, DEFAULT_METHOD, DEFAULT_THRESHOLD, DIRECTIONS,
                                  GRANULARITIES, METHODS, METRICS)


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
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS, help="edge scoring (default exact; acdc: greedy, threshold is tau)")
    p.add_argument("--direction", default=DEFAULT_DIRECTION, choices=DIRECTIONS,
                   help="primary direction, whose effects fill score/normalized: noise patches corrupt into clean (default); denoise clean into corrupt")
    p.add_argument("--one-direction", action="store_true", help="score edges in --direction only (default: both directions, keeping "
                   "an edge that passes in either; about half the scoring time)")
    p.add_argument("--no-cross-check", action="store_true", help="skip measuring the circuit under the other corruptions (and "
                   "rediscovering with them when it is suspect)")
    p.add_argument("--corruption", default=DEFAULT_CORRUPTION, choices=CORRUPTIONS, help="what cut edges carry")
    p.add_argument("--threshold", type=finite_float, default=DEFAULT_THRESHOLD, help="keep edges with |normalized score| >= this (default 0.05)")
    p.add_argument("--absolute", action="store_true", help="read --threshold in metric units, not as a share of clean - corrupt")
    p.add_argument("--metric", default=None, choices=METRICS, help="override the task's metric")
    p.add_argument("--top-k", type=int, default=None, help="keep the k strongest edges instead of a threshold (k >= 1)")
    p.add_argument("--granularity", default="component", choices=GRANULARITIES,
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
