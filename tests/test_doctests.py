"""The Examples: sections of docstrings run and hold, in every module that has one."""

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pathpatch"
MODULES = sorted(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
                 for path in PACKAGE.rglob("*.py") if ">>> " in path.read_text())


def test_the_modules_with_examples_are_found():
    assert {"pathpatch.names", "pathpatch.errors", "pathpatch.circuit.circuit"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
