"""The commands that look at a model without pruning a circuit: ``patch`` (activation patching over heads,
positions and components, with heatmaps) and ``lens`` (direct logit attribution, the logit lens and the strongest
heads' attention, with intervals over prompts).
"""

import argparse
import math
import sys

from pathpatch import __version__
from pathpatch.cli.arguments import LENS_BOOTSTRAP, MAX_PROMPTS, bounded, check_device, check_input_size, out_dir, show_progress
from pathpatch.cli.errors import EXIT_OK
from pathpatch.errors import InputError


def cmd_patch(args: argparse.Namespace) -> int:
    """Activation patching of the named activations: CSV tables, PNG heatmaps and report.html in ``--out``."""
    from pathpatch.files import claim_folder, output_folder

    out = out_dir(args.out)
    acts = [a.strip() for a in args.what.split(",") if a.strip()]
    device = check_device(args.device)
    if args.n is not None:
        bounded("--n", args.n, 1, MAX_PROMPTS, "prompts, e.g. --n 64")
    claim_folder(out, args.force)
    from pathpatch.patch.activation import ACTS, absent_acts, activation_patch
    from pathpatch.patch.config import PatchConfig
    from pathpatch.pipeline import DiscoverConfig, model_label, resolve
    from pathpatch.report.plots import figure_png, patching_heatmap, patching_table, str_tokens
    from pathpatch.report.reports import patch_html

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
    config = PatchConfig(direction=args.direction, corruption=args.corruption, seed=args.seed, progress=show_progress())
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
    from pathpatch.patch.activation import index_axes
    from pathpatch.patch.cost import announce, estimate
    from pathpatch.patch.schedule import memory_budget
    from pathpatch.task.groups import task_groups

    sizes = {"layer": model.cfg.n_layers, "head": model.cfg.n_heads, "pos": max(g.clean.shape[1] for g in task_groups(task))}
    rows = sum(math.prod(sizes.get(axis, 1) for axis in index_axes(act, per_pos)) for act in acts)
    planned = estimate(model, task, "activation", rows, 1, 0, memory_budget(None, next(model.parameters()).device))
    announce(planned, f"{rows:,} patched activations")


def cmd_lens(args: argparse.Namespace) -> int:
    """Direct logit attribution and the logit lens: CSV tables, PNG figures, report.md and report.html in ``--out``."""
    from pathpatch.files import claim_folder, output_folder

    out = out_dir(args.out)
    if args.n is not None:
        bounded("--n", args.n, 1, MAX_PROMPTS, "prompts, e.g. --n 64")
    bounded("--top", args.top, 1, 50, "heads whose attention is drawn, e.g. --top 3")
    device = check_device(args.device)
    claim_folder(out, args.force)
    check_input_size(args.task, "prompt")
    from pathpatch.patch.lens import first_look
    from pathpatch.pipeline import DiscoverConfig, model_label, resolve
    from pathpatch.report.reports import lens_html, lens_markdown

    model, task = resolve(args.model, args.task, DiscoverConfig(n=args.n, seed=args.seed, device=device, task_corruption=args.task_corruption),
                          args.config)
    look = first_look(model, task, progress=show_progress())
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
    from pathpatch.report.plots import attention_patterns, dla_heads_heatmap, figure_png, series_figure
    from pathpatch.task.groups import task_groups

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
