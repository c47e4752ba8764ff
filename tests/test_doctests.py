"""The Examples: sections of public docstrings run and hold."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["pathpatch.names", "pathpatch.graphs.circuit", "pathpatch.graphs.export", "pathpatch.directions"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
