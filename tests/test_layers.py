"""The data flows one way: each layer of pathpatch imports only layers below it (or its own).

Read from every module's ``import`` statements (module level and inside functions alike), so a shortcut
back up the stack fails here before it tangles the layout. The package root (``pathpatch``) offers
only ``__version__`` and its lazy-import helper to every layer.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pathpatch"

LAYERS = (
    {"errors", "vocabulary", "files", "names", "factories", "progress"},  # shared vocabulary and plumbing
    {"task"},  # 1. what a run asks: tasks, prompt groups, positions
    {"models"},  # 2. models in: loading, checkpoints, seeds, planted models
    {"patch"},  # 3. the patching engine: hooks, runner, activation/edge/path patching, attribution
    {"circuit"},  # 4. scores to circuits: pruning, the circuit graph, faithfulness
    {"claims"},  # 5. hypothesis files and their verdicts
    {"report"},  # 6. reports, plots, diagrams, peers' formats
    {"doubts", "pipeline"},  # orchestration
    {"cli", "testing", "__main__"},  # entry points
)


def layer_of(unit: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if unit in units)


def unit_of(module: str) -> str:
    """``pathpatch.patch.edges`` -> ``discovery``; ``pathpatch.errors`` -> ``errors``."""
    return module.split(".")[1]


def imports() -> list[tuple[str, str, str]]:
    """Every (importing module, imported pathpatch module, file:line) in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("pathpatch.") and module != "pathpatch":
                    found.append((module, name, f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"))
    return found


def test_every_module_belongs_to_a_layer():
    units = {unit_of(module) for module, _, _ in imports()} | {unit_of(name) for _, name, _ in imports()}
    assert units <= set().union(*LAYERS), units - set().union(*LAYERS)


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{where}: {module} imports {name}" for module, name, where in imports()
              if layer_of(unit_of(name)) > layer_of(unit_of(module))]
    assert not upward, "\n".join(upward)
