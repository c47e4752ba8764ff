"""The ``pathpatch`` command line: parse arguments, check them, call the library, report.

Modules: ``run`` (``main``, ``--workers``), ``parser`` (every command's arguments), ``arguments`` (argument types
and preflight checks), ``commands`` and ``looks`` (one function per command), ``errors`` (exit codes, one-line errors).

Commands: ``models`` lists bundled models and tasks with their measured accuracy; ``train`` retrains a
seed model and writes its weights; ``demo`` loads a bundled model and scores its task; ``discover``
scores every edge, prunes to a circuit and writes scores, circuit, diagram and report; ``check``
measures a hypothesis file's claims; ``save`` writes a model as a checkpoint folder; ``draw`` renders
a saved circuit; ``lens`` takes a first look at a logit-difference task (direct logit attribution by
layer and head, the logit lens, the strongest heads' attention). Every command has ``--help``. This package is the only place that prints.

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

from pathpatch.cli.run import main

__all__ = ["main"]
